"""The gradient flow of training, dθ/dτ = −∇J(θ), on the exact white-noise loss.

The flow is stiff: fast modes relax in O(1) time while a plateau lasts e^{cL}. The default
solver is `Rodas4` (`_rosenbrock.py`), a linearly implicit L-stable Rosenbrock method in plain
training time τ with the exact Jacobian (the Hessian of J, in closed form) once per step: it
crosses plateaus of length 1e8 in a few hundred to a thousand steps, with no nonlinear stage
iteration. Implicit Runge-Kutta methods (Kvaerno5) also cross the plateaus, but only with a
Chord stage solver given its own tolerances (diffrax's default `VeryChord` inherits the step
controller's atol, meant for θ, as its tolerance on the stage slope, ~e^{-wL} on a plateau, and
stalls past L ≈ 36); their stage solves make a step ~6× the cost of a Rodas4 step in a vmapped
batch of 64 for ~2.6× fewer steps. Changes of time (s = log τ, arc length) do not remove the
stiffness and amplify the rounding noise of the gradient.

The vector field is `precise_grad` (`_loss.py`): the residual moments Ga − b₀ in double-double
arithmetic. In float64 they subtract nearly equal O(1) numbers on a plateau, and their ~1e-16
rounding, amplified by a step of size h in the Hessian's soft directions, capped the step size
at ~1e5 whatever τ was (the search failed past L ≈ 48).

The plateau hitting times of the flow are in `_hitting.py`.
"""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import optimistix as optx
from jaxtyping import Array, Float, Int

from ._errors import (
    check,
    check_fraction,
    check_positive,
    positive_int,
    show,
    warn_if_not_x64,
)
from ._kernels import AbstractKernel
from ._loss import loss_and_grad, loss_hessian, precise_grad
from ._models import DiagonalRNN, check_diagonal
from ._results import RESULTS, raise_if_failed
from ._rosenbrock import JacobianODETerm, Rodas4
from ._steps import all_finite

#: The step controller's default tolerances for the flow (relative, absolute; θ is O(1)).
DEFAULT_RTOL = 1e-8
DEFAULT_ATOL = 1e-10


def default_solver() -> diffrax.AbstractSolver:
    """The solver of the gradient flow: `jaxmem.Rodas4` (Rosenbrock, order 4, L-stable, with the
    exact Jacobian, the Hessian of the loss in closed form), which crosses plateaus of length
    1e8 in a few hundred steps: the flow is stiff, so explicit solvers need O(τ) steps."""
    return Rodas4()


def long_lag_solver() -> diffrax.AbstractSolver:
    """A fully implicit solver for the flow at long lags: `diffrax.Kvaerno5` (ESDIRK, order 5)
    whose stage equations are solved by Newton's method (rtol 1e-10, atol 1e-14), each
    iteration with the Hessian of the loss in closed form (the vector field's derivative).

    Past the first escape the parameters drift O(1) along a flat valley where the loss curves
    strongly across the valley: a step that moves the state by h·|∇J| meets a curvature term
    ~|∇³J|·(h|∇J|)² that is 1e5× the driving gradient at h/τ = 1e-2. A linearly implicit
    method (`Rodas4`, one Jacobian per step) cannot follow that and holds h/τ near 1e-4;
    solving the stages exactly keeps them on the valley floor. Measured on the canonical plateau
    (m = 10, δ_loss = 0.01, in a `HittingTimeSearch`): τ₀′ in 578, 772, 1,066, 1,642 steps at
    L = 40, 48, 56, 60 (Rodas4: 5,313, 15,707, and not within 20,000). Each step costs more
    than a Rodas4 step (Newton iterations), so `Rodas4` stays the default, which is faster up
    to L ≈ 40. `jaxmem plateau --solver kvaerno5` (or `--preset long`) uses it in a sweep.

    ```python
    import jax, jaxmem
    jax.config.update("jax_enable_x64", True)
    search = jaxmem.HittingTimeSearch(solver=jaxmem.long_lag_solver(), delta_loss=0.01)
    # jaxmem.hitting_times(jaxmem.canonical_model(), jaxmem.plateau_target(56.0), search=search)
    # -> tau0 ~ 5.86e11, tau0' ~ 6.18e12 in ~1,070 steps (compiling takes 10-60 s on 2 cores)
    ```
    """
    return diffrax.Kvaerno5(root_finder=optx.Newton(rtol=1e-10, atol=1e-14))


