"""Sequence models on sampled inputs: `predict` of the linear RNNs against independent exact
recurrences and scipy, the scans against each other, the orders of the zero-order hold and of the
fixed-step nonlinear solve, the discrete RNNs against numpy loops, masks, gradients and errors."""

import equinox as eqx
import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import pytest
import scipy.integrate as si
import scipy.linalg as sla

import jaxmem
from jaxmem._models._scan import hold_functions

from .helpers import central_difference

RNG = np.random.default_rng(0)
XS = RNG.normal(size=41)  # a rough input path: the kinks of its interpolant are at every sample
DT = 0.15


@eqx.filter_jit
def _predict(model, xs, dt, **kwargs):
    return model.predict(xs, dt, **kwargs)


def _slope(steps, errors):
    return np.polyfit(np.log(steps), np.log(errors), 1)[0]


# --- Independent references ------------------------------------------------------------------


def _foh_dense_reference(W, U, c, xs, dt):
    """The exact first-order-hold recurrence by W^{-1} closed forms: ∫_0^Δ e^{Wu}du =
    W^{-1}(A - I), ∫_0^Δ u e^{Wu}du = W^{-1}(ΔA - W^{-1}(A - I)), A = e^{WΔ} (scipy expm)."""
    W, U, c, xs = (np.asarray(v, dtype=np.float64) for v in (W, U, c, xs))
    xs = xs[:, None] if xs.ndim == 1 else xs
    A = sla.expm(W * dt)
    Wi = np.linalg.inv(W)
    G0 = Wi @ (A - np.eye(len(W))) @ U
    P = Wi @ (dt * A - Wi @ (A - np.eye(len(W)))) @ U / dt  # weight of x_j: ∫ e^{Wu} (u/Δ) du U
    Q = G0 - P
    h = np.zeros(len(W))
    out = [0.0]
    for j in range(len(xs) - 1):
        h = A @ h + P @ xs[j] + Q @ xs[j + 1]
        out.append(c @ h)
    return np.array(out)


def _solve_ivp_reference(W, U, c, xs, dt):
    """dh/dt = Wh + U x̃(t), x̃ = np.interp of the samples, solved interval by interval (DOP853)."""
    W, U, c = (np.asarray(v, dtype=np.float64) for v in (W, U, c))
    ts = dt * np.arange(len(xs))
    h, out = np.zeros(len(W)), [0.0]
    for j in range(len(xs) - 1):
        f = lambda t, h: W @ h + U[:, 0] * np.interp(t, ts, xs)
        h = si.solve_ivp(f, (ts[j], ts[j + 1]), h, method="DOP853", rtol=1e-13, atol=1e-15).y[:, -1]
        out.append(c @ h)
    return np.array(out)


def _dense_loop(W, U, b, c, xs, sigma):
    h, out = np.zeros(len(W)), []
    for x in xs:
        out.append(c @ h)
        h = sigma(W @ h + U[:, 0] * x + b)
    return np.array(out)


# --- Exact predictions of the linear RNNs ----------------------------------------------------


def test_hold_functions_match_mpmath():
    z = np.concatenate([[0.0, 1e-12, 1e-6, 1e-3, 0.05, 0.2, 0.9999, 1.0, 1.0001], np.geomspace(0.3, 700, 20)])
    phi, psi = (np.asarray(v) for v in hold_functions(jnp.asarray(z)))
    mpmath.mp.dps = 50  # the closed forms at 50 digits: their cancellation costs nothing there
    for zi, f, g in zip(z, phi, psi):
        zm = mpmath.mpf(zi)
        ref_phi = -mpmath.expm1(-zm) / zm if zi else mpmath.mpf(1)
        ref_psi = (ref_phi - mpmath.exp(-zm)) / zm if zi else mpmath.mpf(0.5)
        assert abs(f - float(ref_phi)) <= 1e-15 * float(ref_phi), zi
        assert abs(g - float(ref_psi)) <= 1e-15 * float(ref_psi), zi
    # the gradients at z = 0 are finite (the closed forms are never evaluated there)
    d = jax.grad(lambda z: sum(hold_functions(z)))(0.0)
    np.testing.assert_allclose(d, -1 / 2 - 1 / 3, rtol=1e-14)


