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


@pytest.mark.slow
def test_long_lags_agree_between_tolerances_and_follow_the_exponential_law():
    # `long_lag_solver` (Kvaerno5 + Newton), one compilation for both tolerances (traced rtol,
    # atol) and every lag. τ₀′ (δ_loss = 0.01) is found up to L = 56; at L = 60 two rates
    # collide after the escape and the search runs out of steps (only τ₀ is checked there).
    model = jaxmem.canonical_model()
    lags = np.array([32.0, 40.0, 48.0, 56.0, 60.0])
    from jaxmem.internal import run_search

    @jax.jit
    def run(lag, rtol, atol):
        search = jaxmem.HittingTimeSearch(solver=jaxmem.long_lag_solver(), delta_loss=0.01, max_steps=4000,
                                          stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol))
        return run_search(search, model, jaxmem.plateau_target(lag))

    # (At rtol 1e-9 the Newton stage solves stall at L = 56 as they do at L = 60 by default.)
    tols = ((1e-8, 1e-10), (3e-9, 3e-11))
    out = [[run(lag, *tol) for lag in lags] for tol in tols]
    tau0 = np.array([[float(h.tau_param) for h in hs] for hs in out])
    tau0p = np.array([[float(h.tau_loss) for h in hs] for hs in out])
    steps = np.array([[int(h.steps) for h in hs] for hs in out])
    assert np.all(np.isfinite(tau0))
    np.testing.assert_allclose(tau0[0], tau0[1], rtol=1e-5)
    assert np.all(np.isfinite(tau0p[:, :4]))
    np.testing.assert_allclose(tau0p[0, :4], tau0p[1, :4], rtol=1e-5)
    # The steps to τ₀′ grow at most linearly in L (measured at the default tolerance: 477, 578,
    # 772, 1,050 at L = 32, 40, 48, 56).
    assert np.all(steps[0, :4] < 25 * lags[:4])
    # log τ grows about linearly in L, with a slope above the theory's w_l⁰ = 0.5 that steepens
    # slowly (τ₀, per 8 lags: 0.56, 0.60, 0.68; least-squares residuals up to 0.28).
    for y, ls in ((np.log(tau0[1, :4]), lags[:4]), (np.log(tau0p[1, :4]), lags[:4])):
        local = np.diff(y) / np.diff(ls)
        assert np.all((local > 0.5) & (local < 0.75)) and np.all(np.diff(local) > -0.03)
        slope, intercept = np.polyfit(ls, y, 1)
        assert np.max(np.abs(y - (intercept + slope * ls))) < 0.35
