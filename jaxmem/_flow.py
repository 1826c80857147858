"""The gradient flow of training, dθ/dτ = −∇J(θ), and its plateau hitting times.

Numerics (DESIGN §1.4, issue 3). The flow is stiff: fast modes relax in O(1) time while the
plateau lasts e^{cL}. The default solver is `Rodas4` (`_rosenbrock.py`), a linearly implicit
L-stable Rosenbrock method in plain training time τ with the exact Jacobian (the Hessian of J)
once per step: it crosses plateaus of length 1e8 in a few hundred to a thousand steps, with no
nonlinear stage iteration at all.

History (why not an implicit Runge-Kutta method): Kvaerno5 also crosses the plateaus, but only
with its stage equations solved by `optx.Chord` (Cauchy termination), not diffrax's default
`VeryChord`, which inherits the step controller's atol (meant for θ) as its tolerance on the
stage slope f, ~e^{-wL} on a plateau (2.6e-9 at L = 40); it stops with a 4% error in f and the
controller then collapses the steps from ~1e5 to ~0.1 (a stall past L ≈ 36). Tightening it trips
its divergence test on the ~1e-16 rounding noise of Ga − b₀. Even with Chord, the stage solves
made a step ~6× the cost of a Rodas4 step in a vmapped batch of 64 (the batch iterates until its
slowest member converges), for ~2.6× fewer steps; `kvaerno5_chord()` keeps that solver available.
Changes of time (s = log τ, arc length) were tried and fail: they do not remove the stiffness
and they amplify the rounding noise.

Hitting times are roots of event functions, located by bisection on the dense output, one after
another in solve segments, so that each is located exactly whichever comes first. The search is
resumable (`FlowSearch`, `advance_search`): it can be advanced a bounded number of steps at a
time with the step size and controller state carried over, which is how sweeps refill the slot
of a finished problem (continuous batching); its step loop is written out (`_solve_chunk`:
Rodas4's step, diffrax's PID controller and dense output, optimistix's bisection) because
diffrax's `max_steps` cut-off loses events under `vmap`. Verified against scipy's Radau at
rtol 1e-10 (tests/test_flow.py).
"""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import optimistix as optx
from equinox import internal as eqxi
from jaxtyping import Array, Bool, Float, Int

from ._errors import check, show, warn_if_not_x64
from ._kernels import AbstractKernel
from ._models import DiagonalRNN
from ._rosenbrock import JacobianODETerm, Rodas4
from ._train import loss_and_grad, loss_hessian, param_distance

_DEFAULT_RTOL = 1e-8
# The events of a segment are combined into one scalar condition (the largest of the pending
# ones), so that bisection applies: the loss drops abruptly at an escape, where Newton on a
# long step's dense output oscillates and fails. Bisection's tolerances serve both the bracket
# in τ (atol + rtol·τ: 1e-9 + 1e-10·τ, what sets the accuracy of the time) and the value of the
# condition (atol). The conditions are scaled by 1e-4/δ, so the latter means |c| < 1e-5·δ, a
# sanity bound: at L = 40 the loss moves by ~1e-9·δ between adjacent float64 values of
# τ ≈ 5e8, so a tight bound on the condition is unattainable there and would report a failure.
# expand_if_necessary=True: the bracket is already valid (a sign change over the last step), and
# this branch of Bisection has no runtime check (a host callback: no persistent caching).
_EVENT_ROOT_FINDER = optx.Bisection(rtol=1e-10, atol=1e-9, expand_if_necessary=True)
_COND_SCALE = 1e-4
_DEFAULT_ATOL = 1e-10


def default_solver() -> diffrax.AbstractSolver:
    """The solver of the gradient flow: `jaxmem.Rodas4` (Rosenbrock, order 4, L-stable, exact
    Jacobian), which crosses plateaus of any length (see the module docstring)."""
    return Rodas4()


def kvaerno5_chord(*, chord_rtol: float = 1e-6, chord_atol: float = 1e-12) -> diffrax.AbstractSolver:
    """Kvaerno5 with a Chord (Cauchy-terminated) stage solver: the implicit Runge-Kutta setting
    that also crosses plateaus (diffrax's default `VeryChord` stalls); slower than Rodas4."""
    return diffrax.Kvaerno5(root_finder=optx.Chord(rtol=chord_rtol, atol=chord_atol))


