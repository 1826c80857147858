"""The population risk under white-noise input, exactly, and its Monte Carlo estimate."""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import jax.random as jr
import jax.scipy.signal as jsig
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from ._errors import (
    as_float_array,
    check,
    check_finite,
    is_traced,
    positive_int,
    show,
    warn_if_not_x64,
)
from ._kernels import AbstractKernel, ExpSum, ScaledKernel, SumKernel, laplace_moments
from ._models import AbstractRNN, DiagonalRNN, LinearRNN
from ._quadrature import half_line_rule


def diagonal_terms(a, w, target: AbstractKernel):
    r"""The exact loss of $\hat\rho = \sum_i a_i e^{-w_i t}$ and its gradient in $(a, w)$.

    $J = a^\top G a - 2a^\top b_0(w) + \|\rho\|^2$ with $G_{ij} = 1/(w_i + w_j)$;
    $\partial_a J = 2(Ga - b_0)$ and $\partial_{w_i} J = -2a_i[(G\circ G)a - b_1]_i$.
    O(m²), no quadrature. Returns `(J, dJ/da, dJ/dw)`.
    """
    G = gram(w)
    b0, b1 = laplace_moments(target, w)
    Ga = G @ a
    J = a @ Ga - 2 * a @ b0 + target.sq_norm()
    return J, 2 * (Ga - b0), rate_gradient(a, G, b1)


def gram(w):
    r"""The Gram matrix $G_{ij} = \int_0^\infty e^{-(w_i + w_j)t}dt = 1/(w_i + w_j)$ of the modes."""
    return 1.0 / (w[:, None] + w[None, :])


def rate_gradient(a, G, b1):
    r"""$\partial J/\partial w_i = -2a_i[(G\circ G)a - b_1]_i$, given the Gram matrix and $b_1(w)$."""
    return -2 * a * ((G * G) @ a - b1)


def diagonal_hessian(a, w, target: AbstractKernel):
    r"""The Hessian of `diagonal_terms`' $J$ in $(a, w)$, a $2m \times 2m$ matrix, in closed form:

    $H_{aa} = 2G$, $H_{aw} = -2\,\mathrm{diag}((G^{\circ2})a - b_1) - 2G^{\circ2}\mathrm{diag}(a)$,
    $H_{ww} = 4\,\mathrm{diag}(a \circ (G^{\circ3})a) + 4(aa^\top)\circ G^{\circ3} - 2\,\mathrm{diag}(a \circ b_2)$,

    with $b_2 = -b_1'$ elementwise (one forward-mode derivative of the kernel's `laplace_t`,
    which is elementwise in $w$, instead of a $2m$-column `jacfwd` of the gradient).
    """
    G = gram(w)
    G2 = G * G
    G3 = G2 * G
    b1, db1 = jax.jvp(target.laplace_t, (w,), (jnp.ones_like(w),))
    h_aa = 2 * G
    h_aw = -2 * jnp.diag(G2 @ a - b1) - 2 * G2 * a[None, :]
    h_ww = 4 * jnp.diag(a * (G3 @ a)) + 4 * jnp.outer(a, a) * G3 + 2 * jnp.diag(a * db1)
    return jnp.block([[h_aa, h_aw], [h_aw.T, h_ww]])


# -- the objective of training, in the stored parameters (a, v) of a DiagonalRNN ----------------


def loss_and_grad(model: DiagonalRNN, target: AbstractKernel, a, v):
    """Exact loss and gradient in the stored parameters `(a, v)` (O(m²), closed forms)."""
    active = model.active
    w = jnp.where(active, model.parameterization(v), 1.0)
    J, ga, gw = diagonal_terms(jnp.where(active, a, 0.0), w, target)
    dw_dv = jax.vmap(jax.grad(model.parameterization))(v)
    return J, jnp.where(active, ga, 0.0), jnp.where(active, gw * dw_dv, 0.0)