@pytest.mark.parametrize("parameterization", ["identity", "best"])
def test_diagonal_predict_is_the_exact_foh_solution(parameterization):
    a, w = np.array([1.0, -0.5, 0.3]), np.array([0.5, 1.3, 3.0])
    model = jaxmem.DiagonalRNN(a, w, parameterization=parameterization)
    got = _predict(model, jnp.asarray(XS), DT)
    ref = _foh_dense_reference(-np.diag(w), np.ones((3, 1)), a, XS, DT)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-13 * np.abs(ref).max())
    assert got[0] == 0.0


def test_diagonal_predict_against_solve_ivp():
    # slow and fast modes: wΔ from 1.5e-7 (the series branch) to 15
    a, w = np.array([1.0, -0.5, 0.3, 2.0]), np.array([1e-6, 0.5, 3.0, 100.0])
    model = jaxmem.DiagonalRNN(a, w)
    ref = _solve_ivp_reference(-np.diag(w), np.ones((4, 1)), a, XS, DT)
    np.testing.assert_allclose(_predict(model, XS, DT), ref, rtol=0, atol=1e-11)


@pytest.mark.parametrize("inputs", [1, 2])
def test_linear_predict_is_the_exact_foh_solution(inputs):
    model = jaxmem.LinearRNN.init(jax.random.key(inputs), 4, inputs=inputs)
    xs = XS if inputs == 1 else np.stack([XS, np.cos(np.arange(len(XS)))], axis=1)
    got = _predict(model, jnp.asarray(xs), DT)
    ref = _foh_dense_reference(model.W, model.U, model.c, xs, DT)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12 * np.abs(ref).max())
    if inputs == 1:
        ref = _solve_ivp_reference(model.W, model.U, model.c, XS, DT)
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-11)


def test_associative_scan_equals_sequential_scan_and_a_loop():
    model = jaxmem.DiagonalRNN.init(jax.random.key(3), 6, parameterization="softplus")
    assoc = _predict(model, XS, DT, sequential=False)
    seq = _predict(model, XS, DT, sequential=True)
    np.testing.assert_allclose(assoc, seq, rtol=0, atol=1e-14)
    # the discrete diagonal recurrence with a bias: both scans against a numpy loop
    b = np.linspace(-0.3, 0.4, 6)
    disc = jaxmem.DiscreteDiagonalRNN(model.a, v=model.v, dt=DT, parameterization="softplus", b=b)
    w = np.asarray(model.rates)
    lam, beta = np.exp(-w * DT), (1 - np.exp(-w * DT)) / w
    h, ref = np.zeros(6), []
    for x in XS:
        ref.append(np.asarray(model.a) @ h)
        h = lam * h + beta * x + b
    for sequential in (False, True):
        np.testing.assert_allclose(_predict(disc, XS, DT, sequential=sequential), ref, rtol=0, atol=1e-13)


def test_zero_order_hold_converges_at_first_order():
    # dh/dt = -wh + sin t, h(0) = 0: h = (w sin t - cos t + e^{-wt}) / (w^2 + 1)
    a, w = np.array([1.0, -0.7]), np.array([0.4, 2.5])
    model = jaxmem.DiagonalRNN(a, w)
    T, steps = 4.0, np.array([0.1, 0.05, 0.025, 0.0125])
    n = round(T / steps[-1]) + 1
    # one program for every step: the paths are zero-padded to one length (the models are causal)
    run = eqx.filter_jit(lambda m, xs, dt: (m.discretize(dt).predict(xs, dt), m.predict(xs, dt)))
    zoh, foh = [], []
    for dt in steps:
        t = dt * np.arange(round(T / dt) + 1)
        exact = ((w * np.sin(t)[:, None] - np.cos(t)[:, None] + np.exp(-w * t[:, None])) / (w**2 + 1)) @ a
        xs = jnp.asarray(np.pad(np.sin(t), (0, n - len(t))))
        y_zoh, y_foh = (np.asarray(y)[: len(t)] for y in run(model, xs, jnp.asarray(dt)))
        zoh.append(np.abs(y_zoh - exact).max())
        foh.append(np.abs(y_foh - exact).max())
    assert 0.9 < _slope(steps, zoh) < 1.1, zoh
    assert 1.9 < _slope(steps, foh) < 2.1, foh  # the hold of a smooth input is second order


