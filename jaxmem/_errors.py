"""Input checks that raise at once on concrete values and through `eqx.error_if` under jit."""

import contextlib
import contextvars
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np


class PrecisionWarning(UserWarning):
    """Raised (as a warning) when a theory-grade computation runs without float64."""


def is_traced(x) -> bool:
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(x))


_TRACED_CHECKS = contextvars.ContextVar("jaxmem_traced_checks", default=True)


@contextlib.contextmanager
def unchecked():
    """Inside this context, checks on *traced* values are not compiled in.

    For internal code whose inputs were validated on the host already (a sweep's grid): an
    `eqx.error_if` compiles to a host callback, and XLA programs with host callbacks are never
    written to JAX's persistent compilation cache. Concrete values are still checked.
    """
    token = _TRACED_CHECKS.set(False)
    try:
        yield
    finally:
        _TRACED_CHECKS.reset(token)


def check(x, bad, message: str):
    """Return `x`, raising `ValueError(message)` where `bad` holds.

    On concrete arrays the error is raised immediately; under jit/vmap the check is compiled
    in with `eqx.error_if`, so it still fires (as an `EqxRuntimeError`) instead of a NaN.
    """
    if not is_traced(bad):
        if bool(np.any(np.asarray(bad))):
            raise ValueError(message)
        return x
    if not _TRACED_CHECKS.get():
        return x
    return eqx.error_if(x, jnp.any(bad), message)


def check_finite(x, name: str):
    x = jnp.asarray(x)
    return check(x, ~jnp.isfinite(x), f"{name} must be finite; got {_show(x)}.")


def _show(x) -> str:
    if is_traced(x):
        return "a traced value"
    arr = np.asarray(x)
    if arr.size <= 8:
        return np.array2string(arr, precision=6)
    return f"an array of shape {arr.shape} (min {arr.min():.4g}, max {arr.max():.4g})"


def show(x) -> str:
    """A short, readable rendering of a value for error messages."""
    return _show(x)


def as_float_array(x, name: str, ndim: int | None = None):
    """`jnp.asarray(x)` in the default float dtype, with a clear error on bad shapes/values."""
    try:
        arr = jnp.asarray(x, dtype=jnp.result_type(float))
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must be an array of real numbers; got {x!r}.") from e
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s); got shape {arr.shape}.")
    return arr


def warn_if_not_x64(what: str):
    """Warn loudly when float64 is off for a computation whose results need it."""
    if not jax.config.jax_enable_x64:
        warnings.warn(
            f"{what} needs float64 for theory-grade results, but jax_enable_x64 is off: "
            "plateau gradients (~1e-9) and Cauchy-matrix solves lose their accuracy in "
            "float32. Call jax.config.update('jax_enable_x64', True) before creating arrays.",
            PrecisionWarning,
            stacklevel=3,
        )
