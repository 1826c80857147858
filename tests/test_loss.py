"""The white-noise loss against quadrature, its gradients against finite differences, the dense
(Lyapunov) path against the diagonal one, and Monte Carlo convergence."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate as si
import scipy.linalg as sla

import jaxmem

from .helpers import KERNELS, MODELS, central_difference, quad_half_line


def _np_model_kernel(model):
    """ρ̂(t) per input channel in numpy, by an eigendecomposition (independent of jaxmem)."""
    W, U, c = (np.asarray(x) for x in model.dense())
    lam, V = np.linalg.eig(W.T)  # W^T = V diag(lam) V^{-1}
    left = U.T @ V  # (d, m)
    right = np.linalg.solve(V, c)  # (m,)
    return lambda t: np.real(left @ (np.exp(lam * t) * right))


def _reference_loss(model, target_cases):
    """∫ Σ_j (ρ_j - ρ̂_j)² dt by scipy quadrature, with a magnitude scale for tolerances."""
    rho_hat = _np_model_kernel(model)
    total, scale = 0.0, 0.0
    for j, case in enumerate(target_cases):
        pts = sorted({*case.points, 1.0, 10.0, 40.0})
        f = lambda t: case.ref(t) - rho_hat(t)[j]
        total += quad_half_line(lambda t: f(t) ** 2, pts)
        scale += quad_half_line(lambda t: case.ref(t) ** 2, pts) + quad_half_line(
            lambda t: rho_hat(t)[j] ** 2, pts
        )
    return total, scale


_loss = eqx.filter_jit(jaxmem.white_noise_loss)
_value_and_grad = eqx.filter_jit(eqx.filter_value_and_grad(jaxmem.white_noise_loss))

DIAGONAL_TARGETS = [
    "expsum",
    "powerlaw_0.25",
    "powerlaw_2_scale3",
    "bump_0.5",
    "bump_18",
    "bump_100",
    "airy",
    "grid",
    "canonical_sum",
    "mixed",
]


@pytest.mark.parametrize("target", DIAGONAL_TARGETS)
def test_diagonal_loss_matches_quadrature(target):
    case = KERNELS[target]
    model = jaxmem.DiagonalRNN(jnp.array([0.9, -0.4, 0.25, 0.1]), jnp.array([0.05, 0.5, 1.7, 6.0]))
    ref, scale = _reference_loss(model, [case])
    got = float(_loss(model, case.make()))
    # J is a difference of O(scale) terms: the accuracy is relative to those
    assert abs(got - ref) <= 1e-8 * scale, (got, ref, scale)


@pytest.mark.parametrize(
    ("model", "target", "rtol"),
    [
        ("linear_d1", ["expsum"], 1e-8),  # Lyapunov + Sylvester (resolvent) solves: exact
        ("linear_d1", ["canonical_sum"], 1e-8),  # bump cross term by graded quadrature
        ("linear_d1", ["powerlaw_0.25"], 1e-6),
        ("linear_d1", ["airy"], 1e-8),
        ("linear_d2", ["expsum", "bump_0.5"], 1e-8),
        ("linear_d2", ["scaled_powerlaw", "expsum"], 1e-6),
    ],
)
def test_dense_loss_matches_quadrature(model, target, rtol):
    model = MODELS[model]()
    cases = [KERNELS[t] for t in target]
    ref, scale = _reference_loss(model, cases)
    kernels = [c.make() for c in cases]
    got = float(_loss(model, kernels[0] if len(kernels) == 1 else kernels))
    assert abs(got - ref) <= rtol * scale, (got, ref, scale)


def test_lyapunov_matches_scipy():
    W = np.asarray(jaxmem.LinearRNN.init(jax.random.key(5), 6).W)
    Q = np.random.default_rng(0).normal(size=(6, 6))
    Q = Q @ Q.T
    np.testing.assert_allclose(
        jaxmem.lyapunov(jnp.asarray(W), jnp.asarray(Q)),
        sla.solve_continuous_lyapunov(W, -Q),
        rtol=1e-10,
        atol=1e-12,
    )


# --- Gradients --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parameterization", "target"),
    [
        *((p, "canonical_sum") for p in ("identity", "exp", "softplus", "best")),
        ("softplus", "powerlaw_0.25"),
        ("best", "airy"),
        ("exp", "grid"),
    ],
)
def test_diagonal_gradient_matches_finite_differences(parameterization, target):
    kernel = KERNELS[target].make()
    model = jaxmem.DiagonalRNN(
        jnp.array([0.9, -0.4, 0.25]), jnp.array([0.3, 1.1, 4.0]), parameterization=parameterization
    )
    loss, grad = _value_and_grad(model, kernel)
    assert np.isfinite(float(loss))

    def f(x):
        return float(_loss(model.with_params(jnp.asarray(x[:3]), jnp.asarray(x[3:])), kernel))

    fd = central_difference(f, np.concatenate([np.asarray(model.a), np.asarray(model.v)]), eps=1e-6)
    got = np.concatenate([np.asarray(grad.a), np.asarray(grad.v)])
    np.testing.assert_allclose(got, fd, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("target", ["canonical_sum", "bump_100", "powerlaw_1", "grid"])
def test_gradient_matches_diagonal_terms(target):
    # jax.grad through the loss against the closed-form gradient of the diagonal loss
    kernel = KERNELS[target].make()
    a, w = jnp.array([1.0, 0.0, 0.3, -0.2]), jnp.array([0.5, 0.8, 2.0, 4.0])
    model = jaxmem.DiagonalRNN(a, w)
    loss, grad = _value_and_grad(model, kernel)
    J, dJ_da, dJ_dw = eqx.filter_jit(jaxmem.diagonal_terms)(a, w, kernel)
    assert float(loss) == pytest.approx(float(J), rel=1e-13, abs=1e-15)
    np.testing.assert_allclose(grad.a, dJ_da, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(grad.v, dJ_dw, rtol=1e-12, atol=1e-300)  # identity: v = w


def test_plateau_gradient_is_exact():
    # The canonical plateau start: ρ̂ = e^{-t/2} fits the short-memory part exactly, and the
    # bump at lag 18 is felt only through ∂J/∂a_i = -2 ∫ e^{-w_i t} bump(t) dt ~ e^{-18 w_i}.
    # Those values must come out right down to the rounding floor of the cancelling
    # O(1) terms (G a - b0 of e^{-t/2}, ~1e-16): no NaN, no spurious O(1e-8) error.
    kernel = jaxmem.ExpSum([1.0], [0.5]) + jaxmem.GaussianBump(18.0, 0.5)
    a = jnp.zeros(10).at[0].set(1.0)
    w = jnp.geomspace(0.5, 4.0, 10)
    loss, grad = _value_and_grad(jaxmem.DiagonalRNN(a, w), kernel)
    bump = lambda t: math.exp(-((t - 18.0) ** 2) / 0.5)
    pts = [18.0 + 0.5 * k for k in range(-12, 13)]
    assert float(loss) == pytest.approx(quad_half_line(lambda t: bump(t) ** 2, pts), rel=1e-10, abs=0)
    for i in range(10):
        wi = float(w[i])
        ref = -2 * quad_half_line(lambda t: math.exp(-wi * t) * bump(t), pts)
        assert abs(float(grad.a[i]) - ref) <= 1e-8 * abs(ref) + 1e-15, (i, float(grad.a[i]), ref)
    assert abs(float(grad.a[0])) > 1e-4  # the slowest mode feels the bump: e^{-9}
    # ∂J/∂w_i = -2 a_i [(G∘G)a - b1]_i vanishes for the unused modes (a_i = 0) and for mode 0
    # is 2 ∫ t e^{-t/2} bump(t) dt
    ref_w0 = 2 * quad_half_line(lambda t: t * math.exp(-0.5 * t) * bump(t), pts)
    assert float(grad.v[0]) == pytest.approx(ref_w0, rel=1e-8, abs=0)
    assert np.all(np.asarray(grad.v[1:]) == 0.0)


def test_dense_gradient_matches_finite_differences():
    model = MODELS["linear_d1"]()
    kernel = KERNELS["canonical_sum"].make()
    _, grad = _value_and_grad(model, kernel)
    W0, U0, c0 = (np.asarray(x) for x in (model.W, model.U, model.c))
    sizes = [W0.size, U0.size, c0.size]

    def unpack(x):
        W = x[: sizes[0]].reshape(W0.shape)
        U = x[sizes[0] : sizes[0] + sizes[1]].reshape(U0.shape)
        return W, U, x[sizes[0] + sizes[1] :]

    def f(x):
        W, U, c = unpack(x)
        return float(
            _loss(
                eqx.tree_at(
                    lambda m: (m.W, m.U, m.c), model, (jnp.asarray(W), jnp.asarray(U), jnp.asarray(c))
                ),
                kernel,
            )
        )

    fd = central_difference(f, np.concatenate([W0.ravel(), U0.ravel(), c0]), eps=1e-6)
    got = np.concatenate([np.asarray(grad.W).ravel(), np.asarray(grad.U).ravel(), np.asarray(grad.c)])
    np.testing.assert_allclose(got, fd, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("target", ["canonical_sum", "powerlaw_0.25"])
def test_hessian_is_finite_and_matches_finite_differences(target):
    kernel = KERNELS[target].make()
    model = jaxmem.DiagonalRNN(
        jnp.array([0.9, -0.4, 0.25]), jnp.array([0.3, 1.1, 4.0]), parameterization="softplus"
    )

    def J(x):
        return jaxmem.white_noise_loss(model.with_params(x[:3], x[3:]), kernel)

    x0 = jnp.concatenate([model.a, model.v])
    H = np.asarray(jax.jit(jax.hessian(J))(x0))
    assert np.all(np.isfinite(H))
    np.testing.assert_allclose(H, H.T, rtol=1e-10, atol=1e-12)
    grad = jax.jit(jax.grad(J))
    eps = 1e-5
    fd = np.stack(
        [
            (np.asarray(grad(x0.at[i].add(eps))) - np.asarray(grad(x0.at[i].add(-eps)))) / (2 * eps)
            for i in range(6)
        ]
    )
    np.testing.assert_allclose(H, fd, rtol=1e-6, atol=1e-8)


# --- Dense path against diagonal path ---------------------------------------------------------


@pytest.mark.parametrize("target", ["expsum", "canonical_sum", "bump_18", "airy"])
def test_dense_path_agrees_with_diagonal_path(target):
    kernel = KERNELS[target].make()
    a, w = np.array([0.9, -0.4, 0.25]), np.array([0.3, 1.1, 4.0])
    diagonal = jaxmem.DiagonalRNN(a, w)
    # the same kernel Σ a_i e^{-w_i t} from a non-normal W = V diag(-w) V^{-1}
    V = np.array([[1.0, 0.3, -0.2], [0.1, 1.0, 0.5], [-0.4, 0.2, 1.0]])
    W = V @ np.diag(-w) @ np.linalg.inv(V)
    # ρ̂ = U^T e^{W^T t} c with W^T = V^{-T} diag(-w) V^T: choose U = V e, c = V^{-T} a
    U = (V @ np.ones(3))[:, None]
    c = np.linalg.solve(V.T, a)
    dense = jaxmem.LinearRNN(W, U, c)
    t = jnp.linspace(0.0, 10.0, 11)
    np.testing.assert_allclose(dense.kernel(t)[:, 0], diagonal.kernel(t), rtol=1e-11, atol=1e-14)
    assert float(_loss(dense, kernel)) == pytest.approx(float(_loss(diagonal, kernel)), rel=1e-9, abs=1e-12)


# --- Monte Carlo ------------------------------------------------------------------------------


def test_monte_carlo_converges_to_the_exact_loss():
    model = jaxmem.DiagonalRNN(jnp.array([1.0]), jnp.array([1.0]))
    target = jaxmem.ExpSum([1.0], [0.5])
    exact = float(_loss(model, target))
    assert exact == pytest.approx(1 / 6, rel=1e-14, abs=0)  # ∫(e^{-t/2} - e^{-t})² = 1 - 4/3 + 1/2
    # Standard error of the estimator: the output error e_t is a stationary Gaussian process
    # with autocovariance C(τ) = Σ_ij c_i c_j e^{-λ_j τ}/(λ_i + λ_j) (δ = e^{-t/2} - e^{-t}),
    # so the time-average of e_t² over a window T_w has variance (4/T_w) ∫_0^∞ C(τ)² dτ.
    c, lam = np.array([1.0, -1.0]), np.array([0.5, 1.0])
    C = lambda tau: float(
        np.sum(c[:, None] * c[None, :] * np.exp(-lam[None, :] * tau) / (lam[:, None] + lam[None, :]))
    )
    assert C(0.0) == pytest.approx(exact, rel=1e-12, abs=0)
    integral = si.quad(lambda tau: C(tau) ** 2, 0.0, np.inf)[0]
    T = 24.0  # the kernel mass beyond the burn-in T/2 is e^{-12}: negligible
    errors, ses = [], []
    for n_paths, dt in [(16, 0.4), (128, 0.1), (512, 0.025)]:
        ts = jnp.arange(0.0, T + dt / 2, dt)
        estimate = float(jaxmem.monte_carlo_loss(model, target, jax.random.key(0), n_paths, ts))
        errors.append(abs(estimate - exact))
        ses.append(math.sqrt(4 / (T / 2) * integral / n_paths))
    assert errors[0] > errors[1] > errors[2], errors
    assert errors[2] < 3 * ses[2], (errors, ses)


def test_monte_carlo_checks_its_arguments():
    model = jaxmem.DiagonalRNN(jnp.array([1.0]), jnp.array([1.0]))
    target = jaxmem.ExpSum([1.0], [0.5])
    with pytest.raises(ValueError, match="n_paths"):
        jaxmem.monte_carlo_loss(model, target, jax.random.key(0), 0, jnp.linspace(0, 1, 10))
    with pytest.raises(ValueError, match="at least 4"):
        jaxmem.monte_carlo_loss(model, target, jax.random.key(0), 2, jnp.linspace(0, 1, 3))
    with pytest.raises(ValueError, match="d = 2"):
        jaxmem.monte_carlo_loss(MODELS["linear_d2"](), target, jax.random.key(0), 2, jnp.linspace(0, 1, 10))
