from ._base import (
    AbstractKernel as AbstractKernel,
    ScaledKernel as ScaledKernel,
    SumKernel as SumKernel,
    inner as inner,
    laplace_moments as laplace_moments,
)
from ._damped import Damped as Damped
from ._families import (
    ExpSum as ExpSum,
    GaussianBump as GaussianBump,
    PowerLaw as PowerLaw,
)
from ._numeric import Airy as Airy, GridKernel as GridKernel, airy_ai as airy_ai
