"""An independent reference for the gradient flow of the canonical plateau experiment.

Plain numpy/scipy, no jaxmem: the exact white-noise loss of ρ̂ = Σ aᵢ e^{-wᵢt} against
ρ = e^{-t/2} + A e^{-(t-L)²/(2σ²)} (t ≥ 0), its gradient and Hessian in (a, w) written out by
hand from the Laplace moments bₙ(w) = ∫ tⁿ ρ(t) e^{-wt} dt (the bump's in log space with
`scipy.special.log_ndtr`), and the flow dθ/dτ = −∇J(θ) integrated by `scipy.integrate.solve_ivp`
(Radau, analytic Jacobian) with scipy's own `events` for the hitting times.

Moments of the bump, with μ = L − σ²w and C = A e^{-wL + σ²w²/2}:
  b₀ = C σ√(2π) Φ(μ/σ),  b₁ = μ b₀ + Aσ² e^{-L²/(2σ²)},  b₂ = (σ² + μ²) b₀ + μ Aσ² e^{-L²/(2σ²)}.
"""

import numpy as np
import scipy.integrate as si
from scipy.special import log_ndtr

SIGMA = 0.5
AMPLITUDE = 1.0
BASE_RATE = 0.5


def initial_theta(width=10, min_rate=0.5, max_rate=4.0):
    """θ₀ = (a, w) of the canonical model: a = e₁, w = geomspace(0.5, 4, m)."""
    a = np.zeros(width)
    a[0] = 1.0
    w = np.geomspace(min_rate, max_rate, width) if width > 1 else np.full(1, min_rate)
    return np.concatenate([a, w])


def moments(w, lag):
    """(b₀, b₁, b₂) of the target ρ = e^{-t/2} + bump at `lag`, at rates `w`."""
    s, A, L = SIGMA, AMPLITUDE, float(lag)
    mu = L - s * s * w
    b0_bump = A * s * np.sqrt(2 * np.pi) * np.exp(-w * L + 0.5 * (s * w) ** 2 + log_ndtr(mu / s))
    tail = A * s * s * np.exp(-(L * L) / (2 * s * s))
    b1_bump = mu * b0_bump + tail
    b2_bump = (s * s + mu * mu) * b0_bump + mu * tail
    r = 1.0 / (w + BASE_RATE)
    return r + b0_bump, r**2 + b1_bump, 2 * r**3 + b2_bump


def target_sq_norm(lag):
    """‖ρ‖² = 1/(2·0.5) + 2⟨e^{-t/2}, bump⟩ + ‖bump‖²."""
    s, A, L = SIGMA, AMPLITUDE, float(lag)
    cross = moments(np.array([BASE_RATE]), lag)[0][0] - 1.0 / (2 * BASE_RATE)
    bump2 = A * A * s * np.sqrt(np.pi) * np.exp(log_ndtr(np.sqrt(2.0) * L / s))
    return 1.0 / (2 * BASE_RATE) + 2 * cross + bump2


def split(theta):
    m = theta.size // 2
    return theta[:m], theta[m:]


def loss(theta, lag, sq_norm=None):
    a, w = split(theta)
    G = 1.0 / (w[:, None] + w[None, :])
    b0, _, _ = moments(w, lag)
    c = target_sq_norm(lag) if sq_norm is None else sq_norm
    return a @ G @ a - 2 * a @ b0 + c


def grad(theta, lag):
    """∂J/∂a = 2(Ga − b₀), ∂J/∂wᵢ = −2aᵢ[(G∘G)a − b₁]ᵢ."""
    a, w = split(theta)
    G = 1.0 / (w[:, None] + w[None, :])
    b0, b1, _ = moments(w, lag)
    return np.concatenate([2 * (G @ a - b0), -2 * a * ((G * G) @ a - b1)])


def hessian(theta, lag):
    """The Hessian of J in (a, w), by hand (checked against finite differences in the tests):
    H_aa = 2G;  H_aw[i,j] = −2δᵢⱼ[(G∘G)a − b₁]ᵢ − 2G²ᵢⱼaⱼ;
    H_ww[i,j] = 4δᵢⱼaᵢ[(G∘G∘G)a]ᵢ + 4aᵢaⱼG³ᵢⱼ − 2δᵢⱼaᵢb₂ᵢ."""
    a, w = split(theta)
    G = 1.0 / (w[:, None] + w[None, :])
    G2, G3 = G * G, G * G * G
    _, b1, b2 = moments(w, lag)
    Haa = 2 * G
    Haw = -2 * np.diag(G2 @ a - b1) - 2 * G2 * a[None, :]
    Hww = 4 * np.diag(a * (G3 @ a)) + 4 * np.outer(a, a) * G3 - 2 * np.diag(a * b2)
    return np.block([[Haa, Haw], [Haw.T, Hww]])


def reference_flow(lag, *, theta0=None, delta_param=0.05, delta_losses=(0.05, 0.01), t_end=1e5,
                   rtol=1e-11, atol=1e-15, method="Radau", dense_output=False):
    """Integrate dθ/dτ = −∇J(θ) from θ₀ to `t_end` with scipy; return a dict with the first
    crossings `tau_param` and `tau_loss[δ]` (scipy events, NaN where not crossed), the solution
    and the largest loss drop seen on the steps."""
    th0 = initial_theta() if theta0 is None else np.asarray(theta0, float)
    lag = float(lag)
    c = target_sq_norm(lag)
    J0 = loss(th0, lag, c)

    def event(fn):
        fn.terminal = False
        fn.direction = 1.0
        return fn

    events = [event(lambda t, y: np.linalg.norm(y - th0) - delta_param)]
    for d in delta_losses:
        events.append(event(lambda t, y, d=d: (J0 - loss(y, lag, c)) - d))
    sol = si.solve_ivp(
        lambda t, y: -grad(y, lag), (0.0, float(t_end)), th0, method=method, rtol=rtol, atol=atol,
        jac=lambda t, y: -hessian(y, lag), events=events, dense_output=dense_output,
    )
    if sol.status < 0:
        raise RuntimeError(f"reference solve failed at L = {lag}: {sol.message}")
    first = [float(e[0]) if len(e) else float("nan") for e in sol.t_events]
    drops = J0 - np.array([loss(y, lag, c) for y in sol.y.T])
    return dict(
        tau_param=first[0], tau_loss=dict(zip(delta_losses, first[1:])), sol=sol, loss0=J0,
        max_drop=float(drops.max()), sq_norm=c, steps=sol.t.size,
    )
