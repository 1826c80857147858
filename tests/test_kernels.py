"""Kernel closed forms against independent quadrature (scipy), in float64."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special as sps

import jaxmem

from .helpers import KERNELS, central_difference, log_bump_moment, quad_half_line

RTOL = 1e-8  # the accuracy the closed forms promise, in float64
TINY = 1e-300  # below this a float64 is subnormal or zero: compare only that it is


@eqx.filter_jit
def _moments(kernel, w):
    return kernel.laplace(w), kernel.laplace_t(w)


def _ref_moment(case, w, n):
    f = case.ref
    return quad_half_line(lambda t: t**n * math.exp(-w * t) * f(t), [*case.points, 1 / w, 10 / w])


# --- Gaussian bumps: lags up to 100, rates up to 100, no 0·inf -------------------------------

BUMP_RATES = np.array([1e-3, 0.1, 0.5, 1.0, 4.0, 10.0, 30.0, 100.0])


@pytest.mark.parametrize("lag", [0.5, 2.0, 10.0, 18.0, 50.0, 100.0])
@pytest.mark.parametrize("width", [0.25, 0.5, 2.0])
def test_bump_laplace_moments(lag, width):
    amplitude = 1.5
    kernel = jaxmem.GaussianBump(lag, width, amplitude)
    b0, b1 = (np.asarray(b) for b in _moments(kernel, jnp.asarray(BUMP_RATES)))
    assert np.all(np.isfinite(b0)) and np.all(np.isfinite(b1))
    assert np.all(b0 >= 0) and np.all(b1 >= 0)
    for i, w in enumerate(BUMP_RATES):
        for n, got in ((0, b0[i]), (1, b1[i])):
            log_ref = math.log(amplitude) + log_bump_moment(lag, width, w, n)
            if log_ref > math.log(TINY):
                # representable: must be non-zero and accurate
                assert got > 0, (lag, width, w, n)
                assert abs(got / math.exp(log_ref) - 1) <= RTOL, (lag, width, w, n, got, math.exp(log_ref))
            else:
                # the true value underflows float64: it must do so gracefully
                assert got < 1e-290, (lag, width, w, n, got)


@pytest.mark.parametrize(("lag", "width", "w"), [(0.5, 2.0, 100.0), (2.0, 2.0, 100.0), (0.5, 1.0, 60.0)])
def test_bump_laplace_where_naive_formula_is_zero_times_inf(lag, width, w):
    # The naive formula A σ sqrt(π/2) exp(-wL + σ²w²/2) erfc(-μ/(√2σ)) is inf·0 = NaN here ...
    mu = lag - width**2 * w
    with np.errstate(over="ignore", invalid="ignore"):
        naive = (
            width
            * math.sqrt(math.pi / 2)
            * np.exp(-w * lag + width**2 * w**2 / 2)
            * sps.erfc(-mu / (math.sqrt(2) * width))
        )
    assert not np.isfinite(naive)
    # ... while the true value is an ordinary float64 (≈ e^{-w·0}/(w + L/σ²)-ish), and so is ours.
    kernel = jaxmem.GaussianBump(lag, width)
    b0, b1 = (float(b) for b in _moments(kernel, jnp.asarray(w)))
    ref0, ref1 = (math.exp(log_bump_moment(lag, width, w, n)) for n in (0, 1))
    assert 1e-20 < ref0 < 1 and 1e-20 < ref1 < 1
    assert b0 == pytest.approx(ref0, rel=RTOL, abs=0)
    assert b1 == pytest.approx(ref1, rel=RTOL, abs=0)


@pytest.mark.parametrize("lag", [-1.0, 0.0, 0.5, 18.0, 100.0])
@pytest.mark.parametrize("width", [0.25, 2.0])
def test_bump_norms(lag, width):
    kernel = jaxmem.GaussianBump(lag, width, amplitude=-0.7)
    f = lambda t: -0.7 * math.exp(-((t - lag) ** 2) / (2 * width**2))
    pts = [lag + k * width for k in range(-10, 11)]
    assert float(kernel.sq_norm()) == pytest.approx(quad_half_line(lambda t: f(t) ** 2, pts), rel=RTOL, abs=0)
    assert float(kernel.l1_norm()) == pytest.approx(quad_half_line(lambda t: abs(f(t)), pts), rel=1e-6, abs=0)


def test_bump_values():
    kernel = jaxmem.GaussianBump(18.0, 0.5, 2.0)
    t = np.linspace(0.0, 40.0, 101)
    np.testing.assert_allclose(
        kernel(jnp.asarray(t)), 2.0 * np.exp(-((t - 18.0) ** 2) / 0.5), rtol=1e-14, atol=1e-300
    )  # XLA flushes subnormals


# --- Power laws -------------------------------------------------------------------------------

POWER_RATES = np.array([1e-4, 1e-2, 0.5, 1.0, 4.0, 10.0, 100.0])


@pytest.mark.parametrize("omega", [0.1, 0.25, 0.5, 1.0, 2.0, 2.5, 7.3, 60.0])
@pytest.mark.parametrize("scale", [1.0, 3.0])
def test_powerlaw_closed_forms(omega, scale):
    kernel = jaxmem.PowerLaw(omega, scale)
    b0, b1 = (np.asarray(b) for b in _moments(kernel, jnp.asarray(POWER_RATES)))
    f = lambda t: (1.0 + t / scale) ** (-(1.0 + omega))
    for i, w in enumerate(POWER_RATES):
        pts = [scale, 10 * scale, 1 / w, 10 / w, 50 / w]
        ref0 = quad_half_line(lambda t: math.exp(-w * t) * f(t), pts)
        ref1 = quad_half_line(lambda t: t * math.exp(-w * t) * f(t), pts)
        assert b0[i] == pytest.approx(ref0, rel=RTOL, abs=0), (omega, scale, w)
        assert b1[i] == pytest.approx(ref1, rel=RTOL, abs=0), (omega, scale, w)
    pts = [scale, 10 * scale, 100 * scale]
    assert float(kernel.sq_norm()) == pytest.approx(quad_half_line(lambda t: f(t) ** 2, pts), rel=RTOL, abs=0)
    if omega >= 0.25:  # the L1 tail ~ t^{-1-ω} is too slow for quad below that
        assert float(kernel.l1_norm()) == pytest.approx(quad_half_line(f, pts), rel=RTOL, abs=0)
    assert float(kernel.l1_norm()) == pytest.approx(scale / omega, rel=1e-14, abs=0)


# --- Exponential sums -------------------------------------------------------------------------


def test_expsum_closed_forms():
    case = KERNELS["expsum"]
    kernel = case.make()
    ws = np.array([1e-3, 0.5, 2.0, 10.0, 100.0])
    b0, b1 = _moments(kernel, jnp.asarray(ws))
    np.testing.assert_allclose(b0, [_ref_moment(case, w, 0) for w in ws], rtol=RTOL)
    np.testing.assert_allclose(b1, [_ref_moment(case, w, 1) for w in ws], rtol=RTOL)
    sq = quad_half_line(lambda t: case.ref(t) ** 2, case.points)
    assert float(kernel.sq_norm()) == pytest.approx(sq, rel=RTOL, abs=0)


# --- Grid kernels: exact for the piecewise-linear interpolant ---------------------------------


@pytest.mark.parametrize("w", [1e-3, 0.3, 1.0, 7.0, 100.0])
def test_grid_kernel_moments_exact_for_interpolant(w):
    case = KERNELS["grid"]
    kernel = case.make()
    b0, b1 = _moments(kernel, jnp.asarray(w))
    assert float(b0) == pytest.approx(_ref_moment(case, w, 0), rel=RTOL, abs=1e-300)
    assert float(b1) == pytest.approx(_ref_moment(case, w, 1), rel=RTOL, abs=1e-300)


def test_grid_kernel_norms_and_values():
    case = KERNELS["grid"]
    kernel = case.make()
    assert float(kernel.sq_norm()) == pytest.approx(
        quad_half_line(lambda t: case.ref(t) ** 2, case.points), rel=RTOL, abs=0
    )
    # the profile changes sign: l1_norm splits the crossing segments exactly
    assert float(kernel.l1_norm()) == pytest.approx(
        quad_half_line(lambda t: abs(case.ref(t)), case.points), rel=RTOL, abs=0
    )
    t = np.array([0.0, 0.013, 1.0, 2.05, 11.99, 12.0, 12.5, 100.0])
    np.testing.assert_allclose(kernel(jnp.asarray(t)), [case.ref(s) for s in t], rtol=1e-14, atol=1e-15)


# --- Airy: quadrature rule built at construction ----------------------------------------------


@pytest.mark.parametrize("name", ["airy", "airy_shift3_scale2"])
def test_airy_moments(name):
    case = KERNELS[name]
    kernel = case.make()
    ws = np.array([1e-3, 0.5, 2.0, 10.0, 100.0])
    b0, b1 = _moments(kernel, jnp.asarray(ws))
    np.testing.assert_allclose(b0, [_ref_moment(case, w, 0) for w in ws], rtol=RTOL)
    np.testing.assert_allclose(b1, [_ref_moment(case, w, 1) for w in ws], rtol=RTOL)
    sq = quad_half_line(lambda t: case.ref(t) ** 2, case.points)
    assert float(kernel.sq_norm()) == pytest.approx(sq, rel=RTOL, abs=0)
    t = np.linspace(0.0, 20.0, 41)
    np.testing.assert_allclose(kernel(jnp.asarray(t)), [case.ref(s) for s in t], rtol=1e-12, atol=1e-300)


# --- Sums and scalings ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["canonical_sum", "scaled_powerlaw", "mixed"])
def test_sums_and_scalings(name):
    case = KERNELS[name]
    kernel = case.make()
    ws = np.array([1e-2, 0.5, 2.0, 10.0, 100.0])
    b0, b1 = _moments(kernel, jnp.asarray(ws))
    np.testing.assert_allclose(b0, [_ref_moment(case, w, 0) for w in ws], rtol=RTOL)
    np.testing.assert_allclose(b1, [_ref_moment(case, w, 1) for w in ws], rtol=RTOL)
    sq = quad_half_line(lambda t: case.ref(t) ** 2, case.points)
    assert float(kernel.sq_norm()) == pytest.approx(sq, rel=RTOL, abs=0)
    t = np.array([0.0, 0.7, 3.0, 17.9, 18.0, 25.0])
    np.testing.assert_allclose(kernel(jnp.asarray(t)), [case.ref(s) for s in t], rtol=1e-12, atol=1e-300)


def test_scaled_kernel_l1_norm():
    assert float((-2.0 * jaxmem.PowerLaw(0.5)).l1_norm()) == pytest.approx(4.0, rel=1e-14, abs=0)
    assert float((3.0 * jaxmem.GaussianBump(18.0, 0.5)).l1_norm()) == pytest.approx(
        3.0 * 0.5 * math.sqrt(2 * math.pi), rel=1e-10, abs=0
    )


def test_kernel_arithmetic_builds_flat_sums():
    a, b, c = jaxmem.ExpSum([1.0], [1.0]), jaxmem.PowerLaw(1.0), jaxmem.GaussianBump(2.0, 0.5)
    s = a + b + c
    assert isinstance(s, jaxmem.SumKernel) and len(s.terms) == 3
    d = a - b
    assert isinstance(d.terms[1], jaxmem.ScaledKernel)
    t = jnp.array([0.0, 1.0, 2.0])
    np.testing.assert_allclose(d(t), a(t) - b(t), rtol=1e-15)
    np.testing.assert_allclose((2.0 * c)(t), 2.0 * c(t), rtol=1e-15)
    np.testing.assert_allclose((c * 2.0)(t), 2.0 * c(t), rtol=1e-15)


# --- Inner products ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("b1", "b2"),
    [
        ((18.0, 0.5, 1.0), (18.0, 0.5, 1.0)),
        ((18.0, 0.5, 1.0), (19.0, 0.25, -2.0)),
        ((0.3, 1.0, 1.0), (0.0, 2.0, 0.5)),
        ((100.0, 2.0, 1.0), (95.0, 1.5, 1.0)),
        ((10.0, 0.5, 1.0), (60.0, 0.5, 1.0)),  # ~e^{-2500}: underflows
    ],
)
def test_inner_bump_bump_closed_form(b1, b2):
    k1, k2 = jaxmem.GaussianBump(*b1), jaxmem.GaussianBump(*b2)
    got = float(eqx.filter_jit(jaxmem.inner)(k1, k2))
    assert math.isfinite(got)
    f = lambda t: (
        b1[2] * b2[2] * math.exp(-((t - b1[0]) ** 2) / (2 * b1[1] ** 2) - (t - b2[0]) ** 2 / (2 * b2[1] ** 2))
    )
    # the product is a Gaussian centred at the precision-weighted mean of the lags
    p = 1 / b1[1] ** 2 + 1 / b2[1] ** 2
    centre, sd = (b1[0] / b1[1] ** 2 + b2[0] / b2[1] ** 2) / p, p**-0.5
    ref = quad_half_line(f, [centre + k * sd for k in range(-12, 13)])
    assert got == pytest.approx(ref, rel=RTOL, abs=1e-300)


@pytest.mark.parametrize(
    "other", ["powerlaw_0.25", "powerlaw_2_scale3", "bump_0.5", "bump_18", "airy", "grid"]
)
def test_inner_expsum_closed_form(other):
    es, case = KERNELS["expsum"], KERNELS[other]
    k1, k2 = es.make(), case.make()
    ref = quad_half_line(lambda t: es.ref(t) * case.ref(t), [*es.points, *case.points])
    assert float(jaxmem.inner(k1, k2)) == pytest.approx(ref, rel=RTOL, abs=0)
    assert float(jaxmem.inner(k2, k1)) == pytest.approx(ref, rel=RTOL, abs=0)


@pytest.mark.parametrize(
    ("n1", "n2", "rtol"),
    [
        ("airy", "powerlaw_1", RTOL),  # Airy's own rule: accurate
        ("airy", "bump_0.5", RTOL),
        ("powerlaw_0.25", "bump_18", 1e-6),  # generic graded quadrature: the fallback
        ("powerlaw_1", "powerlaw_2_scale3", 1e-6),
        ("grid", "bump_0.5", 1e-6),
    ],
)
def test_inner_quadrature_pairs(n1, n2, rtol):
    c1, c2 = KERNELS[n1], KERNELS[n2]
    ref = quad_half_line(lambda t: c1.ref(t) * c2.ref(t), sorted({*c1.points, *c2.points}))
    assert float(jaxmem.inner(c1.make(), c2.make())) == pytest.approx(ref, rel=rtol, abs=0)


def test_inner_through_sums_and_scalings():
    a = jaxmem.ExpSum([1.0], [0.5])
    b = jaxmem.GaussianBump(3.0, 0.5)
    k = 2.0 * (a + b)
    f = lambda t: 2.0 * (math.exp(-0.5 * t) + math.exp(-((t - 3.0) ** 2) / 0.5))
    g = lambda t: math.exp(-((t - 3.0) ** 2) / 0.5)
    pts = [3.0 + 0.5 * k for k in range(-6, 7)] + [20.0]
    assert float(jaxmem.inner(k, b)) == pytest.approx(
        quad_half_line(lambda t: f(t) * g(t), pts), rel=RTOL, abs=0
    )
    assert float(jaxmem.inner(k, k)) == pytest.approx(
        quad_half_line(lambda t: f(t) ** 2, pts), rel=RTOL, abs=0
    )


# --- laplace_moments: the derivative of b0 is -b1 ---------------------------------------------

FD_KERNELS = [
    "expsum",
    "powerlaw_0.25",
    "powerlaw_1",
    "powerlaw_2.5_scale0.5",
    "bump_0.5",
    "bump_18",
    "airy",
    "grid",
    "canonical_sum",
]


@eqx.filter_jit
def _b0_derivatives(kernel, w):
    b0, b1 = jaxmem.laplace_moments(kernel, w)
    jac = jax.jacfwd(lambda v: jaxmem.laplace_moments(kernel, v)[0])(w)
    vjp = jax.grad(lambda v: jnp.sum(jaxmem.laplace_moments(kernel, v)[0]))(w)
    return b1, jnp.diag(jac), vjp


@pytest.mark.parametrize("name", FD_KERNELS)
def test_laplace_moments_derivative_is_minus_b1(name):
    kernel = KERNELS[name].make()
    ws = np.array([0.3, 1.0, 4.0])
    # the closed-form b0, differentiated by central differences (independent of b1)
    h = 1e-4 * ws
    fd = (
        np.asarray(_moments(kernel, jnp.asarray(ws + h))[0])
        - np.asarray(_moments(kernel, jnp.asarray(ws - h))[0])
    ) / (2 * h)
    b1, jac, vjp = (np.asarray(x) for x in _b0_derivatives(kernel, jnp.asarray(ws)))
    scale = np.maximum(np.abs(b1), 1e-6 * np.max(np.abs(b1)))
    assert np.all(np.abs(-fd - b1) <= 1e-6 * scale), (-fd, b1)
    # and what jax sees through laplace_moments, forward and reverse, is exactly -b1
    np.testing.assert_allclose(jac, -b1, rtol=1e-14)
    np.testing.assert_allclose(vjp, -b1, rtol=1e-14)


@pytest.mark.parametrize(
    ("make", "x0"),
    [
        (lambda p: jaxmem.GaussianBump(p[0], p[1], p[2]), [18.0, 0.5, 1.3]),
        (lambda p: jaxmem.PowerLaw(p[0], p[1]), [0.7, 2.0]),
        (lambda p: jaxmem.ExpSum(p[:2], p[2:]), [1.0, -0.5, 0.5, 2.0]),
    ],
    ids=["bump", "powerlaw", "expsum"],
)
def test_laplace_moments_derivative_in_kernel_parameters(make, x0):
    ws = jnp.array([0.5, 2.0])

    @jax.jit
    def b(p):
        b0, b1 = jaxmem.laplace_moments(make(p), ws)
        return b0[0] + 0.3 * b0[1] + 0.7 * b1[0] - 0.2 * b1[1]

    grad = jax.jit(jax.grad(b))(jnp.asarray(x0))
    fd = central_difference(lambda p: float(b(jnp.asarray(p))), x0, eps=1e-5)
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-12)
