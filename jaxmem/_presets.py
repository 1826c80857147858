"""The canonical plateau experiment of DESIGN §1.4 (the default of the CLI and notebooks)."""

import jax.numpy as jnp
import numpy as np

from ._kernels import ExpSum, GaussianBump
from ._models import DiagonalRNN

#: Lags L = 1/ω of the canonical plateau map, and the long-lag extension.
CANONICAL_LAGS = tuple(float(x) for x in np.arange(8, 19, 2))
LONG_LAGS = tuple(float(x) for x in np.arange(8, 41, 2))
QUICK_LAGS = (6.0, 8.0, 10.0, 12.0)
#: The canonical initial rates span geomspace(MIN_RATE, MAX_RATE, m); MIN_RATE is the w_l⁰ of
#: JMLR Thm 20, the slope the plateau map is compared with.
MIN_RATE, MAX_RATE = 0.5, 4.0


def plateau_target(lag, *, width=0.5, amplitude=1.0, base_rate=0.5):
    r"""The plateau family $\rho_\omega(t) = \bar\rho(t) + \rho_0(t - 1/\omega)$ of the paper:
    $\bar\rho(t) = e^{-t/2}$ (which the initial model fits exactly) plus a Gaussian bump of
    width `width` at lag $L = 1/\omega$.

    ```python
    import jaxmem
    target = jaxmem.plateau_target(18.0)
    ```
    """
    return ExpSum(jnp.ones(1), jnp.full(1, base_rate)) + GaussianBump(lag, width, amplitude)


def canonical_model(width: int = 10, *, parameterization="identity", min_rate=MIN_RATE, max_rate=MAX_RATE):
    """The canonical initial model: a = (1, 0, ..., 0), w = geomspace(min_rate, max_rate, width),
    so that its kernel is exactly e^{-min_rate t}, the short-memory part of `plateau_target`."""
    if not isinstance(width, (int, np.integer)) or width < 1:
        raise ValueError(f"width must be a positive integer; got {width!r}.")
    a = jnp.zeros(width).at[0].set(1.0)
    w = jnp.asarray(np.geomspace(min_rate, max_rate, width)) if width > 1 else jnp.full(1, min_rate)
    return DiagonalRNN(a, w, parameterization=parameterization)