# --- Nonlinear continuous-time RNN -----------------------------------------------------------


def test_continuous_identity_is_the_linear_rnn():
    linear = jaxmem.LinearRNN.init(jax.random.key(5), 4)
    model = jaxmem.ContinuousRNN(linear.W, linear.U, jnp.zeros(4), linear.c, activation="identity")
    ts = jnp.asarray(DT * np.arange(len(XS)))
    kw = dict(rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(model(ts, XS, **kw), linear(ts, XS, **kw), rtol=0, atol=1e-10)


def test_continuous_predict_is_fourth_order():
    model = jaxmem.ContinuousRNN.init(jax.random.key(7), 5)
    model = eqx.tree_at(lambda m: m.b, model, jnp.linspace(-0.3, 0.3, 5))
    dt, xs = 0.25, 2.0 * XS[:21]
    ref = model(jnp.asarray(dt * np.arange(21)), xs, rtol=1e-13, atol=1e-15)
    predict = eqx.filter_jit(lambda m, x, k: m.predict(x, dt, substeps=k))
    substeps = np.array([2, 4, 8])
    errors = [np.abs(predict(model, xs, int(k)) - ref).max() for k in substeps]
    assert errors[-1] < 1e-6
    assert 3.6 < _slope(1.0 / substeps, errors) < 4.7, errors


# --- Discrete-time RNNs ----------------------------------------------------------------------


@pytest.mark.parametrize("activation", ["tanh", "identity"])
def test_discrete_rnn_against_a_loop(activation):
    model = jaxmem.DiscreteRNN.init(jax.random.key(11), 5, activation=activation, gain=0.8)
    model = eqx.tree_at(lambda m: m.b, model, jnp.linspace(-0.2, 0.3, 5))
    sigma = np.tanh if activation == "tanh" else (lambda z: z)
    W, U, b, c = (np.asarray(v) for v in (model.W, model.U, model.b, model.c))
    ref = _dense_loop(W, U, b, c, XS, sigma)
    np.testing.assert_allclose(_predict(model, XS, DT), ref, rtol=0, atol=1e-13)


@pytest.mark.parametrize("parameterization", ["identity", "softplus"])
def test_discrete_diagonal_tanh_against_a_loop(parameterization):
    model = jaxmem.DiscreteDiagonalRNN.init(jax.random.key(13), 4, DT, parameterization=parameterization,
                                            max_rate=3.0, activation="tanh", bias=True)
    model = eqx.tree_at(lambda m: m.b, model, jnp.array([0.1, -0.2, 0.0, 0.3]))
    w = np.asarray(model.rates)
    lam, beta = np.exp(-w * DT), -np.expm1(-w * DT) / w
    h, ref = np.zeros(4), []
    for x in XS:
        ref.append(np.asarray(model.a) @ h)
        h = np.tanh(lam * h + beta * x + np.asarray(model.b))
    np.testing.assert_allclose(_predict(model, XS, DT), ref, rtol=0, atol=1e-13)


# --- Masks, batching, gradients ------------------------------------------------------------


MASKED = {
    "diagonal": lambda key: jaxmem.DiagonalRNN.init(key, 4, parameterization="exp"),
    "linear": lambda key: jaxmem.LinearRNN.init(key, 4),
    "discrete_diagonal": lambda key: jaxmem.DiscreteDiagonalRNN.init(key, 4, DT, activation="tanh", bias=True),
    "discrete": lambda key: jaxmem.DiscreteRNN.init(key, 4),
    "continuous": lambda key: jaxmem.ContinuousRNN.init(key, 4),
}


def _scramble_padding(model, narrow_width):
    """Fill the masked entries of every array leaf with random finite values."""
    rng = np.random.default_rng(1)

    def fill(x):
        if not eqx.is_array(x) or x.ndim == 0 or x.shape[0] == 1:
            return x
        x = np.array(x)
        if x.ndim == 2 and x.shape[1] > 1:
            x[narrow_width:, :] = rng.normal(size=x[narrow_width:, :].shape)
            x[:, narrow_width:] = rng.normal(size=x[:, narrow_width:].shape)
        else:
            x[narrow_width:] = rng.normal(size=x[narrow_width:].shape)
        return jnp.asarray(x)

    params = eqx.filter(model, eqx.is_array)
    params = eqx.tree_at(lambda m: m.mask, params, None)  # the mask itself stays
    return eqx.combine(jax.tree_util.tree_map(fill, params), model)


@pytest.mark.parametrize("name", list(MASKED))
def test_masked_units_contribute_nothing_and_get_zero_gradient(name):
    narrow = MASKED[name](jax.random.key(17))
    wide = narrow.pad(8)
    if name != "linear":  # a linear RNN has no mask: its padding states stay at rest instead
        wide = _scramble_padding(wide, 4)  # "exp" rates: any stored v is a valid rate
    run = eqx.filter_jit(lambda m: eqx.filter_value_and_grad(lambda m: jnp.sum(m.predict(XS, DT) ** 2))(m))
    (y_wide, g_wide), (y_narrow, g_narrow) = run(wide), run(narrow)
    np.testing.assert_allclose(y_wide, y_narrow, rtol=1e-13)
    for field in ("a", "v", "b", "c", "U", "W", "mask"):
        gw = getattr(g_wide, field, None)
        if gw is None:
            continue
        gw = np.asarray(gw)
        if field == "mask":
            assert np.all(gw == 0)
            continue
        gn = np.asarray(getattr(g_narrow, field))
        inner = gw[:4, :4] if gw.ndim == 2 and gw.shape[1] > 1 else gw[:4]
        np.testing.assert_allclose(inner, gn, rtol=1e-11, atol=1e-14)
        outer = np.ones(gw.shape, bool)
        outer[(slice(0, 4), slice(0, 4)) if inner.ndim == 2 else slice(0, 4)] = False
        assert np.all(gw[outer] == 0), field


def test_predict_vmaps_over_paths_and_widths():
    paths = jnp.asarray(RNG.normal(size=(3, 25)))
    models = [jaxmem.DiscreteDiagonalRNN.init(jax.random.key(k), m, DT).pad(5) for k, m in enumerate((1, 3, 5))]
    stacked = jax.tree_util.tree_map(lambda *x: jnp.stack(x), *models)
    out = eqx.filter_jit(eqx.filter_vmap(lambda m: jax.vmap(lambda x: m.predict(x, DT))(paths)))(stacked)
    assert out.shape == (3, 3, 25)
    for k, m in enumerate(models):
        np.testing.assert_allclose(out[k, 1], _predict(m, paths[1], DT), rtol=1e-13, atol=1e-15)


def test_predict_gradients_against_finite_differences():
    xs = jnp.asarray(XS[:20])

    def check(make, p0):
        # one compiled program gives the loss for the differences and the gradient
        loss = jax.jit(jax.value_and_grad(lambda p: jnp.sum(make(p).predict(xs, DT) ** 2)))
        fd = central_difference(lambda p: float(loss(jnp.asarray(p))[0]), p0)
        np.testing.assert_allclose(loss(jnp.asarray(p0))[1], fd, rtol=1e-6, atol=1e-9)

    # a slow mode (wΔ < 1: the series branch) and a fast one, in a and in w
    check(lambda p: jaxmem.DiagonalRNN(p[:2], p[2:]), np.array([0.7, -0.4, 0.05, 9.0]))
    # through the Runge-Kutta scan
    rnn = jaxmem.ContinuousRNN.init(jax.random.key(4), 2)
    check(lambda p: jaxmem.ContinuousRNN(rnn.W, p[:, None], rnn.b, rnn.c), np.asarray(rnn.U)[:, 0])
    # the step of a discrete diagonal model is fixed: zero gradient
    model = jaxmem.DiagonalRNN(jnp.ones(2), jnp.array([0.5, 2.0])).discretize(DT)
    g = eqx.filter_jit(jax.grad(lambda m: jnp.sum(m.predict(xs, DT) ** 2)))(model)
    assert g.dt == 0.0 and np.all(np.asarray(g.v) != 0)


# --- Errors ----------------------------------------------------------------------------------


def test_bad_inputs_raise_clear_errors():
    diag = jaxmem.DiagonalRNN(jnp.ones(2), jnp.ones(2))
    W, U, b, c = -jnp.eye(2), jnp.ones((2, 1)), jnp.zeros(2), jnp.ones(2)
    with pytest.raises(ValueError, match=r"one input path of shape \(n,\)"):
        diag.predict(jnp.ones((3, 4)), 0.1)
    with pytest.raises(ValueError, match=r"dt must be finite and > 0; got -0.1"):
        diag.predict(jnp.ones(4), -0.1)
    with pytest.raises(ValueError, match=r"dt must be finite and > 0; got 0"):
        jaxmem.ContinuousRNN(W, U, b, c).predict(jnp.ones(4), 0.0)
    with pytest.raises(ValueError, match="dt must be finite and > 0; got nan"):
        jaxmem.DiscreteRNN(W, U, b, c).predict(jnp.ones(4), float("nan"))
    with pytest.raises(ValueError, match="inputs xs must be finite"):
        jaxmem.LinearRNN(W, U, c).predict(jnp.array([0.0, jnp.inf]), 0.1)
    with pytest.raises(ValueError, match=r"xs must have shape \(n, 2\)"):
        jaxmem.LinearRNN(W, jnp.ones((2, 2)), c).predict(jnp.ones(4), 0.1)
    with pytest.raises(ValueError, match="ContinuousRNN W must be finite"):
        jaxmem.ContinuousRNN(W.at[0, 0].set(jnp.nan), U, b, c)
    with pytest.raises(ValueError, match=r"needs W \(m, m\), U \(m, 1\)"):
        jaxmem.DiscreteRNN(W, jnp.ones((2, 2)), b, c)
    with pytest.raises(ValueError, match=r"activation must be one of \['identity', 'tanh'\]; got 'relu'"):
        jaxmem.DiscreteRNN(W, U, b, c, activation="relu")
    with pytest.raises(ValueError, match=r"mask must have shape \(2,\)"):
        jaxmem.ContinuousRNN(W, U, b, c, mask=jnp.ones(3))
    with pytest.raises(ValueError, match="rates w must be finite and > 0"):
        jaxmem.DiscreteDiagonalRNN(jnp.ones(2), jnp.array([1.0, -1.0]), 0.1)
    with pytest.raises(ValueError, match="dt must equal the model's step dt = 0.1; got 0.2"):
        diag.discretize(0.1).predict(jnp.ones(4), 0.2)
    with pytest.raises(ValueError, match="width must be a positive integer"):
        jaxmem.ContinuousRNN.init(jax.random.key(0), 0)
    # under jit the checks are compiled in: an error, never a silent NaN
    with pytest.raises(eqx.EquinoxRuntimeError, match="dt must be finite and > 0"):
        eqx.filter_jit(lambda m, dt: m.predict(jnp.ones(4), dt))(diag, jnp.asarray(-0.1))
    bad = eqx.tree_at(lambda m: m.v, diag, jnp.array([1.0, -1.0]))  # an edited model with a negative rate
    with pytest.raises(eqx.EquinoxRuntimeError, match="rates must be > 0"):
        eqx.filter_jit(lambda m: m.predict(jnp.ones(4), 0.1))(bad)