def describe_default_solver(rtol=_DEFAULT_RTOL, atol=_DEFAULT_ATOL) -> dict:
    return dict(
        solver="jaxmem.Rodas4 (Rosenbrock RODAS, order 4(3), exact Jacobian) in diffrax",
        time="training time tau",
        stepsize_controller=f"PIDController(rtol={rtol:g}, atol={atol:g})",
        events="one diffrax.Event per segment (max of the pending conditions, each scaled by its delta), optimistix.Bisection(rtol=1e-10, atol=1e-9) on the dense output, |condition| < 1e-5 delta",
        dtype=str(jnp.zeros(()).dtype),
    )


def _split(model, y):
    m = model.width
    return y[:m], y[m:]


def _vector_field(model, target):
    def field(t, y, args):
        a, v = _split(model, y)
        _, ga, gv = loss_and_grad(model, target, a, v)
        return -jnp.concatenate([ga, gv])

    return field


def _term(model, target, solver=None):
    """The flow's vector field; for `Rodas4` (the default) with its Jacobian, −Hessian of J, in
    closed form. Other solvers get a plain `ODETerm` (diffrax's implicit Runge-Kutta methods
    take their own Jacobians and reject a term with extra fields)."""
    if solver is not None and not isinstance(solver, Rodas4):
        return diffrax.ODETerm(_vector_field(model, target))

    def jacobian(t, y, args):
        a, v = _split(model, y)
        return -loss_hessian(model, target, a, v)

    return JacobianODETerm(_vector_field(model, target), jacobian)


def _loss(model, target, y):
    a, v = _split(model, y)
    return loss_and_grad(model, target, a, v)[0]


class FlowResult(eqx.Module):
    """A gradient-flow trajectory: times τ, losses J(τ), coefficients a(τ), rates w(τ)."""

    ts: Float[Array, " n"]
    losses: Float[Array, " n"]
    a: Float[Array, "n m"]
    w: Float[Array, "n m"]
    num_steps: Int[Array, ""]
    num_rejected: Int[Array, ""]
    ok: Bool[Array, ""]


def gradient_flow(
    model: DiagonalRNN,
    target: AbstractKernel,
    t1,
    *,
    saveat=None,
    solver=None,
    rtol: float = _DEFAULT_RTOL,
    atol: float = _DEFAULT_ATOL,
    max_steps: int = 100_000,
) -> FlowResult:
    r"""Solve the gradient flow $d\theta/d\tau = -\nabla J(\theta)$ on the exact white-noise loss.

    All of $a$ and the stored rate parameters $v$ (through the model's parameterisation) are
    trained; masked modes stay still.

    **Arguments:**

    - `model`: the initial `DiagonalRNN`; `target`: a kernel with Laplace moments.
    - `t1`: final training time τ > 0.
    - `saveat`: times τ to save at (default: 0 and 241 log-spaced times from 1e-6·`t1` to `t1`).
    - `solver`, `rtol`, `atol`, `max_steps`: the Diffrax solve (default `default_solver()`).

    **Returns:** a `FlowResult` with the trajectory, solver statistics and `ok` (False when the
    solver failed, e.g. ran out of steps; the trajectory is then NaN past the failure).

    Crossing a plateau is cheap (hundreds of steps up to τ ~ 1e8); far past the escape the
    recruited modes' coefficients grow large with nearly equal rates (the fit of a far bump by
    exponentials is ill-conditioned) and the step count grows quickly: choose `t1` a few times
    the hitting times of interest, or raise `max_steps`.

    ```python
    import jax, jaxmem
    jax.config.update("jax_enable_x64", True)
    res = jaxmem.gradient_flow(jaxmem.canonical_model(), jaxmem.plateau_target(12.0), 1e3)
    res.losses[0], res.losses[-1]       # the plateau, then the drop
    ```
    """
    warn_if_not_x64("gradient_flow")
    t1 = jnp.asarray(t1, dtype=model.a.dtype)
    t1 = check(t1, ~(t1 > 0), f"t1 must be > 0; got {show(t1)}.")
    if saveat is None:
        saveat = jnp.concatenate([jnp.zeros(1), jnp.geomspace(1e-6, 1.0, 241) * t1])
    saveat = jnp.asarray(saveat, dtype=model.a.dtype)
    return _gradient_flow(model, target, t1, saveat, solver or default_solver(), rtol, atol, max_steps)


