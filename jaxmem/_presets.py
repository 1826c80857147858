"""The canonical plateau experiment (the default of the CLI and notebooks): the plateau target
and the model that starts from a perfect fit of its short-memory part."""

import jax.numpy as jnp
import jax.random as jr
import numpy as np

from ._errors import as_float_array, check, is_integer, show
from ._kernels import ExpSum, GaussianBump
from ._models import DiagonalRNN

#: Lags L = 1/ω of the canonical plateau map, and the long-lag extension.
CANONICAL_LAGS = tuple(float(x) for x in np.arange(8, 19, 2))
LONG_LAGS = tuple(float(x) for x in np.arange(8, 61, 2))
QUICK_LAGS = (6.0, 8.0, 10.0, 12.0)
#: The canonical initial rates span geomspace(MIN_RATE, MAX_RATE, m); MIN_RATE is the w_l⁰ of
#: JMLR Thm 20, the slope the plateau map is compared with.
MIN_RATE, MAX_RATE = 0.5, 4.0


def plateau_target(lag, *, bump_width=0.5, amplitude=1.0, base_rate=0.5):
    r"""The plateau family $\rho_\omega(t) = \bar\rho(t) + \rho_0(t - 1/\omega)$ of the paper:
    $\bar\rho(t) = e^{-t/2}$ (which the initial model fits exactly) plus a Gaussian bump of
    width (standard deviation) `bump_width` and height `amplitude` at lag $L = 1/\omega$.

    The lag must be finite and > 0 (ω = 1/L > 0): checked at once on a concrete lag, and
    through `eqx.error_if` on a traced one (except in a sweep, whose grid is checked on the host).

    ```python
    import jaxmem
    target = jaxmem.plateau_target(18.0)
    ```
    """
    lag = as_float_array(lag, "plateau_target lag", ndim=0)
    lag = check(lag, ~(jnp.isfinite(lag) & (lag > 0)),
                f"plateau_target lag must be finite and > 0 (omega = 1/lag > 0); got {show(lag)}.")
    return ExpSum(jnp.ones(1), jnp.full(1, base_rate)) + GaussianBump(lag, bump_width, amplitude)


def canonical_params(width, max_width=None, *, dtype=None, key=None, perturbation=0.0):
    """The canonical initial parameters: a = e₁, w = geomspace(`MIN_RATE`, `MAX_RATE`, width),
    padded to `max_width` modes with a mask (padded modes: a = 0, w = 1). `width` may be traced
    (a sweep's widths share one program). With a `key` and `perturbation` p > 0, the active
    rates are multiplied by exp(p·ξ) and p·η is added to the coefficients (ξ, η standard
    normal).

    Returns `(a, w, mask)`, each of shape `(max_width,)`, the mask as 0./1. floats.
    """
    max_width = width if max_width is None else max_width
    dtype = jnp.result_type(float) if dtype is None else dtype
    i = jnp.arange(max_width, dtype=dtype)
    width = jnp.asarray(width).astype(dtype)  # explicit: no implicit int/float promotion
    active = i < width
    denom = jnp.maximum(width - 1, 1)
    w = jnp.where(active, MIN_RATE * (MAX_RATE / MIN_RATE) ** (i / denom), 1.0)
    a = jnp.where(i == 0, 1.0, 0.0).astype(dtype)
    if key is not None:
        kw, ka = jr.split(key)
        w = jnp.where(active, w * jnp.exp(perturbation * jr.normal(kw, (max_width,), dtype)), w)
        a = jnp.where(active, a + perturbation * jr.normal(ka, (max_width,), dtype), 0.0)
    return a, w, active.astype(dtype)


def canonical_model(width: int = 10, *, parameterization="identity"):
    """The canonical initial model: a = (1, 0, ..., 0), w = geomspace(0.5, 4, width), so that its
    kernel is exactly e^{-t/2}, the short-memory part of `plateau_target`.

    ```python
    import jaxmem
    model = jaxmem.canonical_model(10)
    model.rates[0], model.rates[-1]       # 0.5, 4.0
    ```
    """
    if not is_integer(width):
        raise TypeError(f"width must be a positive integer; got {width!r}.")
    if width < 1:
        raise ValueError(f"width must be a positive integer; got {width!r}.")
    a, w, _ = canonical_params(int(width))
    return DiagonalRNN(a, w, parameterization=parameterization)
