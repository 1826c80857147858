"""Data: input processes (moments, against their definitions), exact linear outputs (against
scipy quadrature of the defining integral, and against the Diffrax solve of a diagonal RNN),
the Lorenz-96 target (against scipy's solve_ivp), the registry of named targets, and errors."""

import math

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
import scipy.special as sps
from scipy.integrate import quad, solve_ivp

import jaxmem
from jaxmem._data import lag_weights
from jaxmem._experiments.approx import kernel_fn
from jaxmem._experiments.targets import (
    TARGETS,
    describe_target,
    make_target,
    target_params,
)

DT, N = 0.1, 200
TS = np.arange(N) * DT
XS = np.asarray(jaxmem.white_noise(jr.key(0), 1, N, DT))[0]
GRID = np.linspace(0.0, 7.33, 57)  # knots that do not fall on the sample grid

# Each kernel with an independent NumPy/SciPy formula of its values.
KERNELS = {
    "expsum": (jaxmem.ExpSum([1.0, -0.5], [0.5, 2.0]), lambda s: np.exp(-0.5 * s) - 0.5 * np.exp(-2.0 * s)),
    "powerlaw": (jaxmem.PowerLaw(0.5), lambda s: (1 + s) ** -1.5),
    "bump": (jaxmem.GaussianBump(10.0, 0.5), lambda s: np.exp(-((s - 10.0) ** 2) / 0.5)),
    "airy": (jaxmem.Airy(6.0, 1.0), lambda s: sps.airy(s - 6.0)[0]),
    "damped": (jaxmem.Damped(jaxmem.PowerLaw(1.0), 0.5), lambda s: np.exp(-0.5 * s) / (1 + s) ** 2),
    "damped_expsum": (jaxmem.Damped(jaxmem.ExpSum([2.0], [0.3]), 0.2), lambda s: 2.0 * np.exp(-0.5 * s)),
    "plateau": (jaxmem.plateau_target(12.0), lambda s: np.exp(-s / 2) + np.exp(-((s - 12.0) ** 2) / 0.5)),
    "scaled_sum": (0.5 * jaxmem.PowerLaw(1.0) - jaxmem.ExpSum([1.0], [1.0]),
                   lambda s: 0.5 * (1 + s) ** -2.0 - np.exp(-s)),
    "grid": (jaxmem.GridKernel(GRID, np.cos(GRID)), lambda s: np.interp(s, GRID, np.cos(GRID), left=0, right=0)),
}


def _reference(rho, j, ts=TS, xs=XS, dt=DT, knots=()):
    """y(t_j) = ∫_0^{t_j} ρ(s) x̃(t_j − s) ds by adaptive quadrature, one lag interval at a time
    (x̃ has kinks at the samples), splitting at the kernel's own knots."""
    f = lambda s: rho(s) * np.interp(ts[j] - s, ts, xs)  # noqa: E731
    total = 0.0
    for i in range(j):
        inside = [p for p in knots if i * dt < p < (i + 1) * dt]
        total += quad(f, i * dt, (i + 1) * dt, epsabs=1e-14, epsrel=1e-13, limit=200, points=inside or None)[0]
    return total


@pytest.mark.parametrize("name", KERNELS)
def test_linear_outputs_match_quadrature(name):
    kernel, rho = KERNELS[name]
    ys = np.asarray(jaxmem.linear_outputs(kernel, XS, DT))
    assert ys.shape == (N,) and ys[0] == 0.0
    scale = np.abs(ys).max()
    for j in (1, 2, 7, 120, N - 1):
        ref = _reference(rho, j, knots=GRID if name == "grid" else ())
        assert abs(ys[j] - ref) < 1e-11 * scale, (name, j, ys[j], ref)  # measured <= 1.2e-14