@eqx.filter_jit
def _gradient_flow(model, target, t1, saveat, solver, rtol, atol, max_steps):
    y0 = jnp.concatenate([model.a, model.v])
    sol = diffrax.diffeqsolve(
        _term(model, target, solver), solver, 0.0, t1, 1e-3, y0,
        saveat=diffrax.SaveAt(ts=saveat),
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        max_steps=max_steps, throw=False,
    )
    ys = sol.ys
    losses = jax.vmap(lambda y: _loss(model, target, y))(ys)
    a, v = ys[:, : model.width], ys[:, model.width :]
    return FlowResult(
        ts=sol.ts, losses=losses, a=a, w=model.parameterization(v),
        num_steps=sol.stats["num_steps"], num_rejected=sol.stats["num_rejected_steps"],
        ok=sol.result == diffrax.RESULTS.successful,
    )


class HittingTimes(eqx.Module):
    """τ₀ (parameters moved by δ_param) and τ₀′ (loss dropped by δ_loss); `inf` where not
    reached before the horizon, with `reached_*` flags and the solver's status."""

    tau_param: Float[Array, ""]
    tau_loss: Float[Array, ""]
    reached_param: Bool[Array, ""]
    reached_loss: Bool[Array, ""]
    horizon: Float[Array, ""]
    loss0: Float[Array, ""]
    steps: Int[Array, ""]
    solver_ok: Bool[Array, ""]


def hitting_times(
    model: DiagonalRNN,
    target: AbstractKernel,
    *,
    delta_param=0.05,
    delta_loss=0.05,
    t1=1e15,
    horizon_factor: float = 50.0,
    solver=None,
    rtol: float = _DEFAULT_RTOL,
    atol: float = _DEFAULT_ATOL,
    max_steps: int = 8192,
) -> HittingTimes:
    r"""Hitting times of the gradient flow, located as roots of event functions:

    $\tau_0 = \inf\{\tau : \|\theta(\tau) - \theta(0)\|_2 > \delta_{param}\}$ and
    $\tau_0' = \inf\{\tau : J(\theta(0)) - J(\theta(\tau)) > \delta_{loss}\}$,

    with the distance measured in the rates and coefficients $(a, w)$ whatever the
    parameterisation, so parameterisations compare.

    A hitting time not reached is `inf` with `reached_* = False`, never a number. The flow is
    followed up to `t1`, or — once τ₀ is known — up to `horizon_factor`·τ₀: past the first
    escape the loss settles on the next plateau, and one recruited mode lowers it only by
    O(1/L), so a loss drop not reached by then is reported as not reached (at L ≳ 20, δ_loss =
    0.05 is not reached; use 0.01 for long lags). `horizon` records where the search stopped.

    Cost: a few hundred implicit steps for plateaus up to τ ~ 1e8 (L = 40); the lag enters only
    as data, so one compilation serves every lag and `jax.vmap` batches them.

    ```python
    import jax, jaxmem
    jax.config.update("jax_enable_x64", True)
    h = jaxmem.hitting_times(jaxmem.canonical_model(), jaxmem.plateau_target(30.0), delta_loss=0.01)
    h.tau_param, h.tau_loss          # ~ 8.0e4, 1.27e6
    ```
    """
    warn_if_not_x64("hitting_times")
    if not isinstance(model, DiagonalRNN):
        raise TypeError(f"hitting_times needs a DiagonalRNN; got {type(model).__name__}.")
    dtype = model.a.dtype
    out = []
    for name, val in (("delta_param", delta_param), ("delta_loss", delta_loss), ("t1", t1)):
        val = jnp.asarray(val, dtype=dtype)
        out.append(check(val, ~(val > 0), f"{name} must be > 0; got {show(val)}."))
    if not horizon_factor > 1:
        raise ValueError(f"horizon_factor must be > 1; got {horizon_factor}.")
    return _hitting_times(
        model, target, *out, horizon_factor, solver or default_solver(), rtol, atol, max_steps
    )