# -- the gradient without cancellation: residual moments in double-double arithmetic ------------
#
# On a plateau the model fits the target's exponential part to ~e^{-wL}: each entry of
# Ga − b₀ subtracts nearly equal O(1) numbers, and its float64 rounding (~1e-16, not smooth in
# θ) is larger than the gradient of the slow directions past L ≈ 44. An implicit step of size h
# amplifies it to ~h·1e-16 in the soft directions of the Hessian, which caps the step size at
# ~1e5 whatever τ is. Summing the moments of model and target exponentials together in
# double-double arithmetic (Dekker; ~1e-32 relative per term) leaves the gradient's own size.


def _two_sum(a, b):
    """a + b = s + e exactly (Knuth)."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def _split(a):
    c = 134217729.0 * a  # 2^27 + 1
    hi = c - (c - a)
    return hi, a - hi


def _two_prod(a, b):
    """a·b = p + e exactly (Dekker, no fused multiply-add needed)."""
    p = a * b
    ah, al = _split(a)
    bh, bl = _split(b)
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


def _dd_div(xh, xl, yh, yl):
    """(xh + xl)/(yh + yl) as a double-double (one correction step)."""
    q = xh / yh
    p, pe = _two_prod(q, yh)
    r = (((xh - p) - pe) + xl) - q * yl
    return _two_sum(q, r / yh)


def _split_exponentials(kernel: AbstractKernel):
    """The kernel as (β, λ, rest): an exponential sum Σβ_k e^{-λ_k t} plus the other terms."""
    if isinstance(kernel, ExpSum):
        return [kernel.coeffs], [kernel.rates], []
    if isinstance(kernel, ScaledKernel):
        beta, lam, rest = _split_exponentials(kernel.kernel)
        return [kernel.factor * b for b in beta], lam, [ScaledKernel(kernel.factor, k) for k in rest]
    if isinstance(kernel, SumKernel):
        parts = [_split_exponentials(k) for k in kernel.terms]
        return [b for p in parts for b in p[0]], [r for p in parts for r in p[1]], [k for p in parts for k in p[2]]
    return [], [], [kernel]


def residual_moments(a, w, target: AbstractKernel):
    r"""The Laplace moments of the residual $\hatho - ho$ at the model's rates,
    $R_0 = Ga - b_0(w)$ and $R_1 = (G\circ G)a - b_1(w)$, with the model's exponentials and
    the target's exponential part summed in double-double arithmetic, so that a model that fits
    the target's exponentials to $10^{-12}$ still has its residual to full relative precision
    (the float64 form subtracts O(1) numbers: an absolute error of ~1e-16). The gradient is
    $\partial_a J = 2R_0$, $\partial_{w_i} J = -2a_iR_{1,i}$. Returns `(R0, R1)`.
    """
    beta, lam, rest = _split_exponentials(target)
    c = jnp.concatenate([a] + [-b for b in beta])
    r = jnp.concatenate([w] + list(lam))

    def add(carry, term):
        (h0, l0, h1, l1), (cn, rn) = carry, term
        sh, sl = _two_sum(rn, w)
        q0h, q0l = _dd_div(cn, jnp.zeros_like(sh), sh, sl)
        q1h, q1l = _dd_div(q0h, q0l, sh, sl)
        h0, e0 = _two_sum(h0, q0h)
        h1, e1 = _two_sum(h1, q1h)
        return (h0, l0 + (e0 + q0l), h1, l1 + (e1 + q1l)), None

    zero = jnp.zeros_like(w)
    (h0, l0, h1, l1), _ = jax.lax.scan(add, (zero, zero, zero, zero), (c, r))
    if rest:
        b0, b1 = laplace_moments(rest[0] if len(rest) == 1 else SumKernel(rest), w)
        h0, e0 = _two_sum(h0, -b0)
        h1, e1 = _two_sum(h1, -b1)
        l0, l1 = l0 + e0, l1 + e1
    return h0 + l0, h1 + l1


def precise_grad(model: DiagonalRNN, target: AbstractKernel, a, v):
    """The gradient of the exact loss in the stored parameters `(a, v)`, as `loss_and_grad`'s,
    with the residual moments of `residual_moments` (no cancellation): what the gradient flow
    follows. Returns `(dJ/da, dJ/dv)`."""
    active = model.active
    w = jnp.where(active, model.parameterization(v), 1.0)
    a_eff = jnp.where(active, a, 0.0)
    r0, r1 = residual_moments(a_eff, w, target)
    dw_dv = jax.vmap(jax.grad(model.parameterization))(v)
    return jnp.where(active, 2 * r0, 0.0), jnp.where(active, -2 * a_eff * r1 * dw_dv, 0.0)


def loss_hessian(model: DiagonalRNN, target: AbstractKernel, a, v):
    """The Hessian of the exact loss in the stored parameters `(a, v)`, a 2m × 2m matrix (the
    Jacobian of `loss_and_grad`'s gradient; rows and columns of masked modes are zero)."""
    active = model.active
    p = model.parameterization
    w = jnp.where(active, p(v), 1.0)
    a_eff = jnp.where(active, a, 0.0)
    _, _, gw = diagonal_terms(a_eff, w, target)
    h = diagonal_hessian(a_eff, w, target)
    dw, d2w = jax.vmap(jax.value_and_grad(jax.grad(p)))(v)
    m = a.shape[0]
    # Chain rule through w = p(v): scale the w rows/columns by p'(v), add gw p''(v) on the
    # v-v diagonal.
    scale = jnp.concatenate([jnp.ones_like(dw), dw])
    h = h * scale[:, None] * scale[None, :]
    h = h.at[m:, m:].add(jnp.diag(gw * d2w))
    keep = jnp.concatenate([active, active])
    return jnp.where(keep[:, None] & keep[None, :], h, 0.0)


def param_distance(model: DiagonalRNN, a, v, a0, w0):
    """‖(a, w) − (a₀, w₀)‖₂ over the active modes, in rates whatever the parameterization."""
    w = model.parameterization(v)
    d = jnp.where(model.active, (a - a0) ** 2 + (w - w0) ** 2, 0.0)
    return jnp.sqrt(jnp.sum(d))


def white_noise_loss(model: AbstractRNN, target, *, quadrature_nodes: int = 20) -> Float[Array, ""]:
    r"""The population risk under white-noise input, $J = \int_0^\infty|\rho(t) - \hat\rho(t)|^2dt$.

    By the Itô isometry this is $E|H_t(x) - \hat H_t(x)|^2$ for $x$ white noise. Computed
    exactly, without simulation:

    - `DiagonalRNN`: $a^\top Ga - 2a^\top b_0(w) + \|\rho\|^2$ from the target's Laplace
      moments, O(m²); `jax.grad` uses $b_0' = -b_1$ in closed form.
    - `LinearRNN`: $\int\hat\rho^2 = c^\top Pc$ with $WP + PW^\top + UU^\top = 0$ (Lyapunov,
      solved as a Kronecker system, O(m⁶): fine up to m ≈ 40); the cross term with an
      exponential sum by resolvent solves $u^\top(\lambda I - W^\top)^{-1}c$ (the Sylvester
      form); with any other kernel by graded Gauss-Legendre quadrature of $\rho\hat\rho$.

    **Arguments:**

    - `model`: a `DiagonalRNN` or `LinearRNN`.
    - `target`: a kernel, or for a `LinearRNN` with d inputs a sequence of d kernels.

    **Returns:** the scalar loss.

    ```python
    import jax, jax.numpy as jnp, jaxmem
    jax.config.update("jax_enable_x64", True)
    target = jaxmem.ExpSum([1.0], [0.5]) + jaxmem.GaussianBump(18.0, 0.5)
    model = jaxmem.DiagonalRNN(jnp.array([1.0, 0.0]), jnp.array([0.5, 1.0]))
    jaxmem.white_noise_loss(model, target)          # = ||bump||^2 - 2<bump, e^{-t/2}>
    jax.grad(jaxmem.white_noise_loss)(model, target)
    ```
    """
    warn_if_not_x64("white_noise_loss")
    if isinstance(model, DiagonalRNN):
        target = _single_target(target)
        w = jnp.where(model.active, model.rates, 1.0)
        w = check(w, ~(w > 0), f"DiagonalRNN rates must be > 0; got {show(w)}.")
        a = check_finite(model.coeffs, "DiagonalRNN coefficients a")
        b0, _ = laplace_moments(target, w)
        G = gram(w)
        return a @ (G @ a) - 2 * a @ b0 + target.sq_norm()
    if isinstance(model, LinearRNN):
        return _dense_loss(model, target, quadrature_nodes)
    raise TypeError(f"white_noise_loss needs a DiagonalRNN or LinearRNN; got {type(model).__name__}.")


def _single_target(target):
    if isinstance(target, AbstractKernel):
        return target
    if isinstance(target, Sequence) and len(target) == 1 and isinstance(target[0], AbstractKernel):
        return target[0]
    raise TypeError(f"the target must be a kernel (jaxmem.ExpSum, PowerLaw, ...); got {target!r}.")


def lyapunov(W, Q):
    """Solve `W P + P W^T + Q = 0` (Kronecker form; W Hurwitz)."""
    m = W.shape[0]
    eye = jnp.eye(m, dtype=W.dtype)
    K = jnp.kron(eye, W) + jnp.kron(W, eye)
    return jnp.linalg.solve(K, -Q.reshape(-1)).reshape(m, m)


def _exp_terms(kernel):
    """(coeffs, rates) if the kernel is an exponential sum (possibly scaled/summed), else None."""
    if isinstance(kernel, ExpSum):
        return kernel.coeffs, kernel.rates
    if isinstance(kernel, ScaledKernel):
        inner = _exp_terms(kernel.kernel)
        return None if inner is None else (kernel.factor * inner[0], inner[1])
    if isinstance(kernel, SumKernel):
        parts = [_exp_terms(k) for k in kernel.terms]
        if any(p is None for p in parts):
            return None
        return jnp.concatenate([p[0] for p in parts]), jnp.concatenate([p[1] for p in parts])
    return None


def _dense_loss(model: LinearRNN, target, quadrature_nodes):
    W, U, c = model.dense()
    W = check(W, ~model.is_stable(), "LinearRNN W must be Hurwitz (eigenvalues with real part < 0).")
    d = U.shape[1]
    targets = (target,) if isinstance(target, AbstractKernel) else tuple(target)
    if len(targets) != d or not all(isinstance(k, AbstractKernel) for k in targets):
        raise ValueError(f"a LinearRNN with d = {d} inputs needs d target kernels; got {target!r}.")
    P = lyapunov(W, U @ U.T)
    total = c @ P @ c
    eye = jnp.eye(W.shape[0], dtype=W.dtype)
    for j, kernel in enumerate(targets):
        terms = _exp_terms(kernel)
        if terms is not None:
            beta, lam = terms
            # int e^{-lam t} u^T e^{W^T t} c dt = u^T (lam I - W^T)^{-1} c
            sol = jax.vmap(lambda l: jnp.linalg.solve(l * eye - W.T, c))(lam)
            cross = jnp.sum(beta * (sol @ U[:, j]))
        else:
            decay = -jnp.max(jnp.real(jnp.linalg.eigvals(W)))
            cut = 60.0 / decay  # the model's kernel is < e^{-60} of its size past this
            horizon = jnp.maximum(kernel.horizon(), cut / 40.0)
            t, wq = half_line_rule(horizon, quadrature_nodes)
            model_vals = model.kernel(jnp.minimum(t, cut))[:, j]
            cross = jnp.sum(wq * kernel(t) * jnp.where(t < cut, model_vals, 0.0))
        total = total - 2 * cross + kernel.sq_norm()
    return total


def _check_uniform_grid(ts):
    """`ts`, which must be finite, strictly increasing and uniformly spaced (the simulation
    uses dt = ts[1] - ts[0] for every step): up to rounding, as from `jnp.linspace`."""
    if is_traced(ts):
        d = jnp.diff(ts)
        bad = ~jnp.all(jnp.isfinite(ts)) | jnp.any(d <= 0)
        return check(ts, bad, "ts must be finite and strictly increasing; got a traced value.")
    arr = np.asarray(ts)
    d = np.diff(arr)
    if not np.all(np.isfinite(arr)):
        i = int(np.argmin(np.isfinite(arr)))
        raise ValueError(f"ts must be finite; ts[{i}] = {arr[i]} (ts = {show(arr)}).")
    if not np.all(d > 0):
        i = int(np.argmin(d > 0))
        raise ValueError(f"ts must be strictly increasing; ts[{i + 1}] = {arr[i + 1]:.6g} follows "
                         f"ts[{i}] = {arr[i]:.6g} (ts = {show(arr)}).")
    # The rounding of t = t0 + k dt in the grid's precision, relative to dt.
    tol = 1e-6 * d[0] + 8 * np.finfo(arr.dtype).eps * np.max(np.abs(arr))
    if np.max(np.abs(d - d[0])) > tol:
        raise ValueError(
            f"ts must be a uniform grid (dt = ts[1] - ts[0] = {d[0]:.6g} is used for every step); its "
            f"spacings range from {d.min():.6g} to {d.max():.6g}."
        )
    return ts


def monte_carlo_loss(
    model: AbstractRNN, target: AbstractKernel, key: PRNGKeyArray, n_paths: int, ts
) -> Float[Array, ""]:
    r"""Monte Carlo estimate of the white-noise risk by simulation.

    Draws `n_paths` white-noise input paths on the uniform grid `ts` (samples
    $\xi_k/\sqrt{\Delta t}$, linearly interpolated), pushes each through the model's hidden-state
    ODE (`model(ts, xs)`, Diffrax) and through the target's convolution (trapezoid rule on the
    grid), and averages the squared output error over the paths and over the second half of
    the grid (after a burn-in of half the window, so the start from $h = 0$ is forgotten). It
    converges to `white_noise_loss` as `n_paths` grows and $\Delta t \to 0$ (bias $O(\Delta t)$,
    plus the kernel mass beyond half the window).

    ```python
    import jax, jax.numpy as jnp, jaxmem
    jax.config.update("jax_enable_x64", True)
    model = jaxmem.DiagonalRNN(jnp.array([1.0]), jnp.array([1.0]))
    target = jaxmem.ExpSum([1.0], [0.5])
    ts = jnp.linspace(0.0, 40.0, 2001)
    jaxmem.monte_carlo_loss(model, target, jax.random.key(0), 256, ts)  # ~ 1/6
    ```
    """
    try:
        ts = jnp.asarray(ts)
    except (TypeError, ValueError) as e:
        raise TypeError(f"ts must be an array of times; got {ts!r}.") from e
    if not jnp.issubdtype(ts.dtype, jnp.floating):
        ts = as_float_array(ts, "ts")  # an integer grid: in the default float dtype
    if ts.ndim != 1 or ts.shape[0] < 4:
        raise ValueError(f"ts must be a 1-D grid of at least 4 times; got shape {ts.shape}.")
    ts = _check_uniform_grid(ts)
    positive_int(n_paths, "n_paths")
    d = model.dense()[1].shape[1]
    if d != 1:
        raise ValueError(f"monte_carlo_loss supports single-input models; this one has d = {d}.")
    dt = ts[1] - ts[0]
    n = ts.shape[0]
    xs = jr.normal(key, (n_paths, n), dtype=ts.dtype) / jnp.sqrt(dt)
    y_model = jax.vmap(lambda x: model(ts, x))(xs)
    lags = ts - ts[0]
    weights = dt * target(lags)
    weights = weights.at[0].multiply(0.5)
    y_target = jax.vmap(lambda x: jsig.fftconvolve(x, weights)[:n])(xs)
    start = n // 2
    return jnp.mean((y_model[:, start:] - y_target[:, start:]) ** 2)
