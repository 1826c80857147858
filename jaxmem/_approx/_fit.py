"""Best width-m approximation of a memory kernel by a diagonal linear RNN ."""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optimistix as optx
from jaxtyping import Array, Float

from .._errors import warn_if_not_x64
from .._kernels import AbstractKernel
from .._loss import rate_gradient
from .._models import DiagonalRNN
from .._results import RESULTS
from ._norms import attainable_floor, lstsq_residual, residual_norm

NORMS = ("L2", "L1")
RATE_GRIDS = ("universal", "jackson")
_RCOND = 1e-13  # eigenvalues of the scaled Gram below this fraction of the largest are dropped


class Approximation(eqx.Module):
    """The best width-m approximation found, with its error and how it was obtained.

    - `model`: the fitted `DiagonalRNN` (masked modes, if any, have `a = 0`).
    - `error`, `relative_error`: the distance to the target in `norm` ("L2": the white-noise
      risk's square root; "L1": the operator norm of the error functional), absolute and
      divided by the target's norm.
    - `noise_floor`: the relative L² error below which values are rounding noise.
    - `result`: a `jaxmem.RESULTS`: `successful`, `max_steps_reached` or `not_converged` (the
      free-rate search stopped early), `nonfinite`.
    - `norm`, `rates_mode`: the norm reported and how the rates were chosen (`"free"`,
      `"fixed"`, `"universal"`, `"jackson"`).
    """

    model: DiagonalRNN
    error: Float[Array, ""]
    relative_error: Float[Array, ""]
    noise_floor: Float[Array, ""]
    result: RESULTS
    norm: str = eqx.field(static=True)
    rates_mode: str = eqx.field(static=True)


# -- the exact projection onto span{e^{-w_i t}} -------------------------------------------------


def _project(target, w, on, c):
    r"""Coefficients and squared error of the L² projection of `target` on the active modes.

    Works with the unit-diagonal Gram $S = DGD$, $D = \mathrm{diag}(\sqrt{2w})$,
    $S_{ij} = 2\sqrt{w_iw_j}/(w_i + w_j) \le 1$, through its eigendecomposition with a relative
    cutoff: a pseudo-inverse that never forms $G^{-1}$, so coincident or clustered rates give the
    minimum-norm coefficients and an accurate error instead of NaN.
    """
    wv = jnp.where(on, w, 1.0)
    d = jnp.sqrt(2.0 * wv)
    pair = on[:, None] & on[None, :]
    S = jnp.where(pair, d[:, None] * d[None, :] / (wv[:, None] + wv[None, :]), jnp.eye(w.shape[0]))
    bh = jnp.where(on, d * target.laplace(wv), 0.0)
    S = jnp.where(jnp.isfinite(S), S, 0.0)
    bh = jnp.where(jnp.isfinite(bh), bh, 0.0)
    lam, V = jnp.linalg.eigh(S)
    keep = lam > _RCOND * lam[-1]
    p = V.T @ bh
    z = jnp.where(keep, p / jnp.where(keep, lam, 1.0), 0.0)
    J = c - jnp.sum(p * z)
    a = jnp.where(on, d * (V @ z), 0.0)
    return a, J


@jax.custom_jvp
def _varpro(w, target, on, c):
    """The variable-projection functional J(w) = min_a ||rho - sum a_i e^{-w_i t}||²."""
    return _project(target, w, on, c)[1]


@_varpro.defjvp
def _varpro_jvp(primals, tangents):
    # Golub-Pereyra: dJ/dw at the optimal a equals the partial derivative, -2a_i[(G∘G)a - b1]_i
    # (the closed form of the loss gradient); no differentiation through the eigendecomposition.
    w, target, on, c = primals
    dw = tangents[0]
    a, J = _project(target, w, on, c)
    wv = jnp.where(on, w, 1.0)
    G = jnp.where(on[:, None] & on[None, :], 1.0 / (wv[:, None] + wv[None, :]), 0.0)
    b1 = jnp.where(on, target.laplace_t(wv), 0.0)
    grad = rate_gradient(a, G, b1)
    return J, jnp.sum(jnp.where(on, grad * dw, 0.0))


# -- free rates: variable projection over log w ------------------------------------------------


def _to_rates(u, lo, hi, bounded: bool, u_lo=-40.0, u_hi=25.0):
    # The clip keeps a wild BFGS step from producing rates of 1e30 (NaN Gram entries, on which
    # LAPACK's eigh may not return) and useless modes from escaping to 0 or infinity.
    u = jnp.clip(u, u_lo, u_hi)
    return lo + (hi - lo) * jax.nn.sigmoid(u) if bounded else lo + jnp.exp(u)


def _from_rates(w, lo, hi, bounded: bool):
    if bounded:
        x = jnp.clip((w - lo) / (hi - lo), 1e-9, 1 - 1e-9)
        return jnp.log(x) - jnp.log1p(-x)
    return jnp.log(jnp.maximum(w - lo, 1e-9 * jnp.maximum(w, 1.0)))