def _with_controller_tols(solver, controller):
    """As `diffeqsolve` does: an implicit solver's stage tolerances marked
    `use_stepsize_tol` (diffrax's default `VeryChord`) take the step controller's."""
    if not isinstance(solver, diffrax.AbstractImplicitSolver):
        return solver
    from diffrax._root_finder import use_stepsize_tol

    names = [k for k in ("rtol", "atol", "norm") if getattr(solver.root_finder, k, None) is use_stepsize_tol]
    if not names:
        return solver
    return eqx.tree_at(lambda x: [getattr(x.root_finder, k) for k in names], solver,
                       [getattr(controller, k) for k in names], is_leaf=lambda x: x is use_stepsize_tol)


def _solve_chunk(term, solver, controller, t0, t_end, y0, dt0, pid0, cond, n_max):
    """At most `n_max` adaptive steps of `solver` from (t0, y0) towards `t_end`, stopping at
    the first sign change of the event function `cond(t, y)` (located by bisection on the
    step's dense output, as `diffrax.Event` does).

    The loop is written out here rather than `diffrax.diffeqsolve(..., max_steps=n_max)`: a
    solve cut short by `max_steps` inside a vmapped batch can, in diffrax 0.7 with Equinox
    0.13, lose the event of a member whose last step crosses it while another member has
    already stopped at its own event (seen in sweeps: the loss event missed, the flow followed
    to the horizon). Here a member's state is frozen by `jax.lax.while_loop`'s own batching
    rule. The step, the step-size control and the dense output are diffrax's.

    Returns (t, y, steps taken, event fired, reached t_end, root-finding ok, next step, PID
    state)."""
    error_order = solver.error_order(term)
    dtype = y0.dtype
    f0 = solver.init(term, t0, t0 + dt0, y0, None)
    c0 = cond(t0, y0)
    interp = jax.eval_shape(lambda: solver.step(term, t0, t0 + dt0, y0, None, f0, False)[2])
    zeros = jax.tree_util.tree_map(lambda x: jnp.zeros(x.shape, x.dtype), interp)
    init = (jnp.zeros((), int), t0, y0, f0, c0, dt0, pid0, jnp.zeros((), bool), t0, t0, zeros)

    def cond_fun(st):
        n, t, _, _, _, _, _, fired, _, _, _ = st
        return (n < n_max) & ~fired & (t < t_end)

    def body_fun(st):
        n, t, y, f, c, dt, pid, _, _, _, dense = st
        t1 = jnp.minimum(t + dt, t_end)
        y1, y_err, dense1, f1, _ = solver.step(term, t, t1, y, None, f, False)
        keep, next_t0, next_t1, _, pid1, _ = controller.adapt_step_size(
            t, t1, y, y1, None, y_err, error_order, pid
        )
        keep = keep & jnp.all(jnp.isfinite(y1))
        c1 = jnp.where(keep, cond(t1, y1), c)
        fired = keep & (jnp.sign(c) != jnp.sign(c1))
        pick = lambda new, old: jax.tree_util.tree_map(lambda a, b: jnp.where(keep, a, b), new, old)
        t_new, y_new, f_new = pick((t1, y1, f1), (t, y, f))
        dense = jax.tree_util.tree_map(lambda a, b: jnp.where(fired, a, b), dense1, dense)
        return (n + 1, t_new, y_new, f_new, c1, next_t1 - next_t0, pid1, fired, t, t1, dense)

    n, t, y, _, _, dt, pid, fired, tl, tr, dense = jax.lax.while_loop(cond_fun, body_fun, init)

    def locate():
        interpolation = solver.interpolation_cls(t0=tl, t1=tr, **dense)
        # Members without an event get the constant 0 (a root at once), as in diffrax.
        sol = optx.root_find(lambda tau, _: jnp.where(fired, cond(tau, interpolation.evaluate(tau)), 0.0),
                             _EVENT_ROOT_FINDER, y0=tr, options=dict(lower=tl, upper=tr), throw=False)
        return sol.value, interpolation.evaluate(sol.value), sol.result == optx.RESULTS.successful

    # Bisection only where some member's event fired (under vmap it then runs for all).
    t_root, y_root, root_ok = jax.lax.cond(eqxi.unvmap_any(fired), locate, lambda: (t, y, jnp.asarray(True)))
    t_out = jnp.where(fired, t_root, t)
    y_out = jnp.where(fired, y_root, y)
    return t_out, y_out, n, fired, (t >= t_end) & ~fired, ~fired | root_ok, dt.astype(dtype), pid


