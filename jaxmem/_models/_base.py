"""The common ground of the sequence models: the abstract base, checks of sampled inputs and time
steps, the activations, masks and widths."""

import abc

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, Float

from .._errors import as_float_array, check, check_positive, is_integer, is_real, show


class AbstractSequenceModel(eqx.Module):
    r"""A model of a causal input-output map, evaluated on one sampled input path.

    `predict(xs, dt)` takes the samples $x_j = x(t_j)$, $t_j = j\Delta$, $j = 0, \dots, n-1$,
    starts the hidden state from $h = 0$ at $t = 0$ and returns $\hat y_j = c^\top h(t_j)$, so
    $\hat y_0 = 0$. It is jittable and differentiable with respect to the model's array leaves;
    `jax.vmap` it over paths.
    """

    @abc.abstractmethod
    def predict(self, xs, dt) -> Float[Array, " n"]:
        """The outputs on the grid `t_j = j*dt` for one input path `xs` of shape `(n,)`."""


#: The pointwise nonlinearities σ of the nonlinear models; both have σ(0) = 0, which is what lets
#: a masked unit stay at rest.
ACTIVATIONS = {"identity": lambda z: z, "tanh": jnp.tanh}


def check_activation(name, what: str) -> str:
    """`name`, which must be one of the `ACTIVATIONS`."""
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise ValueError(f"{what} activation must be one of {sorted(ACTIVATIONS)}; got {name!r}.")
    return name


def check_width(width):
    if not is_integer(width):
        raise TypeError(f"width must be a positive integer; got {width!r}.")
    if width < 1:
        raise ValueError(f"width must be a positive integer; got {width!r}.")


def check_mask(mask, m: int, dtype, what: str):
    """A 0./1. float mask of shape `(m,)` (all ones when `mask` is None)."""
    if mask is None:
        return jnp.ones(m, dtype)
    mask = jnp.asarray(mask, dtype=dtype)
    if mask.shape != (m,):
        raise ValueError(f"{what} mask must have shape ({m},); got {mask.shape}.")
    return check(mask, ~((mask == 0) | (mask == 1)), f"{what} mask must hold 0. and 1. only; got {show(mask)}.")


def finite_array(x, name: str, ndim: int):
    """`x` as a float array with `ndim` dimensions and finite entries."""
    arr = as_float_array(x, name, ndim=ndim)
    return check(arr, ~jnp.isfinite(arr), f"{name} must be finite; got {show(arr)}.")


def check_path(xs, what: str, channels: int | None = None):
    """One sampled input path: shape `(n,)` (or `(n, channels)` when `channels` is given),
    `n >= 1`, finite entries; returned as a float array."""
    xs = as_float_array(xs, f"{what} xs")
    ok = xs.ndim == 1 or (channels is not None and xs.ndim == 2 and xs.shape[1] == channels)
    if not ok or xs.shape[0] < 1:
        expected = "(n,)" if channels is None else f"(n,) or (n, {channels})"
        raise ValueError(
            f"{what} takes one input path of shape {expected} with n >= 1 (vmap over paths); got shape {xs.shape}."
        )
    return check(xs, ~jnp.isfinite(xs), f"{what} inputs xs must be finite; got {show(xs)}.")


def check_step(dt, what: str, dtype):
    """The time step `dt` (finite, > 0) as a 0-d array of `dtype`."""
    if not is_real(dt):
        raise TypeError(f"{what} dt must be one real number; got {dt!r}.")
    return jnp.asarray(check_positive(dt, f"{what} dt"), dtype=dtype)


def check_rates(w, what: str):
    """Rates `w`, which must be finite and > 0."""
    return check(w, ~(jnp.isfinite(w) & (w > 0)), f"{what} rates w must be finite and > 0; got {show(w)}.")


def log_uniform_rates(key, width: int, min_rate, max_rate):
    """`width` sorted rates, log-uniform in `[min_rate, max_rate]`."""
    if not (is_real(min_rate) and is_real(max_rate) and 0 < min_rate < max_rate < np.inf):
        raise ValueError(f"need finite rates 0 < min_rate < max_rate; got {min_rate!r}, {max_rate!r}.")
    return jnp.sort(jnp.exp(jr.uniform(key, (width,), minval=np.log(min_rate), maxval=np.log(max_rate))))


def pad_rows(x, extra: int, value=0.0):
    """`x` with `extra` rows of `value` appended along its first axis."""
    return jnp.concatenate([x, jnp.full((extra, *x.shape[1:]), value, x.dtype)])


def check_pad(width, current: int) -> int:
    check_width(width)
    if width < current:
        raise ValueError(f"cannot pad a width-{current} model to the smaller width {width}.")
    return width - current
