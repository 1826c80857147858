"""A bounded loop of adaptive ODE steps that stops at the sign change of an event function.

The loop is written out (the solver's step, the step controller's `adapt_step_size`, the dense
output, an optimistix root finder on it) rather than `diffrax.diffeqsolve(..., max_steps=n)`: a
solve cut short by `max_steps` inside a vmapped batch can, in diffrax 0.7 with Equinox 0.13,
lose the event of a member whose last step crosses it while another member has already stopped
at its own event. Here a member's state is frozen by `jax.lax.while_loop`'s own batching rule.
The step, the step-size control and the dense output are diffrax's.

The flow's field does not depend on time, so each step is taken in the step's own time,
from 0 to its length h, and the time τ is summed apart (compensated): at an escape past
L ≈ 56 the step shrinks to ~1e-2 at τ ~ 3e13, where float64 spaces the numbers 4e-3 apart, so
a step taken from τ to τ + h would be cut to a few units of rounding and the solver would stall.
"""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import optimistix as optx
from equinox import internal as eqxi
from jaxtyping import Array, Bool, Float, Int, PyTree


class _LoopState(eqx.Module):
    """The state of `solve_steps`' loop of adaptive steps."""

    num_steps: Int[Array, ""]
    t: Float[Array, ""]
    t_err: Float[Array, ""]  # the compensation of the summed time (Kahan)
    y: Float[Array, " n"]
    solver_state: PyTree
    condition: Float[Array, ""]  # the event function at t
    dt: Float[Array, ""]
    controller_state: PyTree
    fired: Bool[Array, ""]  # the event's sign changed over the last accepted step...
    step_start: Float[Array, ""]  # ...which ran from step_start for step_length,
    step_length: Float[Array, ""]
    dense_info: PyTree  # with this dense output (in the step's own time, from 0)
    diverged: Bool[Array, ""]  # the run diverged at the last step (see `solve_steps`)