def test_linear_outputs_of_an_exponential_sum_match_the_rnn_ode():
    a, w = np.array([1.0, -0.7, 0.3]), np.array([0.4, 1.5, 6.0])
    xs = np.asarray(jaxmem.ornstein_uhlenbeck(jr.key(3), 1, 300, 0.05, rate=3.0))[0]
    ts = np.arange(300) * 0.05
    ys = jaxmem.linear_outputs(jaxmem.ExpSum(a, w), xs, 0.05)
    ode = jaxmem.DiagonalRNN(a, w)(ts, xs, rtol=1e-11, atol=1e-13)
    assert float(jnp.max(jnp.abs(ys - ode))) < 1e-9 * float(jnp.max(jnp.abs(ode)))


def test_fft_convolution_matches_a_direct_sum():
    # The FFT against np.convolve of the same filter (a direct sum), on a long, slowly
    # decaying kernel: the convolution adds no error worth the name.
    n, dt = 3000, 0.1
    kernel = jaxmem.PowerLaw(0.1)
    xs = np.asarray(jaxmem.white_noise(jr.key(1), 2, n, dt))
    ys = np.asarray(jaxmem.linear_outputs(kernel, xs, dt))
    a, b = (np.asarray(v) for v in lag_weights(kernel, n, dt))
    g = a + np.concatenate([[0.0], b[:-1]])
    for p in range(2):
        direct = np.convolve(xs[p], g)[:n] - a * xs[p, 0]
        assert np.abs(ys[p] - direct).max() < 1e-12 * np.abs(direct).max()


def test_quadrature_rule_is_converged():
    # The 16-point rule per lag interval against a 48-point one, Δ = 0.1 and 0.5 (measured ~2e-15).
    for kernel, _ in (KERNELS["powerlaw"], KERNELS["bump"], KERNELS["airy"], KERNELS["damped"]):
        for dt in (0.1, 0.5):
            a, b = lag_weights(kernel, 400, dt)
            a2, b2 = lag_weights(kernel, 400, dt, order=48)
            top = float(jnp.max(jnp.abs(a2)))
            assert float(jnp.max(jnp.abs(a - a2))) < 1e-12 * top and float(jnp.max(jnp.abs(b - b2))) < 1e-12 * top


def test_linear_outputs_batches_and_jits():
    kernel = jaxmem.ExpSum([1.0], [0.5])
    xs = np.asarray(jaxmem.white_noise(jr.key(2), 6, 50, DT)).reshape(2, 3, 50)
    ys = jaxmem.linear_outputs(kernel, xs, DT)
    assert ys.shape == (2, 3, 50)
    np.testing.assert_allclose(ys[1, 2], jaxmem.linear_outputs(kernel, xs[1, 2], DT), rtol=0, atol=1e-13)
    jitted = jax.jit(lambda x, d: jaxmem.linear_outputs(kernel, x, d))(xs, DT)  # dt traced
    np.testing.assert_allclose(jitted, ys, rtol=0, atol=1e-13)
    # a constant input: y(t) = ∫_0^t e^{-s/2} ds exactly
    ones = jaxmem.linear_outputs(kernel, jnp.ones(11), DT)
    np.testing.assert_allclose(ones, 2 * (1 - np.exp(-0.5 * np.arange(11) * DT)), rtol=1e-13, atol=1e-15)


def test_white_noise_has_variance_one_over_dt():
    dt = 0.05
    xs = np.asarray(jaxmem.white_noise(jr.key(10), 40, 2500, dt))
    assert xs.shape == (40, 2500)
    assert abs(xs.var() * dt - 1) < 0.02 and abs(xs.mean()) < 0.02 / math.sqrt(dt)
    lag1 = np.mean(xs[:, 1:] * xs[:, :-1]) / xs.var()
    assert abs(lag1) < 0.01
    # a jitted vmap over keys, with dt traced, gives the same draws
    keys = jr.split(jr.key(4), 3)
    batched = jax.jit(jax.vmap(lambda k, d: jaxmem.white_noise(k, 2, 10, d), (0, None)))(keys, 0.1)
    np.testing.assert_allclose(batched[1], jaxmem.white_noise(keys[1], 2, 10, 0.1), rtol=1e-15)