def _fit_free(target, w_starts, on, lo, hi, *, bounded, max_steps, rtol):
    """Best of several BFGS runs on log J(w(u)); returns (w, a, J, result). vmappable."""
    c = target.sq_norm()
    # Free rates stay within [1e-4, 1e5] / horizon of the target (beyond it a mode is useless).
    H = target.horizon()
    u_lo, u_hi = (-40.0, 40.0) if bounded else (jnp.log(1e-4 / H), jnp.log(1e5 / H))
    to_rates = lambda u: _to_rates(u, lo, hi, bounded, u_lo, u_hi)

    def objective(u, _):
        J = _varpro(to_rates(u), target, on, c)
        # Values below the closed form's cancellation floor (~1e-14 c) are noise: flat there.
        return jnp.log(jnp.maximum(J, 0.0) / c + 1e-14)

    def one(w0):
        u0 = _from_rates(w0, lo, hi, bounded)
        sol = optx.minimise(objective, optx.BFGS(rtol=rtol, atol=rtol), u0, max_steps=max_steps, throw=False)
        w = to_rates(sol.value)
        a, J = _project(target, w, on, c)
        stopped = RESULTS.where(sol.result == optx.RESULTS.max_steps_reached, RESULTS.max_steps_reached,
                                RESULTS.not_converged)
        result = RESULTS.where(sol.result == optx.RESULTS.successful, RESULTS.successful, stopped)
        result = RESULTS.where(jnp.isfinite(J) & jnp.all(jnp.isfinite(a)), result, RESULTS.nonfinite)
        return w, a, J, result

    w, a, J, result = jax.vmap(one)(w_starts)
    best = jnp.argmin(jnp.where(jnp.isfinite(J), J, jnp.inf))
    # Re-solve the coefficients at the best rates in the orthogonal basis (accurate error).
    a, J = lstsq_residual(target, w[best], on)
    return w[best], a, J, jax.tree_util.tree_map(lambda x: x[best], result)


def _errors(target, w, a, on, J, norm: str):
    """(error, relative error, floor) of the model (w, a); `J` is the squared L² error of the
    same model from `lstsq_residual` (integrated directly, so free of cancellation)."""
    c = target.sq_norm()
    floor = attainable_floor(a, w, on, c)
    if norm == "L2":
        err = jnp.sqrt(jnp.maximum(J, 0.0))
        return err, err / jnp.sqrt(c), floor
    err = residual_norm(target, a, w, on, 1)
    return err, err / target.l1_norm(), floor


def start_rates(key, width, n_starts, lo, hi, horizon, *, scale=1.0):
    """Initial rates, shape `(n_starts, width)`: the universal grid j·scale (start 0), a
    geometric grid (start 1), then log-uniform random draws, all inside (lo, hi)."""
    top = width * 50.0 / horizon
    bottom = 0.2 / horizon
    w_lo = np.maximum(bottom, lo * 1.05 + 1e-12)
    w_hi = np.minimum(np.maximum(top, 4 * w_lo), hi * 0.95 if np.isfinite(hi) else np.inf)
    grid = scale * np.arange(1, width + 1)
    grid = np.clip(grid, lo + 1e-6 * scale, hi - 1e-6 * scale if np.isfinite(hi) else np.inf)
    geo = np.geomspace(w_lo, w_hi, width)
    rnd = np.exp(np.asarray(jr.uniform(key, (max(n_starts - 2, 0), width), minval=np.log(w_lo), maxval=np.log(w_hi))))
    starts = np.concatenate([grid[None], geo[None], np.sort(rnd, axis=-1)])[:n_starts]
    return jnp.asarray(starts)


def check_args(width, norm, min_rate, max_rate):
    if not isinstance(width, (int, np.integer)) or width < 1:
        raise ValueError(f"width must be a positive integer; got {width!r}.")
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}; got {norm!r}.")
    lo = 0.0 if min_rate is None else float(min_rate)
    hi = np.inf if max_rate is None else float(max_rate)
    if not (np.isfinite(lo) and lo >= 0):
        raise ValueError(f"min_rate must be a finite number >= 0; got {min_rate!r}.")
    if not hi > lo:
        raise ValueError(f"need min_rate < max_rate; got min_rate={min_rate!r}, max_rate={max_rate!r}.")
    return lo, hi


def named_rates(name, width, *, scale=1.0, alpha=1.0, beta=None):
    r"""The proofs' fixed rate grids: `"universal"` $\lambda_j = j\cdot$`scale`, `"jackson"`
    $\lambda_j = j\beta/(\alpha + 1)$ (JMLR Thm 9's substitution $s = e^{-\beta t/(\alpha+1)}$)."""
    j = np.arange(1, width + 1, dtype=np.float64)
    if name == "universal":
        return jnp.asarray(scale * j)
    if name == "jackson":
        if beta is None or not beta > 0 or not alpha >= 0:
            raise ValueError(f'rates="jackson" needs beta > 0 and alpha >= 0; got beta={beta!r}, alpha={alpha!r}.')
        return jnp.asarray(j * beta / (alpha + 1.0))
    raise ValueError(f"unknown rates name {name!r}; expected one of {RATE_GRIDS} or an array of rates.")


