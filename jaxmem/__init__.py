"""jaxmem: exact, differentiable simulations of the curse of memory in linear RNNs."""

import importlib.metadata

from ._errors import PrecisionWarning as PrecisionWarning
from ._kernels import (
    AbstractKernel as AbstractKernel,
    Airy as Airy,
    ExpSum as ExpSum,
    GaussianBump as GaussianBump,
    GridKernel as GridKernel,
    PowerLaw as PowerLaw,
    ScaledKernel as ScaledKernel,
    SumKernel as SumKernel,
    inner as inner,
    laplace_moments as laplace_moments,
)
from ._loss import (
    diagonal_terms as diagonal_terms,
    lyapunov as lyapunov,
    monte_carlo_loss as monte_carlo_loss,
    white_noise_loss as white_noise_loss,
)
from ._models import (
    AbstractRNN as AbstractRNN,
    DiagonalRNN as DiagonalRNN,
    LinearRNN as LinearRNN,
)
from ._parameterization import (
    AbstractParameterization as AbstractParameterization,
    Best as Best,
    Exp as Exp,
    Identity as Identity,
    Softplus as Softplus,
)

try:
    __version__ = importlib.metadata.version("jaxmem")
except importlib.metadata.PackageNotFoundError:  # run from a source tree without installing
    __version__ = "0+unknown"
from ._approx import (
    Approximation as Approximation,
    best_approximation as best_approximation,
    error_map as error_map,
    width_needed as width_needed,
)
from ._flow import (
    FlowResult as FlowResult,
    HittingTimes as HittingTimes,
    default_solver as default_solver,
    gradient_flow as gradient_flow,
    hitting_times as hitting_times,
)
from ._kernels._damped import Damped as Damped
from ._presets import (
    CANONICAL_LAGS as CANONICAL_LAGS,
    LONG_LAGS as LONG_LAGS,
    canonical_model as canonical_model,
    plateau_target as plateau_target,
)
from ._rosenbrock import Rodas4 as Rodas4
from ._store import RowStore as RowStore, StoreError as StoreError
from ._sweep import (
    config_key as config_key,
    plateau_grid as plateau_grid,
    plateau_sweep as plateau_sweep,
)
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
