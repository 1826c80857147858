"""Random input paths on a uniform grid t_j = j·Δ: white noise, Ornstein-Uhlenbeck, smooth signals."""

import math

import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from .._errors import check_positive, positive_int

#: The input processes of `sample_inputs`, by name.
INPUTS = ("white", "ou", "smooth")


def _grid_args(n_paths, n_t, dt):
    n_paths = positive_int(n_paths, "n_paths")
    n_t = positive_int(n_t, "n_t")
    dt = check_positive(dt, "dt")
    return n_paths, n_t, jnp.asarray(dt, dtype=jnp.result_type(float))


def white_noise(key: PRNGKeyArray, n_paths, n_t, dt) -> Float[Array, "n_paths n_t"]:
    r"""Unit-intensity white noise on the grid $t_j = j\Delta$: independent samples
    $x_j \sim N(0, 1/\Delta)$, so that $\sum_j x_j\Delta$ has the variance of Brownian increments
    and, for a linear target, the mean squared error of a model is the exact white-noise risk.

    **Arguments:**

    - `key`: a JAX PRNG key.
    - `n_paths`, `n_t`: the number of paths and of samples per path (positive Python integers).
    - `dt`: the grid step $\Delta > 0$ (may be traced).

    **Returns:** an array of shape `(n_paths, n_t)`.

    ```python
    import jax.random as jr, jaxmem
    xs = jaxmem.white_noise(jr.key(0), 4, 1000, 0.1)
    xs.shape, float(xs.var())             # (4, 1000), ~ 10 = 1/dt
    ```
    """
    n_paths, n_t, dt = _grid_args(n_paths, n_t, dt)
    return jr.normal(key, (n_paths, n_t), dt.dtype) / jnp.sqrt(dt)


def ornstein_uhlenbeck(key: PRNGKeyArray, n_paths, n_t, dt, *, rate=1.0) -> Float[Array, "n_paths n_t"]:
    r"""The stationary Ornstein-Uhlenbeck process $dX = -r X\,dt + dB$ on the grid $t_j = j\Delta$,
    sampled exactly: $X_0 \sim N(0, 1/(2r))$ and the AR(1) recursion
    $X_{j+1} = e^{-r\Delta}X_j + \sqrt{(1 - e^{-2r\Delta})/(2r)}\,\xi_{j+1}$. Its stationary
    variance is $1/(2r)$ and its correlation time $1/r$ (coloured noise).

    **Arguments:**

    - `key`, `n_paths`, `n_t`, `dt`: as for `white_noise`.
    - `rate`: the mean-reversion rate $r > 0$ (may be traced).

    **Returns:** an array of shape `(n_paths, n_t)`.

    ```python
    import jax.random as jr, jaxmem
    xs = jaxmem.ornstein_uhlenbeck(jr.key(0), 8, 2000, 0.05, rate=2.0)
    float(xs.var())                       # ~ 0.25 = 1/(2 rate)
    ```
    """
    n_paths, n_t, dt = _grid_args(n_paths, n_t, dt)
    rate = jnp.asarray(check_positive(rate, "the OU rate"), dtype=dt.dtype)
    xi = jr.normal(key, (n_t, n_paths), dt.dtype)
    a = jnp.exp(-rate * dt)
    sd = jnp.sqrt(1.0 / (2.0 * rate))
    innovation = jnp.sqrt(-jnp.expm1(-2.0 * rate * dt)) * sd

    def step(x, z):
        x = a * x + innovation * z
        return x, x

    x0 = sd * xi[0]
    _, rest = jax.lax.scan(step, x0, xi[1:])
    return jnp.concatenate([x0[None], rest], axis=0).T


def smooth_signal(
    key: PRNGKeyArray, n_paths, n_t, dt, *, scale=1.0, n_features: int = 64
) -> Float[Array, "n_paths n_t"]:
    r"""A smooth, stationary random signal of unit variance and correlation length `scale`:
    random Fourier features $x(t) = \sqrt{2/K}\sum_{k=1}^{K}\cos(\nu_k t + \phi_k)$ with
    $\nu_k \sim N(0, 1/\ell^2)$ and $\phi_k \sim U[0, 2\pi)$, independently per path. Its
    covariance is $E\,x(t)x(t+\tau) = e^{-\tau^2/(2\ell^2)}$ exactly, $E\,x(t)^2 = 1$, and it is
    close to Gaussian for $K$ large (a sum of $K$ independent terms); every path is analytic.

    **Arguments:**

    - `key`, `n_paths`, `n_t`, `dt`: as for `white_noise`.
    - `scale`: the correlation length $\ell > 0$ (may be traced).
    - `n_features`: the number $K$ of cosines per path (a positive Python integer).

    **Returns:** an array of shape `(n_paths, n_t)`.

    ```python
    import jax.random as jr, jaxmem
    xs = jaxmem.smooth_signal(jr.key(0), 16, 500, 0.1, scale=2.0)
    float(xs.var())                       # ~ 1
    ```
    """
    n_paths, n_t, dt = _grid_args(n_paths, n_t, dt)
    n_features = positive_int(n_features, "n_features")
    scale = jnp.asarray(check_positive(scale, "the smooth signal's scale"), dtype=dt.dtype)
    k_freq, k_phase = jr.split(key)
    freqs = jr.normal(k_freq, (n_features, n_paths, 1), dt.dtype) / scale
    phases = jr.uniform(k_phase, (n_features, n_paths, 1), dt.dtype, 0.0, 2 * math.pi)
    ts = jnp.arange(n_t, dtype=dt.dtype) * dt

    def add(acc, fp):
        f, p = fp
        return acc + jnp.cos(f * ts + p), None

    total, _ = jax.lax.scan(add, jnp.zeros((n_paths, n_t), dt.dtype), (freqs, phases))
    return math.sqrt(2.0 / n_features) * total


_SAMPLERS = {"white": white_noise, "ou": ornstein_uhlenbeck, "smooth": smooth_signal}
_PARAMS = {"white": (), "ou": ("rate",), "smooth": ("scale", "n_features")}


def sample_inputs(kind: str, key: PRNGKeyArray, n_paths, n_t, dt, **params) -> Float[Array, "n_paths n_t"]:
    """Input paths of a process named `kind`: `"white"` (`white_noise`), `"ou"`
    (`ornstein_uhlenbeck`, parameter `rate`) or `"smooth"` (`smooth_signal`, parameters `scale`
    and `n_features`); `params` are passed on, and a parameter the process does not take is an
    error.

    ```python
    import jax.random as jr, jaxmem
    xs = jaxmem.sample_inputs("ou", jr.key(1), 2, 100, 0.1, rate=0.5)
    xs.shape                              # (2, 100)
    ```
    """
    if not isinstance(kind, str) or kind not in _SAMPLERS:
        raise ValueError(f"unknown input process {kind!r}; expected one of {INPUTS}.")
    unknown = sorted(set(params) - set(_PARAMS[kind]))
    if unknown:
        allowed = ", ".join(_PARAMS[kind]) or "none"
        raise TypeError(f"input process {kind!r} takes no parameter {unknown[0]!r} (its parameters: {allowed}).")
    return _SAMPLERS[kind](key, n_paths, n_t, dt, **params)