def test_ornstein_uhlenbeck_is_stationary_with_variance_one_over_two_rates():
    rate, dt = 2.0, 0.05
    xs = np.asarray(jaxmem.ornstein_uhlenbeck(jr.key(11), 4000, 200, dt, rate=rate))
    assert abs(xs.var() * 2 * rate - 1) < 0.03
    assert abs(xs[:, 0].var() * 2 * rate - 1) < 0.06 and abs(xs[:, -1].var() * 2 * rate - 1) < 0.06
    lag = 10  # the correlation e^{-rate τ} at τ = 0.5
    corr = np.mean(xs[:, lag:] * xs[:, :-lag]) / xs.var()
    assert abs(corr - math.exp(-rate * lag * dt)) < 0.02


def test_smooth_signal_has_unit_variance_and_gaussian_correlation():
    scale, dt = 2.0, 0.1
    xs = np.asarray(jaxmem.smooth_signal(jr.key(12), 2000, 60, dt, scale=scale))
    assert abs(xs.var() - 1) < 0.05
    for lag in (5, 20):
        corr = np.mean(xs[:, lag:] * xs[:, :-lag])
        assert abs(corr - math.exp(-((lag * dt) ** 2) / (2 * scale**2))) < 0.05
    # smooth: the second differences have the variance 6 - 8ρ(Δ) + 2ρ(2Δ) = O(Δ⁴) of the covariance ρ
    rho = lambda tau: math.exp(-(tau**2) / (2 * scale**2))  # noqa: E731
    assert abs(np.diff(xs, 2, axis=1).var() / (6 - 8 * rho(dt) + 2 * rho(2 * dt)) - 1) < 0.05


def test_sample_inputs_dispatches():
    k = jr.key(5)
    np.testing.assert_array_equal(jaxmem.sample_inputs("ou", k, 2, 30, 0.1, rate=0.5),
                                  jaxmem.ornstein_uhlenbeck(k, 2, 30, 0.1, rate=0.5))
    np.testing.assert_array_equal(jaxmem.sample_inputs("white", k, 2, 30, 0.1), jaxmem.white_noise(k, 2, 30, 0.1))
    with pytest.raises(ValueError, match="'pink'"):
        jaxmem.sample_inputs("pink", k, 2, 30, 0.1)
    with pytest.raises(TypeError, match="'rate'"):
        jaxmem.sample_inputs("white", k, 2, 30, 0.1, rate=1.0)


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda: jaxmem.white_noise(jr.key(0), 0, 10, 0.1), ValueError, "n_paths must be a positive integer; got 0"),
        (lambda: jaxmem.white_noise(jr.key(0), 2, 2.5, 0.1), TypeError, "n_t must be a positive integer; got 2.5"),
        (lambda: jaxmem.white_noise(jr.key(0), 2, 10, -0.1), ValueError, "dt must be finite and > 0; got -0.1"),
        (lambda: jaxmem.smooth_signal(jr.key(0), 2, 10, float("nan")), ValueError, "dt must be finite and > 0; got nan"),
        (lambda: jaxmem.ornstein_uhlenbeck(jr.key(0), 2, 10, 0.1, rate=0.0), ValueError, "rate must be finite and > 0; got 0.0"),
        (lambda: jaxmem.smooth_signal(jr.key(0), 2, 10, 0.1, scale=-2), ValueError, "scale must be finite and > 0; got -2"),
        (lambda: jaxmem.linear_outputs(jaxmem.PowerLaw(1.0), np.ones(5), 0.0), ValueError, "dt must be finite and > 0; got 0.0"),
        (lambda: jaxmem.linear_outputs(jaxmem.PowerLaw(1.0), [1.0, np.nan], 0.1), ValueError, "must be finite"),
        (lambda: jaxmem.linear_outputs(jaxmem.PowerLaw(1.0), np.ones((2, 0)), 0.1), ValueError, r"shape \(2, 0\)"),
        (lambda: jaxmem.linear_outputs("powerlaw", np.ones(5), 0.1), TypeError, "'powerlaw'"),
        (lambda: jaxmem.outputs(3.0, np.ones(5), 0.1), TypeError, "got 3.0"),
        (lambda: jaxmem.Lorenz96(8, 0.9), ValueError, "0 <= F < 8/9.*got 0.9"),
        (lambda: jaxmem.Lorenz96(8, -0.1), ValueError, "got -0.1"),
        (lambda: jaxmem.Lorenz96(3, 0.5), ValueError, "dim must be an integer >= 4.*got 3"),
        (lambda: jaxmem.Lorenz96(8, 0.5).outputs(np.ones(5), -1.0), ValueError, "dt must be finite and > 0; got -1.0"),
    ],
)
def test_bad_input_is_refused_by_name(call, error, words):
    with pytest.raises(error, match=words):
        call()