def solve_steps(term, solver, controller, root_finder, t0, t_end, y0, dt0, controller_state, condition, n_max,
                outside=None, solver_state=None):
    """At most `n_max` adaptive steps of `solver` from (t0, y0) towards `t_end`, stopping at
    the first sign change of the event function `condition(t, y)` (located with `root_finder`
    on the step's dense output, as `diffrax.Event` does), or at the first accepted step that
    diverged: a non-finite event function or solver state (the vector field, for a
    first-same-as-last solver) at its end, or `outside(y)` true there (the state left the
    domain of the problem); or at a rejected step whose error estimate was NaN, which leaves
    the controller a NaN step size (every later step would be NaN). A step with non-finite
    values is otherwise rejected, as diffrax does, and the step size shrinks. None of these
    can happen on a run that does not diverge: the flag changes nothing there.

    `solver_state` continues a loop that stopped after `n_max` steps (its last returned solver
    state); `None` starts afresh (`initial_solver_state`).

    Returns (t, y, steps taken, event fired, reached t_end, root-finding ok, next step,
    controller state, diverged, solver state)."""
    error_order = solver.error_order(term)
    dtype = y0.dtype
    zero = jnp.zeros((), dtype)
    # One strong dtype for every time (a weakly typed step would give the implicit solvers'
    # stage equations a structure their Jacobian does not have).
    t0, t_end, dt0 = (jax.lax.convert_element_type(x, dtype) for x in (t0, t_end, dt0))
    f0 = initial_solver_state(solver, term, y0, dt0) if solver_state is None else solver_state
    dense_shape = jax.eval_shape(lambda: solver.step(term, zero, dt0, y0, None, f0, False)[2])
    init = _LoopState(
        num_steps=jnp.zeros((), int), t=t0, t_err=zero, y=y0, solver_state=f0, condition=condition(t0, y0), dt=dt0,
        controller_state=controller_state, fired=jnp.zeros((), bool), step_start=t0, step_length=zero,
        dense_info=jax.tree_util.tree_map(lambda x: jnp.zeros(x.shape, x.dtype), dense_shape),
        diverged=jnp.zeros((), bool),
    )

    def cond_fun(s):
        # The time reached is s.t − s.t_err (compensated sum): compare that with t_end.
        return (s.num_steps < n_max) & ~s.fired & ((t_end - s.t) + s.t_err > 0) & ~s.diverged

    def body_fun(s):
        # The step in its own time [0, h]; the last step of the segment ends exactly at t_end.
        left = (t_end - s.t) + s.t_err  # the summed time is s.t − s.t_err
        last = s.dt >= left
        h = jnp.where(last, left, s.dt)
        y1, y_err, dense1, f1, _ = solver.step(term, zero, h, s.y, None, s.solver_state, False)
        keep, next_t0, next_t1, _, controller_state, _ = controller.adapt_step_size(
            zero, h, s.y, y1, None, y_err, error_order, s.controller_state
        )
        # τ + h, summed with compensation (Kahan).
        inc = h - s.t_err
        t_sum = s.t + inc
        t1 = jnp.where(last, t_end, t_sum)
        t1_err = jnp.where(last, zero, (t_sum - s.t) - inc)
        keep = keep & jnp.all(jnp.isfinite(y1))
        c1 = jnp.where(keep, condition(t1, y1), s.condition)
        diverged = keep & (~jnp.isfinite(c1) | ~all_finite(f1) | (False if outside is None else outside(y1)))
        # A NaN error estimate makes the controller's next step NaN, and every later step NaN:
        # the loop could only spin to `n_max`.
        diverged = diverged | ~jnp.isfinite(next_t1 - next_t0)
        fired = keep & ~diverged & (jnp.sign(s.condition) != jnp.sign(c1))
        pick = lambda new, old: jax.tree_util.tree_map(lambda a, b: jnp.where(keep, a, b), new, old)
        t_new, t_err, y_new, f_new = pick((t1, t1_err, y1, f1), (s.t, s.t_err, s.y, s.solver_state))
        dense = jax.tree_util.tree_map(lambda a, b: jnp.where(fired, a, b), dense1, s.dense_info)
        return _LoopState(
            num_steps=s.num_steps + 1, t=t_new, t_err=t_err, y=y_new, solver_state=f_new, condition=c1,
            dt=next_t1 - next_t0, controller_state=controller_state, fired=fired, step_start=s.t, step_length=h,
            dense_info=dense, diverged=diverged,
        )

    s = jax.lax.while_loop(cond_fun, body_fun, init)
    fired, start, length = s.fired, s.step_start, s.step_length

    def locate():
        # In the step's own time u ∈ [0, h]; the event's time is τ = start + u.
        interpolation = solver.interpolation_cls(t0=zero, t1=length, **s.dense_info)
        # Members without an event get the constant 0 (a root at once), as in diffrax.
        sol = optx.root_find(
            lambda u, _: jnp.where(fired, condition(start + u, interpolation.evaluate(u)), 0.0),
            root_finder, y0=length, options=dict(lower=zero, upper=length), throw=False,
        )
        return start + sol.value, interpolation.evaluate(sol.value), sol.result == optx.RESULTS.successful

    # The root finder runs only where some member's event fired (under vmap it then runs for all).
    t_root, y_root, root_ok = jax.lax.cond(eqxi.unvmap_any(fired), locate, lambda: (s.t, s.y, jnp.asarray(True)))
    t_out = jnp.where(fired, t_root, s.t)
    y_out = jnp.where(fired, y_root, s.y)
    return t_out, y_out, s.num_steps, fired, (s.t >= t_end) & ~fired, ~fired | root_ok, s.dt.astype(dtype), \
        s.controller_state, s.diverged, s.solver_state


def initial_solver_state(solver, term, y0, dt0):
    """The solver's state at the start of a solve. For diffrax's "first same as last" Runge-Kutta
    methods (Kvaerno5; state `(first_step, f0)`) it holds the field at `y0`, evaluated here,
    with `first_step` false. Later steps take the last stage of the step before (the implicit
    methods' stage value, which is consistent with the stage equations: the field evaluated
    afresh at a state that Newton left ~1e-14 off the valley floor carries that offset times the
    stiff curvature, as large as the slow gradient on a plateau). With `first_step` true diffrax
    would evaluate the first stage of every member of a vmapped batch whenever any one member
    starts afresh, which makes a member's steps depend on its batch."""
    dtype = y0.dtype
    zero = jnp.zeros((), dtype)
    state = solver.init(term, zero, jax.lax.convert_element_type(dt0, dtype), y0, None)
    if isinstance(solver, diffrax.AbstractRungeKutta) and isinstance(state, tuple) and len(state) == 2:
        return jnp.asarray(False), term.vf(zero, y0, None)
    return state


def all_finite(tree):
    """Whether every floating-point leaf of `tree` is finite."""
    leaves = [x for x in jax.tree_util.tree_leaves(tree) if jnp.issubdtype(jnp.result_type(x), jnp.inexact)]
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves])) if leaves else jnp.asarray(True)


def with_controller_tols(solver, controller):
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