#: The flow's solvers by name (the CLI's `--solver`, `PlateauSettings.solver`).
FLOW_SOLVERS = {"rodas4": default_solver, "kvaerno5": long_lag_solver}


def flow_solver(name: str) -> diffrax.AbstractSolver:
    """The flow solver called `name`: "rodas4" (`default_solver()`) or "kvaerno5"
    (`long_lag_solver()`)."""
    if name not in FLOW_SOLVERS:
        raise ValueError(f"unknown flow solver {name!r}; expected one of {sorted(FLOW_SOLVERS)}.")
    return FLOW_SOLVERS[name]()


def split(model, y):
    """The flow's state `y = (a, v)` split into coefficients and stored rate parameters."""
    m = model.width
    return y[:m], y[m:]


def outside_domain(model, y):
    """Whether an active mode's rate at the flow's state `y` has left the domain of the model
    (w > 0): the closed-form loss assumes it, so a flow past it has diverged."""
    _, v = split(model, y)
    return jnp.any(model.active & ~(model.parameterization(v) > 0))


def flow_loss(model, target, y):
    """The loss J at the flow's state `y`."""
    a, v = split(model, y)
    return loss_and_grad(model, target, a, v)[0]


@eqx.filter_custom_jvp
def _field(y, model, target):
    a, v = split(model, y)
    ga, gv = precise_grad(model, target, a, v)
    return -jnp.concatenate([ga, gv])


@_field.def_jvp
def _field_jvp(primals, tangents):
    # The derivative in y is −Hessian·ẏ, in closed form (one Hessian for every tangent column of
    # a `jacfwd`, as an implicit Runge-Kutta method's Newton iteration takes), not forward mode
    # through the double-double sums; derivatives in the model's or the target's own
    # parameters go through the float64 gradient.
    y, model, target = primals
    ty, tmodel, ttarget = tangents
    out = _field(y, model, target)
    a, v = split(model, y)
    tout = jnp.zeros_like(out) if ty is None else -loss_hessian(model, target, a, v) @ ty
    if jax.tree_util.tree_leaves((tmodel, ttarget)):  # (None leaves are not differentiated)
        def plain(model, target):
            return -jnp.concatenate(loss_and_grad(model, target, *split(model, y))[1:])

        def fill(tree, tang):
            arrays = eqx.filter(tree, eqx.is_inexact_array)
            if tang is None:
                return arrays, jax.tree_util.tree_map(jnp.zeros_like, arrays)
            return arrays, jax.tree_util.tree_map(lambda t, p: None if p is None else (jnp.zeros_like(p) if t is None else t),
                                                  tang, arrays, is_leaf=lambda x: x is None)

        (dm, tm), (dk, tk) = fill(model, tmodel), fill(target, ttarget)
        _, extra = jax.jvp(lambda m, k: plain(eqx.combine(m, model), eqx.combine(k, target)), (dm, dk), (tm, tk))
        tout = tout + extra
    return out, tout


def _vector_field(model, target):
    def field(t, y, args):
        return _field(y, model, target)

    return field


def flow_term(model, target, solver=None):
    """The flow's vector field as a diffrax term; for `Rodas4` (the default) with its
    Jacobian, −Hessian of J, in closed form. Other solvers get a plain `ODETerm` (diffrax's
    implicit Runge-Kutta methods take their own Jacobians and reject a term with extra
    fields)."""
    if solver is not None and not isinstance(solver, Rodas4):
        return diffrax.ODETerm(_vector_field(model, target))

    def jacobian(t, y, args):
        a, v = split(model, y)
        return -loss_hessian(model, target, a, v)

    return JacobianODETerm(_vector_field(model, target), jacobian)


class FlowResult(eqx.Module):
    """A gradient-flow trajectory: times τ, losses J(τ), coefficients a(τ), rates w(τ), the
    solver's statistics and its outcome `result` (a `jaxmem.RESULTS`)."""

    ts: Float[Array, " n"]
    losses: Float[Array, " n"]
    a: Float[Array, "n m"]
    w: Float[Array, "n m"]
    num_steps: Int[Array, ""]
    num_rejected: Int[Array, ""]
    result: RESULTS