def best_approximation(
    target: AbstractKernel,
    width: int,
    *,
    rates=None,
    min_rate=None,
    max_rate=None,
    norm: str = "L2",
    n_starts: int = 8,
    key=None,
    scale: float = 1.0,
    alpha: float = 1.0,
    beta=None,
    max_steps: int = 400,
    rtol: float = 1e-9,
) -> Approximation:
    r"""The best approximation of `target` by a width-`width` diagonal linear RNN
    $\hat\rho = \sum_i a_i e^{-w_i t}$, in the white-noise ($L^2$) sense.

    - Fixed rates (`rates` an array, or `"universal"` / `"jackson"`, see `named_rates`): the
      coefficients solve the linear least-squares problem $\min_a a^\top Ga - 2a^\top b_0 +
      \|\rho\|^2$ exactly, through an eigendecomposition of the unit-diagonal Gram with a
      relative cutoff (never $G^{-1}$); accurate to width 64 in float64.
    - Free rates (`rates=None`): variable projection: the coefficients are eliminated exactly and
      BFGS (optimistix) minimises $\log J(w)$ over $w = $ `min_rate` $+ e^u$ (or a sigmoid
      between `min_rate` and `max_rate`), from `n_starts` starts (the universal grid, a geometric
      grid, random draws); the best is kept. `min_rate` is the uniform stability margin of
      JMLR Thm 11: with it, polynomial memory needs exponentially large widths.

    The fit always minimises the $L^2$ error; `norm="L1"` reports the $L^1$ distance over
    $[0, \infty)$ of that fit (an upper bound on the best $L^1$ error). $L^2$ errors come from the
    BFGS objective's closed form; the reported coefficients and error come from a final solve in
    an orthogonal basis (SVD of the collocation matrix on graded Gauss panels, relative accuracy
    ~1e-12), which stays accurate where $\|\rho\|^2 - b^\top G^+b$ has lost its digits (the
    objective's own floor is a relative error ~1e-7; the reported one's is `noise_floor`).

    **Returns:** an `Approximation`.

    ```python
    import jax, jaxmem
    jax.config.update("jax_enable_x64", True)
    fit = jaxmem.best_approximation(jaxmem.PowerLaw(1.0), 4, min_rate=0.1)
    fit.relative_error, fit.model.rates, fit.result
    ```
    """
    warn_if_not_x64("best_approximation")
    lo, hi = check_args(width, norm, min_rate, max_rate)
    if not isinstance(target, AbstractKernel):
        raise TypeError(f"target must be a jaxmem kernel; got {target!r}.")
    on = jnp.ones(width, dtype=bool)
    if rates is None:
        if not (isinstance(n_starts, (int, np.integer)) and n_starts >= 1):
            raise ValueError(f"n_starts must be a positive integer; got {n_starts!r}.")
        key = jr.key(0) if key is None else key
        starts = start_rates(key, width, n_starts, lo, hi, float(target.horizon()), scale=scale)
        w, a, J, result = _fit_free_jit(target, starts, on, lo, hi, bool(np.isfinite(hi)), max_steps, rtol)
        mode = "free"
    else:
        if isinstance(rates, str):
            w, mode = named_rates(rates, width, scale=scale, alpha=alpha, beta=beta), rates
        else:
            w, mode = jnp.asarray(rates, dtype=jnp.result_type(float)), "fixed"
            if w.shape != (width,):
                raise ValueError(f"rates must have shape ({width},) for width {width}; got {w.shape}.")
        wn = np.asarray(w)
        if not (np.all(wn >= lo) and np.all(wn <= hi)):
            raise ValueError(f"fixed rates must lie in [min_rate, max_rate] = [{lo}, {hi}]; got {wn}.")
        a, J = _lstsq_jit(target, w, on)
        result = RESULTS.where(jnp.isfinite(J), RESULTS.successful, RESULTS.nonfinite)
    err, rel, noise_floor = _errors_jit(target, w, a, on, J, norm)
    return Approximation(DiagonalRNN(a, w), err, rel, noise_floor, result, norm, mode)


_lstsq_jit = jax.jit(lstsq_residual)
_errors_jit = jax.jit(_errors, static_argnums=5)


@functools.partial(jax.jit, static_argnums=(5, 6, 7))
def _fit_free_jit(target, starts, on, lo, hi, bounded, max_steps, rtol):
    return _fit_free(target, starts, on, lo, hi, bounded=bounded, max_steps=max_steps, rtol=rtol)
