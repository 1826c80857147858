"""The reach of the hitting-time search in the lag L: the gradient without cancellation, and the
plateau's exponential law continued to long lags.

References: exact rational arithmetic (`fractions.Fraction`) for the residual moments, scipy's
quad for a bump's moments, central differences of the float64 loss for the gradient, and the
search itself at a second, ten times tighter tolerance for the hitting times.
"""

from fractions import Fraction

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
import pytest
from scipy.integrate import quad

import jaxmem
from jaxmem._loss import precise_grad, residual_moments


def _exact_exp_residual(a, w, beta, lam, power):
    """Σ_i a_i/(w_i + w_j)^p − Σ_k β_k/(λ_k + w_j)^p in exact rational arithmetic."""
    out = []
    for wj in w:
        s = sum(Fraction(ai) / (Fraction(wi) + Fraction(wj)) ** power for ai, wi in zip(a, w))
        s -= sum(Fraction(bk) / (Fraction(lk) + Fraction(wj)) ** power for bk, lk in zip(beta, lam))
        out.append(float(s))
    return np.array(out)


@pytest.mark.parametrize("spread", [1e-9, 1e-3, 1.0])
def test_residual_moments_are_exact_for_exponential_targets(spread):
    # A model that fits e^{-t/2} up to `spread`: the float64 form Ga − b0 keeps only ~1e-16
    # absolute, the double-double sum the residual to the last bit.
    rng = np.random.default_rng(3)
    a = np.concatenate([[1.0], spread * rng.normal(size=7)])
    w = np.concatenate([[0.5], rng.uniform(0.3, 4.0, 7)])
    beta, lam = np.array([1.0, -0.25]), np.array([0.5, 1.7])
    target = jaxmem.ExpSum(beta[:1], lam[:1]) + (-0.25) * jaxmem.ExpSum(np.ones(1), lam[1:])
    r0, r1 = jax.jit(residual_moments)(jnp.asarray(a), jnp.asarray(w), target)
    for got, power in ((r0, 1), (r1, 2)):
        exact = _exact_exp_residual(a, w, beta, lam, power)
        np.testing.assert_allclose(np.asarray(got), exact, rtol=1e-15, atol=0)
    naive = (1 / (w[:, None] + w[None, :])) @ a - (1 / (w + 0.5) - 0.25 / (w + 1.7))
    if spread == 1e-9:  # the cancellation the double-double sum removes
        assert np.max(np.abs(naive - _exact_exp_residual(a, w, beta, lam, 1))) > 1e-17


def test_residual_moments_with_a_bump():
    lag = 48.0
    a = np.array([1.0, 1e-10, -2e-10])
    w = np.array([0.5, 0.9, 2.0])
    target = jaxmem.plateau_target(lag)
    r0, r1 = residual_moments(jnp.asarray(a), jnp.asarray(w), target)
    bump = lambda t: np.exp(-((t - lag) ** 2) / (2 * 0.25))
    for got, power in ((r0, 1), (r1, 2)):
        moments = np.array([quad(lambda t: t ** (power - 1) * np.exp(-wj * t) * bump(t), lag - 12, lag + 12,
                                 epsabs=0, epsrel=1e-12)[0] for wj in w])
        expected = _exact_exp_residual(a, w, [1.0], [0.5], power) - moments
        np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-9)


def test_precise_grad_matches_finite_differences():
    model = jaxmem.DiagonalRNN(jnp.array([0.7, 0.4, -0.2]), jnp.array([0.45, 0.8, 1.9]))
    target = jaxmem.plateau_target(6.0)
    ga, gv = precise_grad(model, target, model.a, model.v)
    exact = jax.jit(lambda a, w: jaxmem.white_noise_loss(jaxmem.DiagonalRNN(a, w), target))
    loss = lambda a, w: float(exact(a, w))
    eps = 1e-6
    fd = []
    for which in range(2):
        for i in range(3):
            e = jnp.zeros(3).at[i].set(eps)
            p = [model.a, model.v]
            hi = [x + e if k == which else x for k, x in enumerate(p)]
            lo = [x - e if k == which else x for k, x in enumerate(p)]
            fd.append((loss(*hi) - loss(*lo)) / (2 * eps))
    np.testing.assert_allclose(np.concatenate([ga, gv]), fd, atol=1e-8)


