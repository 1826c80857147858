"""`hitting_times`: the plateau hitting times of the gradient flow in one compiled call, a
`HittingTimeSearch` (`_hitting.py`) driven from its start to its end."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp

from ._errors import (
    check_fraction,
    check_positive,
    warn_if_not_x64,
)
from ._flow import DEFAULT_ATOL, DEFAULT_RTOL
from ._hitting import (
    DEFAULT_HORIZON,
    DEFAULT_HORIZON_FACTOR,
    DEFAULT_MAX_STEPS,
    EVENTS,
    HittingTimes,
    HittingTimeSearch,
)
from ._kernels import AbstractKernel
from ._models import DiagonalRNN, check_diagonal
from ._results import raise_if_failed


def hitting_times(
    model: DiagonalRNN,
    target: AbstractKernel,
    *,
    delta_param=0.05,
    delta_loss=0.05,
    t1=DEFAULT_HORIZON,
    horizon_factor: float = DEFAULT_HORIZON_FACTOR,
    solver=None,
    rtol: float = DEFAULT_RTOL,
    atol: float = DEFAULT_ATOL,
    max_steps: int = DEFAULT_MAX_STEPS,
    search: HittingTimeSearch | None = None,
    throw: bool = True,
) -> HittingTimes:
    r"""Hitting times of the gradient flow, located as roots of event functions:

    $\tau_0 = \inf\{\tau : \|\theta(\tau) - \theta(0)\|_2 > \delta_{param}\}$ and
    $\tau_0' = \inf\{\tau : J(\theta(0)) - J(\theta(\tau)) > \delta_{loss}\}$,

    with the distance measured in the rates and coefficients $(a, w)$ whatever the
    parameterisation, so parameterisations compare.

    **Arguments:**

    - `model`: the initial `DiagonalRNN`; `target`: a kernel with Laplace moments.
    - `delta_param`, `delta_loss`, `t1` (the horizon), `horizon_factor`, `solver`, `rtol`,
      `atol` (of a `diffrax.PIDController`), `max_steps` (per solve segment): the settings of
      the `HittingTimeSearch` used, when `search` is not given.
    - `search`: a `HittingTimeSearch` (to choose the step controller or the root finder);
      when given, the settings above must be left at their defaults.
    - `throw`: raise a `RuntimeError` when the search fails (`RESULTS.max_steps_reached`,
      `RESULTS.event_not_located`, `RESULTS.diverged`); a threshold not reached is an
      outcome, never an error.

    **Returns:** `HittingTimes`. A hitting time not reached is `inf`, never a number, and
    `result` says which thresholds were reached: the flow is followed up to `t1`, or, once τ₀
    is known, up to `horizon_factor`·τ₀ (past the first escape the loss settles on the next
    plateau and one recruited mode lowers it only by O(1/L), so at L ≳ 20, δ_loss = 0.05 is
    not reached; use 0.01 for long lags). `horizon` records where the search stopped.

    Cost: with the default `Rodas4`, ~2,000 steps at L = 32 and ~5,000 at L = 40 (mostly between
    τ₀ and τ₀′); past L ≈ 44 pass `search=HittingTimeSearch(solver=jaxmem.long_lag_solver(), ...)`
    (~1,000 steps at L = 56). The lag enters only as data, so one compilation serves every lag
    and `jax.vmap` batches them.

    ```python
    import jax, jaxmem
    jax.config.update("jax_enable_x64", True)
    h = jaxmem.hitting_times(jaxmem.canonical_model(), jaxmem.plateau_target(30.0), delta_loss=0.01)
    h.tau_param, h.tau_loss          # ~ 8.0e4, 1.27e6
    ```
    """
    warn_if_not_x64("hitting_times")
    model = check_diagonal(model, "hitting_times")
    dtype = model.a.dtype
    if search is None:
        out = [jnp.asarray(check_positive(val, name), dtype=dtype)
               for name, val in (("delta_param", delta_param), ("delta_loss", delta_loss), ("t1", t1))]
        rtol, atol = check_fraction(rtol, "rtol"), check_positive(atol, "atol")
        search = HittingTimeSearch(
            solver=solver, stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol), delta_param=out[0],
            delta_loss=out[1], horizon=out[2], horizon_factor=horizon_factor, max_steps=max_steps,
        )
    else:
        if not isinstance(search, HittingTimeSearch):
            raise TypeError(f"search must be a jaxmem.HittingTimeSearch; got {search!r}.")
        given = dict(delta_param=delta_param, delta_loss=delta_loss, t1=t1, horizon_factor=horizon_factor,
                     solver=solver, rtol=rtol, atol=atol, max_steps=max_steps)
        changed = [k for k, v in given.items() if v is not _DEFAULTS[k] and v != _DEFAULTS[k]]
        if changed:
            raise TypeError(f"hitting_times: pass {changed} as fields of `search`, not beside it.")
    out = _hitting_times(search, model, target)
    raise_if_failed(out.result, throw)
    return out


_DEFAULTS = dict(delta_param=0.05, delta_loss=0.05, t1=DEFAULT_HORIZON, horizon_factor=DEFAULT_HORIZON_FACTOR,
                 solver=None, rtol=DEFAULT_RTOL, atol=DEFAULT_ATOL, max_steps=DEFAULT_MAX_STEPS)


def run_search(search: HittingTimeSearch, model, target) -> HittingTimes:
    """The unjitted core of `hitting_times` (no input checks): three solve segments, one per
    event, each of at most `search.max_steps` steps."""

    def segment(state, _):
        return search.step(model, target, state, search.max_steps), None

    state, _ = jax.lax.scan(segment, search.init(model, target), None, length=len(EVENTS))
    return search.result(state)


_hitting_times = eqx.filter_jit(run_search)
