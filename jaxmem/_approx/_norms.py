"""Error norms of a fitted exponential sum against a kernel: stable L² and L¹ over [0, ∞)."""

import functools

import jax.numpy as jnp

from .._kernels import AbstractKernel, PowerLaw, ScaledKernel
from .._quadrature import gauss_legendre, half_line_rule

# Panels of the residual rule: 0, then geometric panels from t_lo to T, n Gauss points each.
_PANELS = 240
_NODES = 16


@functools.cache
def _gauss(n):
    """Gauss-Legendre nodes and weights on [0, 1]."""
    x, w = gauss_legendre(n)
    return (x + 1) / 2, w / 2


def residual_rule(t_lo, T):
    """Nodes and weights on [0, T]: one panel [0, t_lo], then geometric panels up to T."""
    x, wx = _gauss(_NODES)
    frac = jnp.linspace(0.0, 1.0, _PANELS + 1)
    breaks = jnp.concatenate([jnp.zeros(1), t_lo * (T / t_lo) ** frac])
    lo, hi = breaks[:-1, None], breaks[1:, None]
    t = lo + (hi - lo) * jnp.asarray(x)
    w = (hi - lo) * jnp.asarray(wx)
    return t.reshape(-1), w.reshape(-1)


def tail_integral(kernel: AbstractKernel, T, p: int):
    r"""$\int_T^\infty |\rho(t)|^p\,dt$: closed form for (scaled) power laws, else quadrature."""
    if isinstance(kernel, ScaledKernel):
        return jnp.abs(kernel.factor) ** p * tail_integral(kernel.kernel, T, p)
    if isinstance(kernel, PowerLaw):
        s, q = kernel.scale, (1.0 + kernel.omega) * p
        return s * (1.0 + T / s) ** (1.0 - q) / (q - 1.0)
    u, wu = half_line_rule(kernel.horizon())
    return jnp.sum(wu * jnp.abs(kernel(T + u)) ** p)


def _model_values(a, w, t):
    return jnp.sum(a * jnp.exp(-w * t[:, None]), axis=-1)


def _reach(a, w, on, kernel):
    """A time T past which the model is < 1e-20 of its coefficients (and the kernel's bulk)."""
    w_min = jnp.min(jnp.where(on, w, jnp.inf))
    big = jnp.log1p(jnp.sum(jnp.abs(a)))
    T = (46.0 + big) / w_min
    w_max = jnp.max(jnp.where(on, w, 0.0))
    H = kernel.horizon()
    t_lo = 1e-4 * jnp.minimum(1.0 / w_max, H / 50.0)
    return t_lo, jnp.maximum(T, 2.0 * H)


def residual_norm(kernel, a, w, on, p: int):
    r"""$\int_0^\infty|\rho - \hat\rho|^p\,dt$ by graded Gauss-Legendre panels, tail included.

    On $[T, \infty)$ the model is below $10^{-20}$ of its coefficients, so the tail is the
    kernel's own (closed form for power laws). For $p = 1$ the kinks of $|\rho - \hat\rho|$ at
    its sign changes limit the relative accuracy to about 1e-6.
    """
    a = jnp.where(on, a, 0.0)
    w = jnp.where(on, w, 1.0)
    t_lo, T = _reach(a, w, on, kernel)
    t, wq = residual_rule(t_lo, T)
    r = kernel(t) - _model_values(a, w, t)
    return jnp.sum(wq * jnp.abs(r) ** p) + tail_integral(kernel, T, p)


def lstsq_residual(kernel, w, on, rcond=1e-13):
    r"""Best coefficients for fixed rates and the squared L² error, from an orthogonal basis.

    The weighted collocation matrix $A_{qi} = \sqrt{\omega_q}e^{-w_it_q}$ of the residual rule has
    condition number $\sqrt{\kappa(G)}$ (the Cauchy Gram squared it), so its SVD with a relative
    cutoff resolves Gram condition numbers up to ~1e26, and the residual $y - U_rU_r^\top y$ is
    formed directly: no $\|\rho\|^2 - b^\top G^+b$ cancellation; the error is accurate to the
    floor of `attainable_floor` even when the coefficients are not unique (minimum-norm ones).
    """
    wv = jnp.where(on, w, 1.0)
    w_min = jnp.min(jnp.where(on, wv, jnp.inf))
    w_max = jnp.max(jnp.where(on, wv, 0.0))
    H = kernel.horizon()
    t_lo = 1e-4 * jnp.minimum(1.0 / w_max, H / 50.0)
    T = jnp.maximum(60.0 / w_min, 2.0 * H)
    t, wq = residual_rule(t_lo, T)
    sq = jnp.sqrt(wq)
    A = jnp.where(on, sq[:, None] * jnp.exp(-wv * t[:, None]), 0.0)
    y = sq * kernel(t)
    U, s, Vt = jnp.linalg.svd(A, full_matrices=False)
    keep = s > rcond * s[0]
    p = U.T @ y
    z = jnp.where(keep, p / jnp.where(keep, s, 1.0), 0.0)
    a = jnp.where(on, Vt.T @ z, 0.0)
    r = y - U @ jnp.where(keep, p, 0.0)
    return a, r @ r + tail_integral(kernel, T, 2)


def attainable_floor(a, w, on, c):
    r"""Relative L² error below which the reported value is noise: pointwise cancellation in
    $\rho - \sum_i a_i e^{-w_it}$ costs $\epsilon\,\|\sum_i |a_i| e^{-w_i t}\|$."""
    eps = jnp.finfo(jnp.result_type(float)).eps
    terms = jnp.sqrt(jnp.sum(jnp.where(on, a**2 / (2 * jnp.where(on, w, 1.0)), 0.0)) * jnp.sum(on, dtype=a.dtype))
    return 100 * eps * (1.0 + terms / jnp.sqrt(c))
