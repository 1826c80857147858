"""Memory functions, kernel estimates, decay classes and the perturbation test, against
independent references (scipy expm and quad, numpy convolutions, jaxmem.white_noise_loss)."""

import csv

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.linalg
from numpy.polynomial.legendre import leggauss
from scipy.signal import fftconvolve

import jaxmem
from jaxmem.internal import (
    exp_basis_outputs,
    perturbed_error_jit,
)


def exact_outputs(rho, xs, dt):
    """y(t_j) = ∫_0^{t_j} ρ(s) x̃(t_j - s) ds with x̃ piecewise linear, nothing before 0 (numpy):
    per interval, Gauss-Legendre on ρ times the two hat functions."""
    n = xs.shape[-1]
    x, w = leggauss(20)
    u, w = (x + 1) / 2, w / 2
    s = (np.arange(n)[:, None] + u) * dt
    A = (rho(s) * (1 - u) * w).sum(1) * dt
    B = (rho(s) * u * w).sum(1) * dt
    h = A.copy()
    h[1:] += B[:-1]
    return fftconvolve(xs, h[None], axes=1)[:, :n] - A[None, :] * xs[:, :1]


def power(t, omega=1.0):
    return (1.0 + t) ** -(1.0 + omega)


def best_fixed_rate_error(rho, w):
    """min_a ||ρ - Σ a_i e^{-w_i t}||_{L²} / ||ρ||, numpy: weighted least squares on 400 geometric
    Gauss-Legendre panels of 64 nodes over [0, 1e4] (the tail beyond is below 1e-12)."""
    x, wx = leggauss(64)
    edges = np.r_[0.0, np.geomspace(1e-4, 1e4, 400)]
    lo, hi = edges[:-1, None], edges[1:, None]
    t = (lo + (hi - lo) * (x + 1) / 2).ravel()
    q = np.sqrt(((hi - lo) * wx / 2).ravel())
    A = q[:, None] * np.exp(-np.outer(t, w))
    y = q * rho(t)
    a = np.linalg.lstsq(A, y, rcond=None)[0]
    return np.linalg.norm(y - A @ a) / np.linalg.norm(y)


# -- memory functions ---------------------------------------------------------------------------


def test_memory_function_of_linear_models_is_the_kernel_by_expm():
    rng = np.random.default_rng(0)
    ts = np.linspace(0.0, 6.0, 13)
    W = -1.5 * np.eye(4) + 0.4 * rng.standard_normal((4, 4))
    U, c = rng.standard_normal((4, 1)), rng.standard_normal(4)
    ref = np.array([abs(c @ scipy.linalg.expm(W * t) @ U[:, 0]) for t in ts])
    got = np.asarray(jaxmem.memory_function(jaxmem.LinearRNN(W, U, c), ts))
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-10 * ref.max())
    a, w = np.array([1.0, -2.0, 0.5]), np.array([0.3, 1.0, 4.0])
    ref = np.array([abs(a @ scipy.linalg.expm(-np.diag(w) * t) @ np.ones(3)) for t in ts])
    got = np.asarray(jaxmem.memory_function(jaxmem.DiagonalRNN(a, w), ts))
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-10 * ref.max())
    np.testing.assert_allclose(np.asarray(jaxmem.memory_function(jaxmem.PowerLaw(1.0), ts)), power(ts), rtol=1e-14)


def test_step_memory_function_matches_the_linearisation():
    rng = np.random.default_rng(1)
    m = 3
    W = -np.eye(m) + 0.3 * rng.standard_normal((m, m))
    U, c = rng.standard_normal((m, 1)), rng.standard_normal(m)
    dt = 0.01
    ts = np.arange(0, 401) * dt
    ref = np.array([abs(c @ scipy.linalg.expm(W * t) @ U[:, 0]) for t in ts])
    # A linear model through its simulation (the step definition) against the exact kernel.
    lin = np.asarray(jaxmem.memory_function(jaxmem.LinearRNN(W, U, c), ts, method="step"))
    np.testing.assert_allclose(lin[1:-1], ref[1:-1], rtol=0, atol=1e-4 * ref.max())
    # tanh with small steps: the linearisation at h = 0 (b = 0).
    model = jaxmem.ContinuousRNN(W, U, np.zeros(m), c, activation="tanh")
    got = np.asarray(jaxmem.memory_function(model, ts, amplitudes=[1e-3, -1e-3]))
    np.testing.assert_allclose(got[1:-1], ref[1:-1], rtol=0, atol=1e-4 * ref.max())
    # Large steps saturate tanh: the memory function differs from the linearisation.
    big = np.asarray(jaxmem.memory_function(model, ts, amplitudes=[3.0]))
    assert np.max(np.abs(big - ref)) > 1e-2 * ref.max()