class FlowSearch(eqx.Module):
    """A hitting-time search in progress (one problem): where the flow is, which events have
    fired, and the step controller's state, so that the search can be advanced a bounded
    number of solver steps at a time (`advance_search`) — what lets a sweep refill the slot of
    a finished problem with a new one instead of waiting for the slowest member of a batch."""

    t: Float[Array, ""]
    y: Float[Array, " n"]
    loss0: Float[Array, ""]
    done: Bool[Array, " 3"]  # tau_param found, tau_loss found, search over (horizon/failure)
    times: Float[Array, " 3"]
    horizon: Float[Array, ""]
    steps: Int[Array, ""]
    ok: Bool[Array, ""]
    segment: Int[Array, ""]  # solve segments ended so far (at most 3: one per event)
    segment_steps: Int[Array, ""]  # steps taken in the current segment
    fresh: Bool[Array, ""]  # at the start of a segment: choose a new initial step
    dt: Float[Array, ""]  # the step proposed next (when not fresh)
    pid: tuple


def start_search(model, target, t1, *, active=True) -> FlowSearch:
    """The search's initial state at τ = 0 (`active=False`: a placeholder, already over)."""
    y0 = jnp.concatenate([model.a, model.v])
    dtype = y0.dtype
    zero = jnp.zeros((), dtype)
    return FlowSearch(
        t=zero, y=y0, loss0=_loss(model, target, y0),
        done=jnp.stack([jnp.asarray(False), jnp.asarray(False), ~jnp.asarray(active)]),
        times=jnp.full(3, jnp.inf, dtype), horizon=jnp.asarray(t1, dtype), steps=jnp.zeros((), int),
        ok=jnp.ones((), bool), segment=jnp.zeros((), int), segment_steps=jnp.zeros((), int),
        fresh=jnp.ones((), bool), dt=zero, pid=(jnp.ones((), dtype), jnp.ones((), dtype), jnp.zeros((), bool)),
    )


def search_finished(s: FlowSearch):
    return s.done[2] | (s.done[0] & s.done[1]) | (s.segment >= 3)


