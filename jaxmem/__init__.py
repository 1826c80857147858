"""jaxmem: exact, differentiable simulations of the curse of memory in linear RNNs."""

import importlib.metadata

from . import internal as internal
from ._approx import (
    Approximation as Approximation,
    best_approximation as best_approximation,
    error_map as error_map,
    width_needed as width_needed,
)
from ._data import (
    Lorenz96 as Lorenz96,
    linear_outputs as linear_outputs,
    ornstein_uhlenbeck as ornstein_uhlenbeck,
    outputs as outputs,
    sample_inputs as sample_inputs,
    smooth_signal as smooth_signal,
    white_noise as white_noise,
)
from ._distributed import enable_compilation_cache as enable_compilation_cache
from ._errors import PrecisionWarning as PrecisionWarning
from ._experiments.approx import (
    ApproxSettings as ApproxSettings,
    run_approx as run_approx,
)
from ._experiments.curves import plot_training as plot_training
from ._experiments.data import (
    DataSettings as DataSettings,
    load_data as load_data,
    run_data as run_data,
)
from ._experiments.grid import config_key as config_key, plateau_grid as plateau_grid
from ._experiments.load import load_run as load_run
from ._experiments.memory import (
    MemorySettings as MemorySettings,
    run_memory as run_memory,
)
from ._experiments.model_file import load_model as load_model
from ._experiments.plateau import (
    PlateauSettings as PlateauSettings,
    run_plateau as run_plateau,
)
from ._experiments.plots import plot_plateau_map as plot_plateau_map
from ._experiments.presets_train import (
    exact_escape as exact_escape,
    run_theory as run_theory,
    train_presets as train_presets,
)
from ._experiments.stability import (
    StabilitySettings as StabilitySettings,
    run_stability as run_stability,
)
from ._experiments.store import RowStore as RowStore, StoreError as StoreError
from ._experiments.sweep import plateau_sweep as plateau_sweep
from ._experiments.training import (
    TrainSettings as TrainSettings,
    run_train as run_train,
)
from ._flow import (
    FlowResult as FlowResult,
    default_solver as default_solver,
    gradient_flow as gradient_flow,
    long_lag_solver as long_lag_solver,
)
from ._hitting import (
    HittingTimes as HittingTimes,
    HittingTimeSearch as HittingTimeSearch,
)
from ._hitting_times import hitting_times as hitting_times
from ._kernels import (
    AbstractKernel as AbstractKernel,
    Airy as Airy,
    Damped as Damped,
    ExpSum as ExpSum,
    GaussianBump as GaussianBump,
    GridKernel as GridKernel,
    PowerLaw as PowerLaw,
    ScaledKernel as ScaledKernel,
    SumKernel as SumKernel,
    inner as inner,
    laplace_moments as laplace_moments,
)
from ._learn import (
    DataTrainResult as DataTrainResult,
    empirical_loss as empirical_loss,
    train_on_data as train_on_data,
)
from ._loss import (
    diagonal_terms as diagonal_terms,
    lyapunov as lyapunov,
    monte_carlo_loss as monte_carlo_loss,
    white_noise_loss as white_noise_loss,
)
from ._memory import (
    DecayClass as DecayClass,
    KernelEstimate as KernelEstimate,
    Stability as Stability,
    decay_class as decay_class,
    estimate_kernel as estimate_kernel,
    least_squares_kernel as least_squares_kernel,
    memory_function as memory_function,
    perturbation_test as perturbation_test,
)
from ._models import (
    AbstractRNN as AbstractRNN,
    AbstractSequenceModel as AbstractSequenceModel,
    ContinuousRNN as ContinuousRNN,
    DiagonalRNN as DiagonalRNN,
    DiscreteDiagonalRNN as DiscreteDiagonalRNN,
    DiscreteRNN as DiscreteRNN,
    LinearRNN as LinearRNN,
)
from ._parameterization import (
    AbstractParameterization as AbstractParameterization,
    Best as Best,
    BestParameterization as BestParameterization,
    Exp as Exp,
    ExpParameterization as ExpParameterization,
    Identity as Identity,
    IdentityParameterization as IdentityParameterization,
    Softplus as Softplus,
    SoftplusParameterization as SoftplusParameterization,
)
from ._presets import (
    CANONICAL_LAGS as CANONICAL_LAGS,
    LONG_LAGS as LONG_LAGS,
    canonical_model as canonical_model,
    plateau_target as plateau_target,
)
from ._results import RESULTS as RESULTS
from ._rosenbrock import Rodas4 as Rodas4
from ._theory import (
    ExpFit as ExpFit,
    fit_exponential as fit_exponential,
    plateau_bound as plateau_bound,
)
from ._train import (
    TrainResult as TrainResult,
    make_optimizer as make_optimizer,
    train as train,
)

try:
    __version__ = importlib.metadata.version("jaxmem")
except importlib.metadata.PackageNotFoundError:  # run from a source tree without installing
    __version__ = "0+unknown"