# -- kernel estimates ---------------------------------------------------------------------------


def test_basis_outputs_are_the_exact_convolution():
    rng = np.random.default_rng(2)
    dt = 0.05
    xs = rng.standard_normal((3, 300)) / np.sqrt(dt)
    for lam in (0.01, 0.7, 30.0):
        ref = exact_outputs(lambda t, lam=lam: np.exp(-lam * t), xs, dt)
        got = exp_basis_outputs(xs, dt, [lam])[..., 0]
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-11 * np.abs(ref).max())


@pytest.mark.parametrize("inputs", ["white", "ou"])
def test_estimate_kernel_recovers_a_power_law(inputs):
    rng = np.random.default_rng(3)
    dt, n, P = 0.05, 1200, 16
    if inputs == "white":
        xs = rng.standard_normal((P, n)) / np.sqrt(dt)
    else:  # stationary OU, rate 1, exact AR(1)
        phi = np.exp(-dt)
        xs = np.zeros((P, n))
        xs[:, 0] = rng.standard_normal(P) / np.sqrt(2)
        for j in range(1, n):
            xs[:, j] = phi * xs[:, j - 1] + np.sqrt((1 - phi**2) / 2) * rng.standard_normal(P)
    ys = exact_outputs(power, xs, dt)
    ys = ys + 0.01 * ys.std() * rng.standard_normal(ys.shape)
    ts = np.arange(n) * dt
    est = jaxmem.estimate_kernel(ts, xs, ys, n_boot=50)
    tq = np.linspace(0.0, 15.0, 1501)

    def err(k):
        e = np.asarray(k(jnp.asarray(tq))) - power(tq)
        return np.sqrt(np.trapezoid(e**2, tq) / np.trapezoid(power(tq) ** 2, tq))

    assert err(est) < 0.01
    assert est.window > 5.0 and est.ts.shape == est.rho.shape == est.lo.shape
    inside = (np.asarray(est.lo) - 1e-3 <= power(np.asarray(est.ts))) & (power(np.asarray(est.ts)) <= np.asarray(est.hi) + 1e-3)
    assert inside.mean() > 0.9
    if inputs == "white":  # plain grid least squares (rectangle rule) is far worse
        assert err(jaxmem.least_squares_kernel(ts, xs, ys, horizon=15.0, rule="rectangle")) > 5 * err(est)


def test_estimate_kernel_bad_input_names_the_value():
    dt = 0.05
    ts = np.arange(100) * dt
    xs = np.ones((4, 100))
    with pytest.raises(ValueError, match="same length"):
        jaxmem.estimate_kernel(ts, [np.ones(100), np.ones(90)], [np.ones(100), np.ones(90)])
    with pytest.raises(ValueError, match="uniform grid"):
        jaxmem.estimate_kernel(np.r_[ts[:-1], ts[-1] + 0.3], xs, xs)
    bad = xs.copy()
    bad[2, 7] = np.nan
    with pytest.raises(ValueError, match=r"ys\[2, 7\] = nan"):
        jaxmem.estimate_kernel(ts, xs, bad)
    with pytest.raises(ValueError, match="at least 2 paths"):
        jaxmem.estimate_kernel(ts, xs[:1], xs[:1])
    with pytest.raises(ValueError, match="horizon must lie"):
        jaxmem.estimate_kernel(ts, xs, xs, horizon=50.0)
    with pytest.raises(ValueError, match="too few for the horizon 4"):
        jaxmem.least_squares_kernel(ts, xs[:1], xs[:1], horizon=4.0)
    with pytest.raises(ValueError, match=r"shape \(paths, 100\)"):
        jaxmem.estimate_kernel(ts, xs[:, :50], xs[:, :50])


# -- decay class --------------------------------------------------------------------------------


@pytest.mark.parametrize("omega", [0.3, 1.0, 2.5])
def test_decay_class_of_power_laws(omega):
    d = jaxmem.decay_class(jaxmem.PowerLaw(omega, 2.0))
    assert d.kind == "polynomial"
    assert abs(d.exponent - (1 + omega)) < 1e-6
    assert d.exponent_ci[0] - 1e-6 <= 1 + omega <= d.exponent_ci[1] + 1e-6


@pytest.mark.parametrize("kernel, rate", [
    (jaxmem.Damped(jaxmem.PowerLaw(1.0), 0.7), 0.7),
    (jaxmem.ExpSum([1.0, 0.5], [2.0, 0.3]), 0.3),
    (jaxmem.DiagonalRNN(jnp.array([1.0, -0.4]), jnp.array([0.8, 1.5])), 0.8),
])
def test_decay_class_of_exponential_memory(kernel, rate):
    d = jaxmem.decay_class(kernel)
    assert d.kind == "exponential"
    assert abs(d.rate - rate) < 0.01 * rate