def test_lorenz96_matches_solve_ivp():
    K, F, n, dt = 6, 0.8, 150, 0.1
    xs = np.asarray(jaxmem.white_noise(jr.key(6), 2, n, dt))
    target = jaxmem.Lorenz96(dim=K, forcing=F)
    ys = np.asarray(target.outputs(xs, dt))
    assert ys.shape == (2, n) and np.all(ys[:, 0] == 0)
    ts = np.arange(n) * dt
    for p in range(2):
        def rhs(t, z, p=p):
            dz = (np.roll(z, -1) - np.roll(z, 2)) * np.roll(z, 1) - z + F
            dz[0] += np.interp(t, ts, xs[p])
            return dz

        z, ref = np.full(K, F), np.zeros(n)
        for i in range(n - 1):  # interval by interval: the input has kinks at the samples
            z = solve_ivp(rhs, (ts[i], ts[i + 1]), z, method="DOP853", rtol=1e-12, atol=1e-13).y[:, -1]
            ref[i + 1] = z[K // 2] - F
        assert np.abs(ys[p] - ref).max() < 1e-9 * max(1.0, np.abs(ref).max())  # measured 7e-12
        assert np.abs(ref).max() > 0.05  # the signal went round the ring


def test_lorenz96_memory_time_and_forcing_checks():
    # K = 8: cos θ − cos 2θ peaks at 1 (θ = π/2), so the slowest mode decays at 1 − F.
    assert float(jaxmem.Lorenz96(8, 0.5).memory_time) == pytest.approx(2.0, rel=1e-14)
    # large K: close to (and below) the bound 1/(1 − 9F/8), reached at cos θ = 1/4.
    F = 0.8
    t = float(jaxmem.Lorenz96(997, F).memory_time)
    assert t <= 1 / (1 - 9 * F / 8) and t == pytest.approx(1 / (1 - 9 * F / 8), rel=1e-3)
    unstable = jaxmem.Lorenz96(8, 1.5, allow_unstable=True)
    assert float(unstable.forcing) == 1.5 and float(unstable.memory_time) == math.inf


def test_named_targets_mean_what_approx_means():
    ts = jnp.linspace(0.0, 30.0, 61)
    for kind, param in (("exp", "beta"), ("powerlaw", "omega"), ("bump", "omega"), ("airy", "scale")):
        ours = make_target(kind, **{param: 0.4})
        np.testing.assert_array_equal(ours(ts), kernel_fn(kind)(0.4)(ts))
    np.testing.assert_array_equal(make_target("plateau", lag=14.0)(ts), jaxmem.plateau_target(14.0)(ts))
    lorenz = make_target("lorenz96", forcing=0.3)
    assert isinstance(lorenz, jaxmem.Lorenz96) and lorenz.dim == 8 and float(lorenz.forcing) == 0.3
    assert target_params("bump") == {"omega": 0.1}
    assert "omega = 0.4" in describe_target("bump", omega=0.4)
    assert set(TARGETS) == {"exp", "powerlaw", "bump", "airy", "plateau", "lorenz96"}
    with pytest.raises(ValueError, match="no parameter 'omega'"):
        make_target("exp", omega=1.0)
    with pytest.raises(ValueError, match="omega = 80.*powerlaw"):
        make_target("powerlaw", omega=80.0)
    with pytest.raises(TypeError, match="dim .* integer; got 8.5"):
        make_target("lorenz96", dim=8.5)
