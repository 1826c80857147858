"""The plateau hitting times of the gradient flow, found by a solver object.

`HittingTimeSearch` follows the flow dθ/dτ = −∇J (`_flow.py`) and locates τ₀ (parameters
moved by δ_param) and τ₀′ (loss dropped by δ_loss) as roots of event functions, by bisection on
the dense output of the step that crosses them, one after another in solve segments, so that
each is located exactly whichever comes first. It is written in the optimistix manner: `init`,
`step` (at most a given number of solver steps), `terminate` and `result`, with its loop state a
Module of named fields. `hitting_times` drives it to the end in one compiled call; a sweep's
continuous batching (`_experiments/batching.py`) advances many searches a few dozen steps per
call and refills the slots of finished ones.

Each step of the search runs the written-out step loop of `_steps.py`. Verified against scipy's
Radau at rtol 1e-10 (tests/test_flow.py).
"""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
from jaxtyping import Array, Bool, Float, Int, PyTree

from ._errors import (
    check_fraction,
    check_positive,
    check_range,
    is_traced,
    positive_int,
)
from ._flow import (
    DEFAULT_ATOL,
    DEFAULT_RTOL,
    default_solver,
    flow_loss,
    flow_term,
    outside_domain,
    split,
)
from ._kernels import AbstractKernel
from ._loss import param_distance
from ._models import DiagonalRNN
from ._results import RESULTS, hitting_result
from ._steps import initial_solver_state, solve_steps, with_controller_tols

#: The search's defaults: the flow is followed to `DEFAULT_HORIZON`, or to
#: `DEFAULT_HORIZON_FACTOR`·τ₀ once τ₀ is known; a solve segment may take `DEFAULT_MAX_STEPS`.
DEFAULT_HORIZON = 1e15
DEFAULT_HORIZON_FACTOR = 50.0
DEFAULT_MAX_STEPS = 8192

# The events of a segment are combined into one scalar condition (the largest of the pending
# ones), so that bisection applies: the loss drops abruptly at an escape, where Newton on a
# long step's dense output oscillates and fails. Bisection's tolerances serve both the bracket
# in τ (atol + rtol·τ: 1e-9 + 1e-10·τ, what sets the accuracy of the time) and the value of the
# condition (atol). The conditions are scaled by 1e-7/δ, so the latter means |c| < 1e-2·δ, a
# sanity bound: the loss drops abruptly at an escape (at L = 48, where two rates collide, it
# moves by more than 1e-5·δ across the bracket's 1e-10·τ), so a tight bound on the condition is
# unattainable there and would report a failure; the time is located by the bracket.
# expand_if_necessary=True: the bracket is already valid (a sign change over the last step), and
# this branch of Bisection has no runtime check (a host callback: no persistent caching).
DEFAULT_ROOT_FINDER = optx.Bisection(rtol=1e-10, atol=1e-9, expand_if_necessary=True)
_COND_SCALE = 1e-7
#: The events, in the order of their conditions: τ₀, τ₀′, and the end of the horizon.
EVENTS = ("param", "loss", "horizon")


class HittingTimes(eqx.Module):
    """τ₀ (parameters moved by δ_param) and τ₀′ (loss dropped by δ_loss); `inf` where not
    reached before the horizon. `result` (a `jaxmem.RESULTS`) says which were reached, or how
    the search failed; `horizon` is where it stopped, `loss0` the initial loss, `steps` the
    solver steps taken."""

    tau_param: Float[Array, ""]
    tau_loss: Float[Array, ""]
    horizon: Float[Array, ""]
    loss0: Float[Array, ""]
    steps: Int[Array, ""]
    result: RESULTS

    @property
    def reached_param(self) -> Array:
        return jnp.isfinite(self.tau_param)

    @property
    def reached_loss(self) -> Array:
        return jnp.isfinite(self.tau_loss)


class SearchState(eqx.Module):
    """A hitting-time search in progress (one problem)."""

    # Where the flow is: training time, state (a, v), and the loss at τ = 0.
    t: Float[Array, ""]
    y: Float[Array, " n"]
    loss0: Float[Array, ""]
    # The events: which have fired, and when. `over`: the horizon was reached, the search
    # failed, or the state is an inactive placeholder.
    param_found: Bool[Array, ""]
    loss_found: Bool[Array, ""]
    over: Bool[Array, ""]
    tau_param: Float[Array, ""]
    tau_loss: Float[Array, ""]
    horizon: Float[Array, ""]
    result: RESULTS  # successful, or the failure that ended the search
    # The step loop: steps in all, solve segments ended (one per event, so at most three),
    # steps in the current segment, and the step size and controller state to continue with
    # (unless `fresh`: a new segment starts with the controller's initial step selection).
    steps: Int[Array, ""]
    segments: Int[Array, ""]
    segment_steps: Int[Array, ""]
    fresh: Bool[Array, ""]
    dt: Float[Array, ""]
    controller_state: PyTree
    solver_state: PyTree  # the solver's own state where the last call stopped (e.g. first same as last)