def test_steps_at_a_late_time_are_taken_in_their_own_time():
    # At τ = 2^53 float64 spaces the numbers 2 apart; steps of ~0.1 in τ taken as
    # [τ, τ + h] would be rounded to 0 or 2. Each step runs in its own time [0, h] (the field
    # does not depend on time), so the solution is the one from τ = 0: y' = −y over 8 units.
    from jaxmem.internal import solve_steps

    term = diffrax.ODETerm(lambda t, y, args: -y)
    solver = diffrax.Tsit5()
    controller = diffrax.PIDController(rtol=1e-10, atol=1e-12)
    y0 = jnp.array([1.0, 2.0])

    def run(t0):
        t0 = jnp.asarray(t0, float)
        t_end = t0 + 8.0
        _, cs = controller.init(term, t0, t_end, y0, None, None, solver.func, solver.error_order(term))
        t, y, n, fired, reached, ok, *_ = solve_steps(term, solver, controller, optx.Bisection(rtol=1e-10, atol=1e-9),
                                                      t0, t_end, y0, jnp.asarray(0.1), cs,
                                                      lambda t, y: -jnp.ones(()), 10_000)
        return t, y, n, reached

    t, y, n, reached = run(2.0**53)
    assert bool(reached) and float(t) == 2.0**53 + 8.0 and int(n) > 20
    np.testing.assert_allclose(np.asarray(y), np.exp(-8.0) * np.asarray(y0), rtol=1e-8)
    _, y_early, n_early, _ = run(0.0)
    np.testing.assert_allclose(np.asarray(y), np.asarray(y_early), rtol=1e-13)
    assert int(n) == int(n_early)


@pytest.mark.slow
def test_long_lags_agree_between_tolerances_and_follow_the_exponential_law():
    # `long_lag_solver` (Kvaerno5 + Newton), one compilation for both tolerances (traced rtol,
    # atol) and every lag: τ₀ and τ₀′ (δ_loss = 0.01) to L = 60.
    model = jaxmem.canonical_model()
    lags = np.array([32.0, 40.0, 48.0, 56.0, 60.0])
    from jaxmem.internal import run_search

    @jax.jit
    def run(lag, rtol, atol):
        search = jaxmem.HittingTimeSearch(solver=jaxmem.long_lag_solver(), delta_loss=0.01, max_steps=4000,
                                          stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol))
        return run_search(search, model, jaxmem.plateau_target(lag))

    tols = ((1e-8, 1e-10), (3e-9, 3e-11))
    out = [[run(lag, *tol) for lag in lags] for tol in tols]
    tau0 = np.array([[float(h.tau_param) for h in hs] for hs in out])
    tau0p = np.array([[float(h.tau_loss) for h in hs] for hs in out])
    steps = np.array([[int(h.steps) for h in hs] for hs in out])
    assert all(h.result == jaxmem.RESULTS.successful for hs in out for h in hs)
    assert np.all(np.isfinite(tau0)) and np.all(np.isfinite(tau0p))
    # (Measured: the two tolerances agree to ~1e-8.)
    np.testing.assert_allclose(tau0[0], tau0[1], rtol=1e-6)
    np.testing.assert_allclose(tau0p[0], tau0p[1], rtol=1e-6)
    # The steps grow about linearly in L (measured at the default tolerance: 477, 578, 772,
    # 1,042, 1,642 at L = 32, 40, 48, 56, 60).
    assert np.all(steps[0] < 30 * lags)
    # log τ₀′ grows about linearly in L, with a slope above the theory's w_l⁰ = 0.5 that
    # steepens slowly (per lag: 0.55, 0.60, 0.62, then 0.74 from 56 to 60).
    y = np.log(tau0p[1])
    local = np.diff(y) / np.diff(lags)
    assert np.all((local > 0.5) & (local < 0.8)) and np.all(np.diff(local) > -0.03)
    slope, intercept = np.polyfit(lags, y, 1)
    assert np.max(np.abs(y - (intercept + slope * lags))) < 0.6
    # τ₀ (parameters moved by 0.05) comes before τ₀′ and closes in on it: up to L ≈ 56 the
    # parameters drift by 0.05 well before the escape (τ₀′/τ₀ ≈ 10), past it only as the
    # escape begins (τ₀′/τ₀ ≈ 4 at L = 60), so log τ₀ steepens there (0.96 per lag, 56 to 60).
    y0 = np.log(tau0[1])
    assert np.all(np.diff(y0) / np.diff(lags) > 0.5)
    ratio = tau0p[1] / tau0[1]
    assert np.all(ratio > 1) and np.all(np.diff(ratio[2:]) < 0)
