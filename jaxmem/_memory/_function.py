r"""Memory functions: $|\rho(t)|$ for linear functionals, step responses for everything else."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._errors import as_float_array, check_positive, show
from .._kernels import AbstractKernel
from .._models import DiagonalRNN, LinearRNN

#: The step amplitudes of `memory_function` for models simulated by their outputs.
DEFAULT_AMPLITUDES = (-1.0, -0.3, -0.1, 0.1, 0.3, 1.0)
METHODS = ("auto", "exact", "step")


def _times(ts):
    ts = as_float_array(ts, "ts")
    if ts.ndim > 1:
        raise ValueError(f"ts must be a number or a 1-D array of times; got shape {ts.shape}.")
    arr = np.asarray(ts)
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError(f"ts must be finite times >= 0; got {show(arr)}.")
    return ts


@eqx.filter_jit
def _step_memory(model, field: str, amplitudes, dt: float, n_t: int, subtract_free: bool):
    """max over amplitudes of |d/dt ŷ(x·1)| / |x| on the grid j·dt, j < n_t (central differences);
    one compiled program per model structure, vmapped over the amplitudes."""
    simulate = getattr(model, field)

    free = simulate(jnp.zeros((n_t,), dtype=amplitudes.dtype), dt) if subtract_free else 0.0

    def derivative(x):
        ys = simulate(jnp.full((n_t,), x, dtype=amplitudes.dtype), dt) - free
        return jnp.abs(jnp.gradient(ys, dt)) / jnp.abs(x)

    return jnp.max(jax.vmap(derivative)(amplitudes), axis=0)


def memory_function(model_or_target, ts, *, amplitudes=DEFAULT_AMPLITUDES, dt=None, method="auto",
                    subtract_free=True) -> Float[Array, "..."]:
    r"""The memory function $M(t) = \sup_{x \ne 0} |\tfrac{d}{dt}\hat H_t(x\cdot 1_{t\ge 0})| / |x|$
    (Wang, Li & Li, ICLR 2024) at the times `ts`.

    - A kernel: exactly $|\rho(t)|$.
    - A `DiagonalRNN` or dense `LinearRNN`: exactly $\sum_j |c^\top e^{Wt}U_{:,j}|$ (one input:
      $|c^\top e^{Wt}U|$), the model's own kernel, no simulation.
    - Anything with `predict(xs, dt)` (nonlinear and discrete-time models) or `outputs(xs, dt)`
      (e.g. a Lorenz-96 target), or any model with `method="step"`: the definition itself.
      Step inputs $x\cdot 1_{t \ge 0}$ (samples all equal to $x$) for every amplitude in
      `amplitudes` are simulated on the grid $t_j = j\,$`dt` up to $\max$ `ts`, the output is
      differentiated by second-order central differences (one-sided at the ends), divided by
      $|x|$, and the maximum over the amplitudes is taken (the supremum is over those
      amplitudes only); the grid values are linearly interpolated to `ts`. With
      `subtract_free` (default) the response to zero input (the drift of a bias from $h = 0$)
      is subtracted first, so that only the response to the input counts. One compiled
      program, vmapped over the amplitudes. The finite differences cost $O(\mathrm{dt}^2)$; a
      discrete-time model's own step is its `dt`.

    **Arguments:**

    - `model_or_target`: a kernel, a linear RNN, or a model with `predict` / `outputs`.
    - `ts`: times $\ge 0$, a number or a 1-D array.
    - `amplitudes`: the step sizes $x \ne 0$ (default $\pm 0.1, \pm 0.3, \pm 1$).
    - `dt`: the simulation step (default: the spacing of `ts` when it is a uniform grid from 0).
    - `method`: `"auto"` (exact where it exists), `"exact"` or `"step"`.

    **Returns:** $M$ at `ts`, the shape of `ts`.

    ```python
    import jax, jax.numpy as jnp, jaxmem
    jax.config.update("jax_enable_x64", True)
    jaxmem.memory_function(jaxmem.PowerLaw(1.0), jnp.array([0.0, 1.0]))   # [1, 1/4]
    ```
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}.")
    ts = _times(ts)
    exact = isinstance(model_or_target, (AbstractKernel, DiagonalRNN, LinearRNN))
    if method == "exact" and not exact:
        raise TypeError(f"method='exact' needs a kernel, a DiagonalRNN or a LinearRNN; got "
                        f"{type(model_or_target).__name__}.")
    if exact and method != "step":
        if isinstance(model_or_target, AbstractKernel):
            return jnp.abs(model_or_target(ts))
        if isinstance(model_or_target, DiagonalRNN):
            return jnp.abs(model_or_target.kernel(ts))
        return jnp.sum(jnp.abs(model_or_target.kernel(ts)), axis=-1)
    field = "predict" if hasattr(model_or_target, "predict") else "outputs" if hasattr(model_or_target, "outputs") else None
    if field is None:
        raise TypeError(f"memory_function needs a kernel, a linear RNN, or a model with predict(xs, dt) or "
                        f"outputs(xs, dt); got {type(model_or_target).__name__}.")
    amps = as_float_array(amplitudes, "amplitudes", ndim=1)
    a = np.asarray(amps)
    if a.size == 0 or not np.all(np.isfinite(a)) or np.any(a == 0):
        raise ValueError(f"amplitudes must be finite and non-zero; got {show(a)}.")
    arr = np.atleast_1d(np.asarray(ts))
    if dt is None:
        d = np.diff(arr)
        if arr.size < 2 or arr[0] != 0 or np.max(np.abs(d - d[0])) > 1e-9 * max(d[0], 1e-300) or d[0] <= 0:
            raise ValueError(f"memory_function of a simulated model needs dt, or ts a uniform grid from 0; got "
                             f"ts = {show(arr)}.")
        dt = float(d[0])
    dt = float(check_positive(dt, "dt"))
    n_t = int(np.ceil(arr.max() / dt - 1e-9)) + 2
    grid_m = _step_memory(model_or_target, field, amps, dt, max(n_t, 3), bool(subtract_free))
    grid_t = jnp.arange(grid_m.shape[0], dtype=amps.dtype) * dt
    return jnp.interp(ts, grid_t, grid_m)