def advance_search(model, target, s: FlowSearch, delta_param, delta_loss, horizon_factor, solver, rtol, atol,
                   max_steps, chunk_steps) -> FlowSearch:
    """Advance the search by one solve of at most `chunk_steps` steps within its current
    segment: it stops at the segment's event (a hitting time, or the horizon) or after
    `chunk_steps` steps, to be continued by the next call with the same step sequence. A
    segment that takes `max_steps` steps in all fails the search. With `chunk_steps ==
    max_steps` each call completes one segment and three calls complete the search."""
    a0, w0 = model.a, model.rates
    term = _term(model, target, solver)
    done, times, horizon = s.done, s.times, s.horizon

    def conditions(t, y, horizon):
        a, v = _split(model, y)
        # Each condition is scaled to O(1), so that one root-finder tolerance suits all of them
        # (the loss is known to ~1e-16 absolute; its slope on a long plateau is ~1e-10).
        return (
            _COND_SCALE * (param_distance(model, a, v, a0, w0) - delta_param) / delta_param,
            _COND_SCALE * (s.loss0 - _loss(model, target, y) - delta_loss) / delta_loss,
            _COND_SCALE * (t - horizon) / horizon,
        )

    finished = search_finished(s)
    # A condition that crossed in the same step as the previous event is already positive at
    # the start of the next segment and would show no sign change: record it there (within a
    # step).
    c0 = jnp.stack(conditions(s.t, s.y, horizon)[:2])
    already = jnp.concatenate([s.fresh & (c0 > 0) & ~done[:2] & ~finished, jnp.zeros(1, bool)])
    times = jnp.where(already, s.t, times)
    done = done | already
    finished = finished | done[2] | (done[0] & done[1])

    def combined(t, y, args, **kwargs):
        return jnp.max(jnp.where(done, -_COND_SCALE, jnp.stack(conditions(t, y, horizon))))

    t_end = jnp.where(finished, s.t, horizon * 1.5)
    controller = diffrax.PIDController(rtol=rtol, atol=atol)
    solver = _with_controller_tols(solver, controller)
    # A fresh segment starts with diffrax's initial step selection (two evaluations of the
    # field); a continued one with the step and the controller state where the last call
    # stopped.
    tnext, pid0 = controller.init(term, s.t, t_end, s.y, None, None, solver.func, solver.error_order(term))
    dt0 = jnp.where(s.fresh, tnext - s.t, s.dt)
    pid = jax.tree_util.tree_map(lambda a, b: jnp.where(s.fresh, a, b), pid0, s.pid)
    t_stop, y_stop, n, fired, reached_end, root_ok, dt_stop, pid_stop = _solve_chunk(
        term, solver, controller, s.t, t_end, s.y, dt0, pid, lambda t, y: combined(t, y, None), chunk_steps
    )
    n = jnp.where(finished, 0, n).astype(s.steps.dtype)
    fired = fired & root_ok & ~finished
    # Stopped after chunk_steps steps with steps left in the segment: continue next call.
    more = ~fired & ~reached_end & root_ok & ~finished & (s.segment_steps + n < max_steps)
    # Which pending condition fired: the largest one at the root (it is ~0 there).
    values = jnp.where(done, -jnp.inf, jnp.stack(conditions(t_stop, y_stop, horizon)))
    hit = fired & (jnp.arange(3) == jnp.argmax(values))
    times = jnp.where(hit & ~done, t_stop, times)
    done = done | hit
    # Once parameters have moved, stop the search at horizon_factor * tau_param.
    horizon = jnp.where(done[0], jnp.minimum(horizon, horizon_factor * times[0]), horizon)
    good = fired | (reached_end & root_ok) | more
    ok = s.ok & (finished | good)
    # A failed segment (max_steps, non-finite) ends the search: mark it done.
    done = done.at[2].set(done[2] | (~finished & ~good))
    ended = ~finished & ~more
    return FlowSearch(
        t=jnp.where(finished, s.t, t_stop), y=jnp.where(finished, s.y, y_stop), loss0=s.loss0, done=done,
        times=times, horizon=horizon, steps=s.steps + n, ok=ok, segment=s.segment + ended.astype(s.segment.dtype),
        segment_steps=jnp.where(ended, 0, s.segment_steps + n), fresh=ended | (finished & s.fresh),
        dt=jnp.where(more, dt_stop, s.dt), pid=jax.tree_util.tree_map(lambda a, b: jnp.where(more, a, b), pid_stop, s.pid),
    )


def search_result(s: FlowSearch) -> HittingTimes:
    reached = s.done[:2] & jnp.isfinite(s.times[:2])
    return HittingTimes(
        tau_param=jnp.where(reached[0], s.times[0], jnp.inf),
        tau_loss=jnp.where(reached[1], s.times[1], jnp.inf),
        reached_param=reached[0],
        reached_loss=reached[1],
        horizon=s.horizon,
        loss0=s.loss0,
        steps=s.steps,
        solver_ok=s.ok,
    )


def hitting_times_impl(model, target, delta_param, delta_loss, t1, horizon_factor, solver, rtol, atol, max_steps):
    """The unjitted core of `hitting_times` (no input checks): three solve segments, one per
    event, each of at most `max_steps` steps."""

    def segment(s, _):
        return advance_search(model, target, s, delta_param, delta_loss, horizon_factor, solver, rtol, atol,
                              max_steps, max_steps), None

    s, _ = jax.lax.scan(segment, start_search(model, target, t1), None, length=3)
    return search_result(s)


_hitting_times = eqx.filter_jit(hitting_times_impl)