def gradient_flow(
    model: DiagonalRNN,
    target: AbstractKernel,
    t1,
    *,
    saveat=None,
    solver=None,
    rtol: float = DEFAULT_RTOL,
    atol: float = DEFAULT_ATOL,
    max_steps: int = 100_000,
    throw: bool = True,
) -> FlowResult:
    r"""Solve the gradient flow $d\theta/d\tau = -\nabla J(\theta)$ on the exact white-noise loss.

    All of $a$ and the stored rate parameters $v$ (through the model's parameterisation) are
    trained; masked modes stay still.

    **Arguments:**

    - `model`: the initial `DiagonalRNN`; `target`: a kernel with Laplace moments.
    - `t1`: final training time τ > 0.
    - `saveat`: times τ to save at (default: 0 and 241 log-spaced times from 1e-6·`t1` to `t1`).
    - `solver`, `rtol`, `atol`, `max_steps`: the Diffrax solve (default `default_solver()`).
    - `throw`: raise a `RuntimeError` when the solve fails (e.g. runs out of steps); with
      `throw=False` the failure is returned in `result` and the trajectory is NaN past it.
      A trajectory with non-finite values, or whose rates leave their domain (w ≤ 0 with the
      identity parameterisation), is `RESULTS.diverged`.

    **Returns:** a `FlowResult` with the trajectory, solver statistics and `result`.

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
    model = check_diagonal(model, "gradient_flow")
    t1 = jnp.asarray(check_positive(t1, "t1"), dtype=model.a.dtype)
    rtol, atol = check_fraction(rtol, "rtol"), check_positive(atol, "atol")
    max_steps = positive_int(max_steps, "max_steps")
    solver = default_solver() if solver is None else solver
    if not isinstance(solver, diffrax.AbstractAdaptiveSolver):
        raise TypeError(f"solver must be an adaptive diffrax solver; got {solver!r}.")
    if saveat is None:
        saveat = jnp.concatenate([jnp.zeros(1), jnp.geomspace(1e-6, 1.0, 241) * t1])
    saveat = jnp.asarray(saveat, dtype=model.a.dtype)
    if saveat.ndim != 1 or saveat.shape[0] < 1:
        raise ValueError(f"saveat must be a 1-D array of at least one time; got shape {saveat.shape}.")
    saveat = check(
        saveat, ~jnp.isfinite(saveat) | (saveat < 0) | (saveat > t1) | (jnp.diff(saveat, prepend=saveat[0]) < 0),
        f"saveat must be finite, non-decreasing times in [0, t1]; got {show(saveat)} with t1 = {show(t1)}.",
    )
    out = _gradient_flow(model, target, t1, saveat, solver, rtol, atol, max_steps)
    raise_if_failed(out.result, throw)
    return out


@eqx.filter_jit
def _gradient_flow(model, target, t1, saveat, solver, rtol, atol, max_steps):
    y0 = jnp.concatenate([model.a, model.v])
    sol = diffrax.diffeqsolve(
        flow_term(model, target, solver), solver, 0.0, t1, 1e-3, y0,
        saveat=diffrax.SaveAt(ts=saveat, solver_state=True),
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        max_steps=max_steps, throw=False,
    )
    ys = sol.ys
    losses = jax.vmap(lambda y: flow_loss(model, target, y))(ys)
    a, v = ys[:, : model.width], ys[:, model.width :]
    # Diverged: a saved point that was reached (diffrax fills the others with inf) with
    # non-finite values or rates outside their domain, or a non-finite solver state at the end
    # (the vector field at the last accepted step, for Rodas4). Diffrax reports the first as a
    # success, and the others as a failure to step on until the step budget runs out.
    reached = jnp.isfinite(sol.ts)
    bad = ~jnp.all(jnp.isfinite(ys), axis=1) | ~jnp.isfinite(losses) | jax.vmap(lambda y: outside_domain(model, y))(ys)
    diverged = jnp.any(reached & bad) | ~all_finite(sol.solver_state)
    return FlowResult(
        ts=sol.ts, losses=losses, a=a, w=model.parameterization(v),
        num_steps=sol.stats["num_steps"], num_rejected=sol.stats["num_rejected_steps"],
        result=RESULTS.where(
            diverged,
            RESULTS.diverged,
            RESULTS.where(
                sol.result == diffrax.RESULTS.successful,
                RESULTS.successful,
                RESULTS.where(sol.result == diffrax.RESULTS.max_steps_reached, RESULTS.max_steps_reached,
                              RESULTS.solver_failed),
            ),
        ),
    )