def test_decay_class_of_an_estimate():
    rng = np.random.default_rng(4)
    dt, n, P = 0.05, 1200, 16
    xs = rng.standard_normal((P, n)) / np.sqrt(dt)
    rho = lambda t: np.exp(-0.5 * t)  # noqa: E731
    ys = exact_outputs(rho, xs, dt) + 1e-3 * rng.standard_normal((P, n))
    d = jaxmem.decay_class(jaxmem.estimate_kernel(np.arange(n) * dt, xs, ys, n_boot=40))
    assert d.kind == "exponential" and d.interval == "bootstrap"
    assert d.rate_ci[0] < 0.5 < d.rate_ci[1] and d.agreement > 0.9


# -- the perturbation test ----------------------------------------------------------------------


def test_perturbation_test_is_exact_and_monotone():
    kernels = [jaxmem.Damped(jaxmem.PowerLaw(1.0), 1.0), jaxmem.PowerLaw(1.0)]
    numpy_kernels = [lambda t: np.exp(-t) * power(t), power]
    betas = [0.0, 1e-3, 1e-2, 0.1, 0.3]
    s = jaxmem.perturbation_test(kernels, [2, 3], betas, n_samples=4, n_starts=2, min_rate=0.5)
    errors = np.asarray(s.errors)
    assert errors.shape == (2, 2, 5)
    # Monotone in β (worst of the same directions, scaled), inf allowed at the end.
    assert np.all(np.diff(errors, axis=-1) >= -1e-12)
    for i, k in enumerate(kernels):
        for j, m in enumerate([2, 3]):
            w = np.asarray(s.rates)[i, j, :m]
            a = np.asarray(s.coeffs)[i, j, :m]
            # β = 0: the fit is the best one at its rates (numpy least squares).
            np.testing.assert_allclose(errors[i, j, 0], best_fixed_rate_error(numpy_kernels[i], w), rtol=1e-6)
            np.testing.assert_allclose(errors[i, j, 0], np.asarray(s.fit_errors)[i, j], rtol=1e-6)
            # β = 0.01, sample 0 (every coefficient away from zero, every rate down), against the
            # white-noise loss of the perturbed model and scipy quad.
            a1, w1 = a + 0.01 * np.where(a >= 0, 1.0, -1.0), w - 0.01
            got = np.asarray(s.sample_errors)[i, j, 2, 0]
            J = jaxmem.white_noise_loss(jaxmem.DiagonalRNN(a1, w1), k)
            # (its closed form cancels where the fit's coefficients do: ~1e-5 at m = 3, rates >= 0.5)
            np.testing.assert_allclose(got, np.sqrt(J / k.sq_norm()), rtol=1e-4)
            rho = numpy_kernels[i]
            f = lambda t, rho=rho, a1=a1, w1=w1: (rho(t) - np.sum(a1 * np.exp(-w1 * t))) ** 2  # noqa: E731
            pieces = [(0, 1), (1, 5), (5, 30), (30, 200), (200, np.inf)]
            Jq = sum(scipy.integrate.quad(f, lo, hi, limit=200, epsabs=0, epsrel=1e-12)[0] for lo, hi in pieces)
            np.testing.assert_allclose(got, np.sqrt(Jq / float(k.sq_norm())), rtol=1e-7)
    # A rate pushed below 0 is an infinite error.
    out = perturbed_error_jit(kernels[1], jnp.array([1.0]), jnp.array([0.2]), jnp.ones(1, bool), 0.3,
                              jnp.array([[1.0], [-1.0]]))[0]
    assert np.isinf(out)


def test_stability_cli(tmp_path):
    from jaxmem._cli import main

    out = tmp_path / "run"
    rc = main(["stability", "--widths", "2", "3", "--n-radii", "3", "--samples", "2", "--starts", "2",
               "--out", str(out), "--no-progress"])
    assert rc == 0
    with open(out / "stability.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["kernel", "parameter", "width", "beta", "error", "status"]
    assert len(rows) == 2 * 2 * 4 and {r["kernel"] for r in rows} == {"exp", "powerlaw"}
    assert (out / "stability.png").stat().st_size > 0 and (out / "stability.json").exists()
    assert main(["stability", "--widths", "2", "3", "--n-radii", "3", "--samples", "2", "--starts", "2",
                 "--out", str(out), "--no-progress"]) == 0  # finished: redrawn, not recomputed
    assert main(["stability", "--widths", "0", "--out", str(tmp_path / "bad")]) == 2
