"""The Rodas4 solver and the closed-form Hessian that the gradient flow gives it.

References: scipy's `expm` for a stiff linear system, the exact solution of a stiff forced
scalar equation, forward-mode `jax.jacfwd` of the gradient, and the hand-written numpy Hessian
of `flow_reference.py`.
"""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg as sl

import jaxmem
from jaxmem.internal import (
    JacobianODETerm,
    flow_term as _term,
    loss_and_grad,
    loss_hessian,
)

from .flow_reference import hessian as ref_hessian, initial_theta


def _stiff_linear():
    rng = np.random.default_rng(0)
    q = np.linalg.qr(rng.normal(size=(6, 6)))[0]
    a = q @ np.diag([-1e4, -1e2, -1.0, -0.1, -3.0, -50.0]) @ q.T
    return a, rng.normal(size=6)


def _solve(term, y0, t1, rtol, ts=None, solver=None, throw=True):
    return diffrax.diffeqsolve(
        term, solver or jaxmem.Rodas4(), 0.0, t1, None, jnp.asarray(y0),
        saveat=diffrax.SaveAt(ts=ts) if ts is not None else diffrax.SaveAt(t1=True),
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=rtol * 1e-2), max_steps=20_000,
        throw=throw,
    )


def test_stiff_linear_system_matches_expm_and_converges_at_order_four():
    a, y0 = _stiff_linear()
    ts = np.linspace(0.0, 2.0, 7)
    ref = np.array([sl.expm(a * t) @ y0 for t in ts])
    term = diffrax.ODETerm(lambda t, y, args: jnp.asarray(a) @ y)
    errs, steps = [], []
    for rtol in (1e-6, 1e-8):
        sol = _solve(term, y0, 2.0, rtol, ts=jnp.asarray(ts))
        errs.append(np.abs(np.asarray(sol.ys) - ref).max())
        steps.append(int(sol.stats["num_steps"]))
    assert errs[1] < 1e-8 and errs[0] < 1e-6
    # Order 4: 100× tighter tolerance costs ~100^(1/4) ≈ 3.2× the steps (measured 137 → 402).
    assert 2.0 < steps[1] / steps[0] < 5.0


def test_non_autonomous_forced_equation():
    # y' = -k (y - cos t), y(0) = 0: y = (k² cos t + k sin t - k² e^{-kt}) / (k² + 1).
    k = 1e4
    term = diffrax.ODETerm(lambda t, y, args: -k * (y - jnp.cos(t)))
    sol = _solve(term, jnp.zeros(1), 1.0, 1e-8, solver=jaxmem.Rodas4(autonomous=False))
    exact = (k * k * np.cos(1.0) + k * np.sin(1.0) - k * k * np.exp(-k)) / (k * k + 1)
    np.testing.assert_allclose(float(sol.ys[-1, 0]), exact, rtol=1e-9)
    # Treating it as autonomous drops the ∂f/∂t terms: the method loses its order and the
    # solve runs out of steps or ends visibly worse.
    bad = _solve(term, jnp.zeros(1), 1.0, 1e-8, solver=jaxmem.Rodas4(autonomous=True), throw=False)
    failed = bad.result != diffrax.RESULTS.successful
    assert failed or abs(float(bad.ys[-1, 0]) - exact) > 100 * abs(float(sol.ys[-1, 0]) - exact)


def test_supplied_jacobian_is_used_and_agrees_with_forward_mode():
    a, y0 = _stiff_linear()
    vf = lambda t, y, args: jnp.asarray(a) @ y - 0.1 * y**3
    jac = lambda t, y, args: jnp.asarray(a) - 0.3 * jnp.diag(y**2)
    sol_fwd = _solve(diffrax.ODETerm(vf), y0, 2.0, 1e-8)
    sol_jac = _solve(JacobianODETerm(vf, jac), y0, 2.0, 1e-8)
    np.testing.assert_allclose(np.asarray(sol_jac.ys), np.asarray(sol_fwd.ys), rtol=1e-10, atol=1e-14)
    # A zero Jacobian makes the method explicit: on this stiff system it needs far more steps
    # (or fails), so the supplied Jacobian is the one the solver uses.
    sol_bad = _solve(JacobianODETerm(vf, lambda t, y, args: jnp.zeros((6, 6))), y0, 2.0, 1e-8, throw=False)
    assert int(sol_bad.stats["num_steps"]) > 3 * int(sol_jac.stats["num_steps"])


_TARGETS = {
    "bump": lambda: jaxmem.plateau_target(12.0),
    "powerlaw": lambda: jaxmem.PowerLaw(0.5),
    "expsum": lambda: jaxmem.ExpSum(jnp.array([1.0, -0.5]), jnp.array([0.3, 2.0])),
}


@pytest.mark.parametrize("parameterization", ["identity", "exp", "softplus", "best"])
@pytest.mark.parametrize("target", sorted(_TARGETS))
def test_loss_hessian_is_the_jacobian_of_the_gradient(parameterization, target):
    kernel = _TARGETS[target]()
    a = jnp.array([1.0, 0.2, -0.3, 0.5, 0.7])
    w = jnp.array([0.5, 0.9, 1.7, 3.0, 2.0])
    model = jaxmem.DiagonalRNN(a, w, parameterization=parameterization, mask=jnp.array([1.0, 1, 1, 1, 0]))
    y = jnp.concatenate([model.a, model.v])
    grad = lambda y: jnp.concatenate(loss_and_grad(model, kernel, y[:5], y[5:])[1:])
    h_fwd = jax.jacfwd(grad)(y)
    h = loss_hessian(model, kernel, model.a, model.v)
    np.testing.assert_allclose(np.asarray(h), np.asarray(h_fwd), rtol=1e-10, atol=1e-13 * float(jnp.abs(h_fwd).max()))
    np.testing.assert_allclose(np.asarray(h), np.asarray(h).T, rtol=1e-14, atol=1e-18)
    # The masked mode's rows and columns (a and v) are exactly zero.
    assert not np.any(np.asarray(h)[[4, 9]]) and not np.any(np.asarray(h)[:, [4, 9]])


def test_flow_jacobian_matches_the_hand_written_reference_hessian():
    theta = initial_theta() + 0.01 * np.random.default_rng(1).normal(size=20)
    model = jaxmem.canonical_model()
    term = _term(model, jaxmem.plateau_target(16.0))
    jac = np.asarray(term.jacobian(0.0, jnp.asarray(theta), None))
    np.testing.assert_allclose(jac, -ref_hessian(theta, 16.0), rtol=1e-9, atol=1e-14)
