"""`jaxmem.internal`: what tests, benchmarks and sister projects need beyond the public API.

These names are documented but not stable: they may change between releases without notice.

- The objective of training in the stored parameters `(a, v)` of a `DiagonalRNN`:
  `loss_and_grad`, `loss_hessian`, `param_distance`, `diagonal_hessian`, `gram`.
- The flow and its search: `flow_term` (the vector field with its closed-form Jacobian),
  `JacobianODETerm`, `SearchState`, `run_search` (the unjitted core of `hitting_times`),
  `EVENTS`, `solve_steps` (its bounded loop of adaptive steps, each in its own time); discrete training as a state advanced in chunks: `TrainState`, `train_init`,
  `train_step`, `train_terminate`, `train_result`, and `train_impl` (the unjitted core of
  `train`: the four in a row).
- The canonical start: `canonical_params` (traceable, padded, perturbed), `MIN_RATE`,
  `MAX_RATE`, `QUICK_LAGS`, `preset_settings`.
- Approximation: `named_rates`, `start_rates`, `fit_rows`, `bisect_widths`, `map_keys`,
  `check_args`.
- Training on data: the state advanced in chunks, `DataTrainState`, `learn_init`, `learn_step`,
  `take_mean`, `learn_result`, `time_weights`; `split` (trainable leaves and the rest), `param_coords`;
  `FamilyRun` (one target family's configurations as one vmapped program) and `build_model`.
- Memory: `exp_basis_outputs` (the exact outputs of exponential basis functions), the
  perturbation test's evaluations `directions` (its perturbation directions), `perturbed_error`, `perturbed_error_jit`, `perturbed_errors`,
  `integrated_error`.
- Sweeps: `advance_slots` (the compiled program; its function name is what JAX's compile log
  reports), `FlowSlots`, `TrainSlots`, `mesh`, `predicted_log_tau`;
  `summarize` and `format_fits` (the printed slope table).
- Processes: `launch_local`, `is_launched`, `pin_threads`, `cpu_groups`, `init_distributed`,
  `sync`, `exchange`.
- The command line: `main(argv)`; outcomes: `result_names` (member names of `RESULTS` values).
"""

from ._approx import (
    bisect_widths as bisect_widths,
    check_args as check_args,
    fit_rows as fit_rows,
    map_keys as map_keys,
    named_rates as named_rates,
    start_rates as start_rates,
)
from ._cli import main as main
from ._distributed import (
    cpu_groups as cpu_groups,
    exchange as exchange,
    init_distributed as init_distributed,
    is_launched as is_launched,
    launch_local as launch_local,
    pin_threads as pin_threads,
    sync as sync,
)
from ._experiments.batching import (
    FlowSlots as FlowSlots,
    TrainSlots as TrainSlots,
    advance_slots as advance_slots,
    mesh as mesh,
)
from ._experiments.grid import predicted_log_tau as predicted_log_tau
from ._experiments.learn_batch import FamilyRun as FamilyRun, build_model as build_model
from ._experiments.plateau import preset_settings as preset_settings
from ._experiments.report import format_fits as format_fits, summarize as summarize
from ._flow import flow_term as flow_term
from ._hitting import EVENTS as EVENTS, SearchState as SearchState
from ._hitting_times import run_search as run_search
from ._learn import (
    DataTrainState as DataTrainState,
    learn_init as learn_init,
    learn_result as learn_result,
    learn_step as learn_step,
    param_coords as param_coords,
    split as split,
    take_mean as take_mean,
    time_weights as time_weights,
)
from ._loss import (
    diagonal_hessian as diagonal_hessian,
    gram as gram,
    loss_and_grad as loss_and_grad,
    loss_hessian as loss_hessian,
    param_distance as param_distance,
)
from ._memory import exp_basis_outputs as exp_basis_outputs
from ._memory._stability import (
    directions as directions,
    integrated_error as integrated_error,
    perturbed_error as perturbed_error,
    perturbed_error_jit as perturbed_error_jit,
    perturbed_errors as perturbed_errors,
)
from ._presets import (
    MAX_RATE as MAX_RATE,
    MIN_RATE as MIN_RATE,
    QUICK_LAGS as QUICK_LAGS,
    canonical_params as canonical_params,
)
from ._results import names as result_names  # noqa: F401 (a re-export under another name)
from ._rosenbrock import JacobianODETerm as JacobianODETerm
from ._steps import solve_steps as solve_steps
from ._train import (
    TrainState as TrainState,
    train_impl as train_impl,
    train_init as train_init,
    train_result as train_result,
    train_step as train_step,
    train_terminate as train_terminate,
)