class HittingTimeSearch(eqx.Module):
    r"""A solver for the hitting times of the gradient flow of a `DiagonalRNN` on a kernel.

    $\tau_0 = \inf\{\tau : \|\theta(\tau) - \theta(0)\|_2 > \delta_{param}\}$ and
    $\tau_0' = \inf\{\tau : J(\theta(0)) - J(\theta(\tau)) > \delta_{loss}\}$, with the distance
    measured in the coefficients and rates $(a, w)$ whatever the parameterisation.

    **Arguments** (all keyword, all with defaults):

    - `solver`: a diffrax adaptive solver (default `jaxmem.Rodas4()`, which uses the Hessian of
      the loss in closed form).
    - `stepsize_controller`: a diffrax adaptive step-size controller (default
      `diffrax.PIDController(rtol=1e-8, atol=1e-10)`).
    - `root_finder`: an optimistix root finder for the events on a step's dense output
      (default bisection with rtol 1e-10, atol 1e-9).
    - `delta_param`, `delta_loss`: the thresholds (default 0.05 each).
    - `horizon`: the flow is followed up to this τ (default 1e15), or, once τ₀ is known, up to
      `horizon_factor`·τ₀ (default 50): past the first escape the loss settles on the next
      plateau, and one recruited mode lowers it only by O(1/L).
    - `max_steps`: solver steps per solve segment (one segment per event); a segment that
      needs more ends the search with `RESULTS.max_steps_reached`.

    A search whose flow diverges (an accepted step with a non-finite loss or vector field, or
    with an active rate outside its domain, w ≤ 0) ends with `RESULTS.diverged`.

    **Use:** `state = search.init(model, target)`, then `state = search.step(model, target,
    state, num_steps)` until `search.terminate(state)`, then `search.result(state)`, a
    `HittingTimes`. `hitting_times` does this in one compiled call.

    ```python
    import diffrax, jax, jaxmem
    jax.config.update("jax_enable_x64", True)
    search = jaxmem.HittingTimeSearch(delta_loss=0.01,
                                      stepsize_controller=diffrax.PIDController(rtol=1e-9, atol=1e-11))
    h = jaxmem.hitting_times(jaxmem.canonical_model(), jaxmem.plateau_target(20.0), search=search)
    h.tau_param, h.tau_loss
    ```
    """

    solver: diffrax.AbstractAdaptiveSolver
    stepsize_controller: diffrax.AbstractAdaptiveStepSizeController
    root_finder: optx.AbstractRootFinder
    delta_param: float | Array
    delta_loss: float | Array
    horizon: float | Array
    horizon_factor: float = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)

    def __init__(self, *, solver=None, stepsize_controller=None, root_finder=None, delta_param=0.05,
                 delta_loss=0.05, horizon=DEFAULT_HORIZON, horizon_factor=DEFAULT_HORIZON_FACTOR,
                 max_steps=DEFAULT_MAX_STEPS):
        self.solver = default_solver() if solver is None else solver
        self.stepsize_controller = (
            diffrax.PIDController(rtol=DEFAULT_RTOL, atol=DEFAULT_ATOL)
            if stepsize_controller is None else stepsize_controller
        )
        self.root_finder = DEFAULT_ROOT_FINDER if root_finder is None else root_finder
        self.delta_param, self.delta_loss, self.horizon = delta_param, delta_loss, horizon
        self.horizon_factor, self.max_steps = horizon_factor, max_steps

    def __check_init__(self):
        if not isinstance(self.solver, diffrax.AbstractAdaptiveSolver):
            raise TypeError(f"solver must be an adaptive diffrax solver; got {self.solver!r}.")
        if not isinstance(self.stepsize_controller, diffrax.AbstractAdaptiveStepSizeController):
            raise TypeError(f"stepsize_controller must be an adaptive diffrax controller (e.g. "
                            f"diffrax.PIDController); got {self.stepsize_controller!r}.")
        if not isinstance(self.root_finder, optx.AbstractRootFinder):
            raise TypeError(f"root_finder must be an optimistix root finder (e.g. optimistix.Bisection); "
                            f"got {self.root_finder!r}.")
        check_range(self.horizon_factor, "horizon_factor", "be finite and > 1",
                    lambda v, xp: xp.isfinite(v) & (v > 1))
        positive_int(self.max_steps, "max_steps")
        # Concrete values only: a traced threshold (vmapped, or built inside a compiled program)
        # is checked by `hitting_times` through `check` before the search is made.
        for name in ("delta_param", "delta_loss", "horizon"):
            value = getattr(self, name)
            if not is_traced(value):
                check_positive(value, name)
        # The step controller's tolerances, where they are plain numbers (diffrax.PIDController).
        for name, check_tol in (("rtol", check_fraction), ("atol", check_positive)):
            value = getattr(self.stepsize_controller, name, None)
            if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
                check_tol(value, f"stepsize_controller.{name}")

    def _term(self, model, target):
        return flow_term(model, target, self.solver)

    def init(self, model: DiagonalRNN, target: AbstractKernel, *, active=True) -> SearchState:
        """The search at τ = 0 (`active=False`: a placeholder whose search is already over)."""
        y0 = jnp.concatenate([model.a, model.v])
        dtype = y0.dtype
        zero = jnp.zeros((), dtype)
        term = self._term(model, target)
        # Only the structure of the controller's state matters here: a fresh segment starts
        # with the controller's own initial step selection.
        controller_shape = jax.eval_shape(
            lambda: self.stepsize_controller.init(term, zero, zero + 1, y0, None, None, self.solver.func,
                                                  self.solver.error_order(term))[1]
        )
        solver = with_controller_tols(self.solver, self.stepsize_controller)
        solver_shape = jax.eval_shape(lambda: initial_solver_state(solver, term, y0, zero + 1))
        return SearchState(
            t=zero, y=y0, loss0=flow_loss(model, target, y0),
            param_found=jnp.asarray(False), loss_found=jnp.asarray(False), over=~jnp.asarray(active),
            tau_param=jnp.full((), jnp.inf, dtype), tau_loss=jnp.full((), jnp.inf, dtype),
            horizon=jnp.asarray(self.horizon, dtype), result=RESULTS.successful,
            steps=jnp.zeros((), int), segments=jnp.zeros((), int), segment_steps=jnp.zeros((), int),
            fresh=jnp.ones((), bool), dt=zero,
            controller_state=jax.tree_util.tree_map(lambda x: jnp.zeros(x.shape, x.dtype), controller_shape),
            solver_state=jax.tree_util.tree_map(lambda x: jnp.zeros(x.shape, x.dtype), solver_shape),
        )

    def terminate(self, state: SearchState) -> Bool[Array, ""]:
        """Whether the search is over: both times found, the horizon reached, or a failure."""
        return state.over | (state.param_found & state.loss_found) | (state.segments >= len(EVENTS))

    def step(self, model: DiagonalRNN, target: AbstractKernel, state: SearchState, num_steps: int) -> SearchState:
        """Advance the search by at most `num_steps` solver steps within its current segment:
        it stops at the segment's event (a hitting time, or the horizon) or after `num_steps`
        steps, to be continued by the next call with the same step sequence. With `num_steps
        == max_steps` each call completes one segment, and three calls complete the search."""
        s = state
        a0, w0 = model.a, model.rates
        term = self._term(model, target)
        delta_param, delta_loss = self.delta_param, self.delta_loss
        # In the order of EVENTS.
        done = jnp.stack([s.param_found, s.loss_found, s.over])
        times = jnp.stack([s.tau_param, s.tau_loss])
        horizon = s.horizon

        def conditions(t, y, horizon):
            a, v = split(model, y)
            # Each condition is scaled to O(1), so that one root-finder tolerance suits all of
            # them (the loss is known to ~1e-16 absolute; its slope on a long plateau is ~1e-10).
            return (
                _COND_SCALE * (param_distance(model, a, v, a0, w0) - delta_param) / delta_param,
                _COND_SCALE * (s.loss0 - flow_loss(model, target, y) - delta_loss) / delta_loss,
                _COND_SCALE * (t - horizon) / horizon,
            )

        finished = self.terminate(s)
        # A condition that crossed in the same step as the previous event is already positive
        # at the start of the next segment and would show no sign change: record it there
        # (within a step).
        c0 = jnp.stack(conditions(s.t, s.y, horizon)[:2])
        already = s.fresh & (c0 > 0) & ~done[:2] & ~finished
        times = jnp.where(already, s.t, times)
        done = done | jnp.concatenate([already, jnp.zeros(1, bool)])
        finished = finished | done[2] | (done[0] & done[1])
        # A search whose state is already outside the domain (or whose loss is not finite there)
        # has diverged: it takes no step.
        diverged0 = ~finished & (outside_domain(model, s.y) | ~jnp.all(jnp.isfinite(c0)))

        def combined(t, y):
            return jnp.max(jnp.where(done, -_COND_SCALE, jnp.stack(conditions(t, y, horizon))))

        t_end = jnp.where(finished | diverged0, s.t, horizon * 1.5)
        controller = self.stepsize_controller
        solver = with_controller_tols(self.solver, controller)
        # A fresh segment starts with the controller's initial step selection (two evaluations
        # of the field); a continued one with the step and the controller state where the last
        # call stopped.
        tnext, cs0 = controller.init(term, s.t, t_end, s.y, None, None, solver.func, solver.error_order(term))
        dt0 = jnp.where(s.fresh, tnext - s.t, s.dt)
        cs = jax.tree_util.tree_map(lambda a, b: jnp.where(s.fresh, a, b), cs0, s.controller_state)
        ss = jax.tree_util.tree_map(lambda a, b: jnp.where(s.fresh, a, b),
                                    initial_solver_state(solver, term, s.y, dt0), s.solver_state)
        t_stop, y_stop, n, fired, reached_end, root_ok, dt_stop, cs_stop, diverged, ss_stop = solve_steps(
            # Never past the segment's budget, so that results do not depend on the chunking.
            term, solver, controller, self.root_finder, s.t, t_end, s.y, dt0, cs, combined,
            jnp.minimum(num_steps, self.max_steps - s.segment_steps),
            outside=lambda y: outside_domain(model, y), solver_state=ss,
        )
        diverged = ~finished & (diverged0 | diverged)
        n = jnp.where(finished, 0, n).astype(s.steps.dtype)
        fired = fired & root_ok & ~finished
        # Stopped after num_steps steps with steps left in the segment: continue next call.
        more = ~fired & ~reached_end & root_ok & ~finished & ~diverged & (s.segment_steps + n < self.max_steps)
        # Which pending condition fired: the largest one at the root (it is ~0 there).
        values = jnp.where(done, -jnp.inf, jnp.stack(conditions(t_stop, y_stop, horizon)))
        hit = fired & (jnp.arange(len(EVENTS)) == jnp.argmax(values))
        times = jnp.where(hit[:2] & ~done[:2], t_stop, times)
        done = done | hit
        # Once parameters have moved, stop the search at horizon_factor * tau_param.
        horizon = jnp.where(done[0], jnp.minimum(horizon, self.horizon_factor * times[0]), horizon)
        good = fired | (reached_end & root_ok) | more
        failed = ~finished & (~good | diverged)
        result = RESULTS.where(
            failed & (s.result == RESULTS.successful),
            RESULTS.where(
                diverged,
                RESULTS.diverged,
                RESULTS.where(root_ok, RESULTS.max_steps_reached, RESULTS.event_not_located),
            ),
            s.result,
        )
        ended = ~finished & ~more
        keep = lambda new, old: jax.tree_util.tree_map(lambda a, b: jnp.where(more, a, b), new, old)
        return SearchState(
            t=jnp.where(finished, s.t, t_stop), y=jnp.where(finished, s.y, y_stop), loss0=s.loss0,
            # A failed segment ends the search.
            param_found=done[0], loss_found=done[1], over=done[2] | failed,
            tau_param=times[0], tau_loss=times[1], horizon=horizon, result=result,
            steps=s.steps + n, segments=s.segments + ended.astype(s.segments.dtype),
            segment_steps=jnp.where(ended, 0, s.segment_steps + n), fresh=ended | (finished & s.fresh),
            dt=jnp.where(more, dt_stop, s.dt), controller_state=keep(cs_stop, s.controller_state),
            solver_state=keep(ss_stop, s.solver_state),
        )

    def result(self, state: SearchState) -> HittingTimes:
        """The hitting times found (`inf` where not reached) and the outcome."""
        reached_param = state.param_found & jnp.isfinite(state.tau_param)
        reached_loss = state.loss_found & jnp.isfinite(state.tau_loss)
        return HittingTimes(
            tau_param=jnp.where(reached_param, state.tau_param, jnp.inf),
            tau_loss=jnp.where(reached_loss, state.tau_loss, jnp.inf),
            horizon=state.horizon,
            loss0=state.loss0,
            steps=state.steps,
            result=RESULTS.where(state.result == RESULTS.successful, hitting_result(reached_param, reached_loss),
                                 state.result),
        )
