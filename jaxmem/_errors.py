"""Input checks that raise at once on concrete values and through `eqx.error_if` under jit.

A check on a traced value is compiled in with `eqx.error_if`, whose message is fixed when the
program is traced (so it says "got a traced value"). Under `equinox.filter_jit` a failed check
raises `equinox.EquinoxRuntimeError`, shown as the stack inside the compiled program ending in
the line `equinox.EquinoxRuntimeError: <message>`. Under plain `jax.jit` XLA wraps it: JAX logs
"jax.pure_callback failed" with the callback's traceback, and the `JaxRuntimeError` it raises
("INTERNAL: CpuCallback error calling callback: ...") carries the message at the end of that
traceback. A library cannot change either without changing global settings (JAX's logging,
Equinox's `EQX_ON_ERROR`), which are the user's: wrap programs in `equinox.filter_jit` for the
readable form, or set `EQX_ON_ERROR` (`nan`, `breakpoint`, `off`) yourself.
"""

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
    if isinstance(x, (list, tuple)) and all(isinstance(v, (int, float, np.integer, np.floating)) for v in x):
        return repr([v.item() if isinstance(v, np.generic) else v for v in x])
    arr = np.asarray(x)
    if arr.ndim == 0 and arr.dtype in (np.float64, np.int64, np.int32, np.bool_):
        return repr(arr.item())  # 0.05, -1.0, 1e-10, nan, inf: as the number was written
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


# -- checks of arguments: sequences of numbers, integers, and scalars in a range ----------------

#: The phrases of the range checks, so that every entry point words them alike.
POSITIVE = "be finite and > 0"
FRACTION = "satisfy 0 < {name} < 1"
MOMENTUM = "satisfy 0 <= momentum < 1"


def is_real(x) -> bool:
    """Whether `x` is one real number: a Python or NumPy int or float, or a 0-d integer or
    floating array (concrete or traced); not a bool, a string or a complex number."""
    if isinstance(x, (bool, np.bool_, str, bytes)):
        return False
    if isinstance(x, (int, float, np.integer, np.floating)):
        return True
    dtype, ndim = getattr(x, "dtype", None), getattr(x, "ndim", None)
    return ndim == 0 and dtype is not None and (
        np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)
    )


def is_integer(x) -> bool:
    """Whether `x` is one concrete integer (Python, NumPy or a 0-d integer array), not a bool."""
    if isinstance(x, (bool, np.bool_)) or is_traced(x):
        return False
    if isinstance(x, (int, np.integer)):
        return True
    dtype, ndim = getattr(x, "dtype", None), getattr(x, "ndim", None)
    return ndim == 0 and dtype is not None and np.issubdtype(dtype, np.integer)


def _entries(values, name: str, what: str) -> list:
    if isinstance(values, (str, bytes)):
        raise TypeError(f"{name} must be a sequence of {what} (not a string); got {values!r}.")
    if is_traced(values):
        raise TypeError(f"{name} must be a sequence of concrete {what}, not a traced value.")
    try:
        return list(values)
    except TypeError:
        raise TypeError(f"{name} must be a sequence of {what}; got {values!r}.") from None


def number_list(values, name: str) -> list[float]:
    """The entries of a sequence of real numbers as floats (not yet checked for range): a
    `TypeError` for a string (`"18"` is not the lags 1 and 8), a single number, or an entry
    that is not a number (a string, a bool)."""
    items = _entries(values, name, "numbers")
    bad = [v for v in items if not is_real(v) or is_traced(v)]
    if bad:
        raise TypeError(f"{name} must be a sequence of numbers; got {items!r} ({bad[0]!r} is not a number).")
    return [float(v) for v in items]


def integer_list(values, name: str) -> list[int]:
    """The entries of a sequence of integers as ints (not yet checked for range): a
    `TypeError` for a string, a single number, or an entry that is not an integer (2.5, "3",
    True)."""
    items = _entries(values, name, "integers")
    bad = [v for v in items if not is_integer(v)]
    if bad:
        raise TypeError(f"{name} must be a sequence of integers; got {items!r} ({bad[0]!r} is not an integer).")
    return [int(v) for v in items]


def positive_int(x, name: str) -> int:
    """`x` as an int, which must be an integer >= 1 (`TypeError` for 2.5, "3", True)."""
    if not is_integer(x):
        raise TypeError(f"{name} must be a positive integer; got {x!r}.")
    if int(x) < 1:
        raise ValueError(f"{name} must be a positive integer; got {int(x)}.")
    return int(x)


def check_range(x, name: str, expected: str, ok):
    """`x`, which must satisfy `ok(x, xp)` elementwise (`ok` maps an array to booleans with the
    array module `xp`: NumPy on concrete values, so that nothing is staged into a trace, and
    `jax.numpy` on traced ones); the message reads "`name` must `expected`; got `x`." A concrete
    `x` is checked at once (a `ValueError`) and returned unchanged (a Python float stays one); a
    traced one through `check`. A string, a bool or another non-number is a `TypeError`."""
    if isinstance(x, (str, bytes, bool, np.bool_)):
        raise TypeError(f"{name} must be a real number; got {x!r}.")
    if is_traced(x):
        return check(x, ~ok(jnp.asarray(x), jnp), f"{name} must {expected}; got {show(x)}.")
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must be a real number; got {x!r}.") from e
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise TypeError(f"{name} must be a real number; got {x!r}.")
    if not np.all(ok(arr, np)):
        raise ValueError(f"{name} must {expected}; got {show(x)}.")
    return x


def check_positive(x, name: str):
    """`x`, which must be finite and > 0 (see `check_range`)."""
    return check_range(x, name, POSITIVE, lambda v, xp: xp.isfinite(v) & (v > 0))


def check_fraction(x, name: str):
    """`x`, which must satisfy 0 < x < 1 (a relative tolerance; see `check_range`)."""
    return check_range(x, name, FRACTION.format(name=name), lambda v, xp: (v > 0) & (v < 1))


def check_momentum(x, name: str = "momentum"):
    """`x`, which must satisfy 0 <= x < 1 (a heavy-ball coefficient; see `check_range`)."""
    return check_range(x, name, MOMENTUM, lambda v, xp: (v >= 0) & (v < 1))


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
