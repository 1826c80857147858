"""Linear RNN modules: exact kernels, the Diffrax ODE against direct convolution, the
reparameterisations, masked widths, initialisation and stability."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
import pytest
import scipy.integrate as si
import scipy.linalg as sla

import jaxmem

from .helpers import MODELS, PARAMETERIZATIONS, quad_half_line, tree_allclose

TIMES = np.array([0.0, 1e-3, 0.3, 1.0, 2.5, 7.0, 20.0, 60.0])


# --- Exact kernels ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["linear_d1", "linear_d2"])
def test_linear_kernel_matches_expm(name):
    model = MODELS[name]()
    W, U, c = (np.asarray(x) for x in (model.W, model.U, model.c))
    ref = np.stack([U.T @ sla.expm(W.T * t) @ c for t in TIMES])
    # any array of times: the kernel keeps its shape and appends the channel axis
    got = np.asarray(eqx.filter_jit(lambda m, t: m.kernel(t))(model, jnp.asarray(TIMES.reshape(2, 4))))
    assert got.shape == (2, 4, U.shape[1])
    np.testing.assert_allclose(got.reshape(len(TIMES), -1), ref, rtol=1e-10, atol=1e-14)


def test_linear_kernel_of_a_rotation():
    # W = [[-1, θ], [-θ, -1]]: e^{W^T t} = e^{-t} R(θt), a closed form independent of expm.
    theta = 2.0
    model = jaxmem.LinearRNN(
        jnp.array([[-1.0, theta], [-theta, -1.0]]), jnp.array([[1.0], [0.0]]), jnp.array([0.0, 1.0])
    )
    t = TIMES
    # e^{W^T t} = e^{-t} [[cos, -sin], [sin, cos]](θt); applied to c = (0, 1), first component
    np.testing.assert_allclose(
        model.kernel(jnp.asarray(t))[:, 0], -np.exp(-t) * np.sin(theta * t), rtol=1e-10, atol=1e-14
    )


@pytest.mark.parametrize("parameterization", PARAMETERIZATIONS)
def test_diagonal_kernel_matches_formula(parameterization):
    a, w = np.array([1.0, -0.5, 0.3]), np.array([0.5, 1.3, 3.0])
    model = jaxmem.DiagonalRNN(a, w, parameterization=parameterization)
    ref = (a * np.exp(-w * TIMES[:, None])).sum(axis=1)
    np.testing.assert_allclose(model.kernel(jnp.asarray(TIMES)), ref, rtol=1e-13, atol=1e-300)
    # the dense form has the same kernel
    W, U, c = (np.asarray(x) for x in model.dense())
    dense = np.stack([U.T @ sla.expm(W.T * t) @ c for t in TIMES])[:, 0]
    np.testing.assert_allclose(dense, ref, rtol=1e-12, atol=1e-300)


# --- The hidden-state ODE against direct convolution ------------------------------------------

TS = np.linspace(0.0, 10.0, 41)


def _inputs(d):
    cols = [np.sin(1.3 * TS) + 0.5 * np.cos(0.4 * TS), np.where(TS > 3.0, 1.0, -0.5) * np.cos(TS)]
    return np.stack(cols[:d], axis=1)


def _convolution(kernel_np, xs, t_out):
    r"""$y(t) = \int_{t_0}^t \hat\rho(t-s)^\top x(s)\,ds$ with $x$ the piecewise-linear
    interpolant of the samples, by scipy quadrature split at the samples."""
    out = []
    for t in t_out:
        pts = [s for s in TS if s <= t]
        total = 0.0
        for j in range(xs.shape[1]):
            f = lambda s: kernel_np(t - s)[j] * np.interp(s, TS, xs[:, j])
            for lo, hi in zip(pts[:-1], pts[1:]):
                total += si.quad(f, lo, hi, epsabs=1e-14, epsrel=1e-12)[0]
        out.append(total)
    return np.array(out)


@eqx.filter_jit
def _simulate(model, ts, xs):
    return model(ts, xs, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["diagonal_exp", "diagonal_padded", "linear_d1", "linear_d2"])
def test_ode_matches_convolution(name):
    model = MODELS[name]()
    W, U, c = (np.asarray(x) for x in model.dense())
    xs = _inputs(U.shape[1])
    if isinstance(model, jaxmem.DiagonalRNN):
        a, w = np.asarray(model.coeffs), np.asarray(jnp.where(model.active, model.rates, 1.0))
        kernel_np = lambda t: np.array([np.sum(a * np.exp(-w * t))])
    else:
        # U^T e^{W^T t} c through an eigendecomposition of W^T (scipy's expm per quadrature
        # node would be ~100x slower; test_linear_kernel_matches_expm covers expm itself)
        lam, V = np.linalg.eig(W.T)
        left, right = U.T @ V, np.linalg.solve(V, c)
        kernel_np = lambda t: np.real(left @ (np.exp(lam * t) * right))
    y = np.asarray(_simulate(model, jnp.asarray(TS), jnp.asarray(xs if xs.shape[1] > 1 else xs[:, 0])))
    assert y.shape == TS.shape
    idx = [0, 3, 10, 27, 40]
    ref = _convolution(kernel_np, xs, TS[idx])
    assert y[0] == 0.0
    np.testing.assert_allclose(y[idx], ref, rtol=0, atol=1e-8 * np.max(np.abs(ref)))


def test_ode_rejects_bad_input_shapes():
    model = MODELS["linear_d2"]()
    with pytest.raises(ValueError, match=r"\(n, d\) = \(41, 2\)"):
        model(jnp.asarray(TS), jnp.zeros(41))


# --- Reparameterisations ----------------------------------------------------------------------


@pytest.mark.parametrize("parameterization", PARAMETERIZATIONS)
def test_parameterization_round_trip(parameterization):
    w = jnp.array([1e-3, 0.1, 0.5, 1.0, 4.0, 9.5])
    model = jaxmem.DiagonalRNN(jnp.ones(6), w, parameterization=parameterization)
    np.testing.assert_allclose(model.rates, w, rtol=1e-12)
    p = model.parameterization
    assert p.name == parameterization
    # v -> w -> v (the identity stores positive rates; "best" is even in v, and w = 1/b at v = 0)
    v = jnp.linspace(0.0 if parameterization in ("identity", "best") else -3.0, 3.0, 13)
    v = v + 0.1 if parameterization == "identity" else v
    np.testing.assert_allclose(p.inverse(p(v)), v, rtol=1e-10, atol=1e-10)
    # constructing from the stored parameter gives the same module
    again = jaxmem.DiagonalRNN(model.a, v=model.v, parameterization=parameterization)
    assert tree_allclose(again, model, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("parameterization", "f"),
    [
        ("identity", lambda v: v),
        ("exp", np.exp),
        ("softplus", lambda v: np.log1p(np.exp(v))),
        ("best", lambda v: 1.0 / (v**2 + 0.1)),
    ],
)
def test_parameterization_formulas(parameterization, f):
    v = np.array([0.2, 0.7, 1.5, 3.0])
    model = jaxmem.DiagonalRNN(jnp.ones(4), v=jnp.asarray(v), parameterization=parameterization)
    np.testing.assert_allclose(model.rates, f(v), rtol=1e-14)


def test_parameterization_instances():
    best = jaxmem.Best(b=0.25)
    model = jaxmem.DiagonalRNN(jnp.ones(2), jnp.array([0.5, 2.0]), parameterization=best)
    np.testing.assert_allclose(model.rates, [0.5, 2.0], rtol=1e-14)
    np.testing.assert_allclose(model.v, np.sqrt(1 / np.array([0.5, 2.0]) - 0.25), rtol=1e-14)
    for cls in (jaxmem.Identity, jaxmem.Exp, jaxmem.Softplus):
        assert jaxmem.DiagonalRNN(jnp.ones(1), jnp.ones(1), parameterization=cls()).parameterization == cls()


# --- Masked widths ----------------------------------------------------------------------------


@eqx.filter_jit
def _loss_and_grad(model, target):
    return eqx.filter_value_and_grad(jaxmem.white_noise_loss)(model, target)


@pytest.mark.parametrize("parameterization", PARAMETERIZATIONS)
def test_padded_model_is_the_same_model(parameterization):
    target = jaxmem.ExpSum([1.0], [0.5]) + jaxmem.GaussianBump(6.0, 0.5)
    narrow = jaxmem.DiagonalRNN(
        jnp.array([0.8, -0.3, 0.2]), jnp.array([0.4, 1.1, 2.5]), parameterization=parameterization
    )
    wide = narrow.pad(7)
    assert wide.width == 7 and narrow.width == 3
    np.testing.assert_array_equal(wide.mask, [1, 1, 1, 0, 0, 0, 0])
    t = jnp.asarray(TIMES)
    np.testing.assert_allclose(wide.kernel(t), narrow.kernel(t), rtol=1e-15, atol=0)
    loss_n, grad_n = _loss_and_grad(narrow, target)
    loss_w, grad_w = _loss_and_grad(wide, target)
    assert float(loss_w) == pytest.approx(float(loss_n), rel=1e-14, abs=1e-15)
    np.testing.assert_allclose(grad_w.a[:3], grad_n.a, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(grad_w.v[:3], grad_n.v, rtol=1e-13, atol=1e-15)
    # masked modes: exactly zero gradient, so no optimiser moves them
    assert np.all(np.asarray(grad_w.a[3:]) == 0.0)
    assert np.all(np.asarray(grad_w.v[3:]) == 0.0)
    assert np.all(np.asarray(grad_w.mask) == 0.0)
    stepped = eqx.apply_updates(wide, jtu.tree_map(lambda g: -0.1 * g, grad_w))
    np.testing.assert_array_equal(stepped.a[3:], wide.a[3:])
    np.testing.assert_array_equal(stepped.v[3:], wide.v[3:])
    np.testing.assert_array_equal(stepped.mask, wide.mask)
    assert bool(wide.is_stable())


def test_padded_model_simulates_like_the_narrow_one():
    narrow = jaxmem.DiagonalRNN(jnp.array([0.8, -0.3, 0.2]), jnp.array([0.4, 1.1, 2.5]))
    wide = narrow.pad(5)
    xs = jnp.asarray(_inputs(1)[:, 0])
    y_n = _simulate(narrow, jnp.asarray(TS), xs)
    y_w = _simulate(wide, jnp.asarray(TS), xs)
    # the adaptive step sizes see the extra (zero-weight) states, so agreement is to tolerance
    np.testing.assert_allclose(y_w, y_n, rtol=0, atol=1e-9)


def test_pad_refuses_to_shrink():
    with pytest.raises(ValueError, match="smaller width 2"):
        jaxmem.DiagonalRNN(jnp.ones(3), jnp.ones(3)).pad(2)


def test_models_of_different_widths_batch_through_padding():
    target = jaxmem.GaussianBump(5.0, 0.5) + jaxmem.ExpSum([1.0], [1.0])
    models = [jaxmem.DiagonalRNN.init(jax.random.key(k), m) for k, m in enumerate((1, 3, 6))]
    wide = [m.pad(6) for m in models]
    stacked = jtu.tree_map(lambda *x: jnp.stack(x), *wide)
    batched = eqx.filter_jit(eqx.filter_vmap(jaxmem.white_noise_loss, in_axes=(eqx.if_array(0), None)))(
        stacked, target
    )
    # independent reference: ∫(ρ - ρ̂)² by quadrature for each narrow model
    f = lambda t, m: (
        math.exp(-((t - 5.0) ** 2) / 0.5)
        + math.exp(-t)
        - float(np.sum(np.asarray(m.a) * np.exp(-np.asarray(m.rates) * t)))
    )
    pts = [5.0 + 0.5 * k for k in range(-8, 9)] + [20.0]
    single = [quad_half_line(lambda t: f(t, m) ** 2, pts) for m in models]
    np.testing.assert_allclose(batched, single, rtol=1e-10)


# --- Initialisation and stability -------------------------------------------------------------


@pytest.mark.parametrize("parameterization", PARAMETERIZATIONS)
def test_diagonal_init(parameterization):
    key = jax.random.key(42)
    m1 = jaxmem.DiagonalRNN.init(key, 8, parameterization=parameterization)
    m2 = jaxmem.DiagonalRNN.init(key, 8, parameterization=parameterization)
    assert tree_allclose(m1, m2, rtol=0, atol=0)  # the same key gives the same model
    m3 = jaxmem.DiagonalRNN.init(jax.random.key(43), 8, parameterization=parameterization)
    assert not np.allclose(m1.a, m3.a)
    rates = np.asarray(m1.rates)
    assert rates.shape == (8,) and np.all(np.diff(rates) >= 0)
    assert np.all((rates >= 0.5 - 1e-12) & (rates <= 4.0 + 1e-12))
    assert bool(m1.is_stable())
    assert np.all(np.isfinite(np.asarray(m1.a)))


def test_linear_init_is_stable():
    init = eqx.filter_jit(jaxmem.LinearRNN.init)  # Python ints are static: one compile per shape
    for seed in range(10):
        width, inputs = (12, 1) if seed < 8 else (1, 2)
        model = init(jax.random.key(seed), width, inputs=inputs, margin=0.5)
        eig = np.linalg.eigvals(np.asarray(model.W))
        assert eig.real.max() <= -0.25 + 1e-12, (seed, width, eig)
        assert bool(model.is_stable())
        assert model.U.shape == (width, inputs) and model.c.shape == (width,)
    a = jaxmem.LinearRNN.init(jax.random.key(3), 4)
    b = jaxmem.LinearRNN.init(jax.random.key(3), 4)
    assert tree_allclose(a, b, rtol=0, atol=0)


def test_is_stable():
    model = jaxmem.DiagonalRNN(jnp.ones(2), v=jnp.array([-1.0, 1.0]))  # rates -1, 1
    assert not bool(model.is_stable())
    assert not bool(jax.jit(lambda m: m.is_stable())(model))
    # a masked unstable mode does not count
    masked = jaxmem.DiagonalRNN(jnp.ones(2), v=jnp.array([-1.0, 1.0]), mask=jnp.array([0.0, 1.0]))
    assert bool(masked.is_stable())
    dense = jaxmem.LinearRNN(-jnp.eye(2), jnp.ones((2, 1)), jnp.ones(2))
    assert bool(dense.is_stable())
    # an unstable W can only appear by editing a constructed model (the constructor refuses it)
    unstable = eqx.tree_at(lambda m: m.W, dense, jnp.array([[0.1, 1.0], [0.0, -1.0]]))
    assert not bool(unstable.is_stable())
    assert not bool(jax.jit(lambda m: m.is_stable())(unstable))
