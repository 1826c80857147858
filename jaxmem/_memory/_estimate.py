r"""Memory kernels estimated from input/output paths: regularised least squares in a basis of
exponentials with cross-validation over paths and a bootstrap band, and the plain grid baseline."""

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._errors import positive_int, show
from .._kernels import AbstractKernel, ExpSum, GridKernel

BASES = ("exp",)
_RCOND = 1e-13  # eigenvalues of the basis Gram below this fraction of the largest are dropped


def _lfilter():
    import scipy.signal  # imported when used: it takes ~0.3 s

    return scipy.signal.lfilter


class KernelEstimate(AbstractKernel):
    r"""A memory kernel estimated from data; a kernel itself (values, Laplace moments and norms
    are those of `kernel`), so it can be handed to `best_approximation`, `decay_class`, ...

    - `kernel`: the estimate as a kernel (`ExpSum` for the exponential basis, `GridKernel` for
      the grid baseline).
    - `ts`, `rho`: the estimate on the grid $0, \Delta, \dots$ up to the horizon.
    - `lo`, `hi`: the pointwise bootstrap band (percentiles over resamples of the paths; equal
      to `rho` when there was no bootstrap); `samples`: the bootstrap kernels on `ts`.
    - `alpha`: the regularisation chosen (0 for plain least squares); `alphas`, `cv_error`:
      the candidates and their cross-validated squared output error (per sample).
    - `window`: the horizon (given, or chosen from the data); `method`: how it was made.
    """

    kernel: AbstractKernel
    ts: Float[Array, " n"]
    rho: Float[Array, " n"]
    lo: Float[Array, " n"]
    hi: Float[Array, " n"]
    samples: Float[Array, "B n"]
    alpha: float = eqx.field(static=True)
    alphas: tuple = eqx.field(static=True)
    cv_error: tuple = eqx.field(static=True)
    window: float = eqx.field(static=True)
    method: str = eqx.field(static=True)

    def __call__(self, t):
        return self.kernel(t)

    def laplace(self, w):
        return self.kernel.laplace(w)

    def laplace_t(self, w):
        return self.kernel.laplace_t(w)

    def sq_norm(self):
        return self.kernel.sq_norm()

    def horizon(self):
        return jnp.asarray(self.window, dtype=jnp.result_type(float))


# -- input checks ------------------------------------------------------------------------------


def check_paths(ts, xs, ys):
    """(dt, xs, ys) as float64 numpy arrays of shape (paths, n), or a clear `ValueError`."""
    ts = np.asarray(ts, dtype=np.float64)
    if ts.ndim != 1 or ts.size < 4:
        raise ValueError(f"ts must be a 1-D grid of at least 4 times; got shape {ts.shape}.")
    if not np.all(np.isfinite(ts)):
        i = int(np.argmin(np.isfinite(ts)))
        raise ValueError(f"ts must be finite; ts[{i}] = {ts[i]}.")
    d = np.diff(ts)
    if not np.all(d > 0):
        i = int(np.argmin(d > 0))
        raise ValueError(f"ts must be strictly increasing; ts[{i + 1}] = {ts[i + 1]:.6g} follows ts[{i}] = {ts[i]:.6g}.")
    if np.max(np.abs(d - d[0])) > 1e-6 * d[0] + 8 * np.finfo(float).eps * np.max(np.abs(ts)):
        raise ValueError(f"ts must be a uniform grid (the exact convolution rule needs one step dt); its spacings "
                         f"range from {d.min():.6g} to {d.max():.6g}.")
    out = []
    for name, arr in (("xs", xs), ("ys", ys)):
        if isinstance(arr, (list, tuple)):
            lengths = [np.shape(p) for p in arr]
            if len(set(lengths)) > 1:
                raise ValueError(f"{name}: the paths must all have the same length; got shapes {lengths[:8]}"
                                 f"{' ...' if len(lengths) > 8 else ''}.")
        arr = np.asarray(arr, dtype=np.float64)
        if arr.ndim == 1:
            arr = arr[None]
        if arr.ndim != 2 or arr.shape[1] != ts.size:
            raise ValueError(f"{name} must have shape (paths, {ts.size}) for ts of {ts.size} times; got {arr.shape}.")
        bad = ~np.isfinite(arr)
        if bad.any():
            p, j = np.argwhere(bad)[0]
            raise ValueError(f"{name} must be finite; {name}[{p}, {j}] = {arr[p, j]} "
                             f"({int(bad.sum())} non-finite value(s) in all).")
        out.append(arr)
    xs, ys = out
    if xs.shape != ys.shape:
        raise ValueError(f"xs and ys must have the same shape (paths, n); got {xs.shape} and {ys.shape}.")
    return float(d.mean()), xs, ys


def _check_horizon(horizon, dt, n):
    span = (n - 1) * dt
    if horizon is None:
        return None
    h = float(horizon)
    if not (np.isfinite(h) and 2 * dt <= h <= span):
        raise ValueError(f"horizon must lie between 2 dt = {2 * dt:.6g} and the paths' span {span:.6g}; "
                         f"got {show(horizon)}.")
    return h


# -- the design matrix: exact outputs of the basis functions -------------------------------------


def _hold_weights(lam, dt):
    r"""(decay, w_prev, w_next): $z_{j+1} = e^{-\lambda\Delta}z_j + w_\text{prev}x_j + w_\text{next}x_{j+1}$,
    the exact convolution of $e^{-\lambda s}$ with the piecewise-linear input over one step."""
    h = lam * dt
    decay = np.exp(-h)
    i0 = -np.expm1(-h) / lam                                   # ∫_0^Δ e^{-λτ} dτ
    small = h < 1e-2                                           # 1 - e^{-h}(1+h) by its series
    num = np.where(small, h**2 / 2 - h**3 / 3 + h**4 / 8 - h**5 / 30 + h**6 / 144,
                   -np.expm1(-h) - h * np.exp(-h))
    i1 = num / (lam**2 * dt)                                   # ∫_0^Δ τ e^{-λτ} dτ / Δ
    return decay, i1, i0 - i1


def exp_basis_outputs(xs, dt, rates):
    r"""$z_k(t_j) = \int_0^{t_j} e^{-\lambda_k s}\tilde x(t_j - s)\,ds$ for every path and rate,
    shape `(paths, n, K)`: $\tilde x$ the piecewise-linear interpolant of the samples, nothing
    before $t = 0$ (the rule of `linear_outputs`), by the exact one-step recurrence."""
    xs = np.asarray(xs, dtype=np.float64)
    out = np.empty(xs.shape + (len(rates),))
    prev = np.concatenate([np.zeros_like(xs[..., :1]), xs[..., :-1]], axis=-1)
    for k, lam in enumerate(np.asarray(rates, dtype=np.float64)):
        decay, w_prev, w_next = _hold_weights(lam, dt)
        u = w_prev * prev + w_next * xs
        u[..., 0] = 0.0
        out[..., k] = _lfilter()([1.0], [1.0, -decay], u, axis=-1)
    return out


def default_rates(dt, span, n_basis):
    """Log-spaced rates from 1/span (memory as long as the data) to 2/dt (the grid's resolution)."""
    return np.geomspace(1.0 / span, 2.0 / dt, n_basis)


# -- the regularised fit -------------------------------------------------------------------------


def _orthonormal(rates):
    """T (K × r): coefficients c = T b of functions orthonormal in L²(0, ∞)."""
    G = 1.0 / (rates[:, None] + rates[None, :])
    lam, V = np.linalg.eigh(G)
    keep = lam > _RCOND * lam[-1]
    return V[:, keep] / np.sqrt(lam[keep])


def _ridge(S, g, alpha):
    """Solutions of (S + αI) b = g for a stack of S (..., r, r) and one α."""
    r = S.shape[-1]
    return np.linalg.solve(S + alpha * np.eye(r), g[..., None])[..., 0]


def _folds(n_paths, n_folds, seed):
    order = np.random.default_rng(seed).permutation(n_paths)
    return [np.sort(order[k::n_folds]) for k in range(n_folds)]


def _quadratic_error(S, g, q, b):
    return np.einsum("...i,...ij,...j->...", b, S, b) - 2 * np.einsum("...i,...i->...", b, g) + q


def estimate_kernel(ts, xs, ys, *, horizon=None, basis="exp", n_basis=40, rates=None, alphas=None, n_folds=5,
                    n_boot=200, level=0.95, seed=0) -> KernelEstimate:
    r"""Estimate the memory kernel $\rho$ of a linear functional from input/output paths.

    Model: $y(t_j) = \int_0^{t_j}\rho(s)\tilde x(t_j - s)\,ds + \text{noise}$, $\tilde x$ the
    piecewise-linear interpolant of the input samples and nothing before $t = 0$ (the exact rule
    of `jaxmem.linear_outputs`), white or coloured inputs alike. The kernel is sought as
    $\hat\rho(t) = \sum_k c_k e^{-\lambda_k t}$ on `n_basis` log-spaced rates from $1/T$ (the
    paths' span) to $2/\Delta$; each basis function's output is an exact one-step recurrence
    (`exp_basis_outputs`), so the design matrix has no discretisation error. The coefficients
    minimise $\sum(y - \hat y)^2 + \alpha\|\hat\rho\|_{L^2}^2$ (ridge in an $L^2$-orthonormal
    recombination of the basis, which is numerically rank-revealing), with $\alpha$ chosen
    from `alphas` (default 25 values, log-spaced relative to the data's scale) by `n_folds`-fold
    cross-validation over whole paths. The band is the pointwise `level` interval of `n_boot`
    refits on paths resampled with replacement, at the chosen $\alpha$.

    `horizon` (the window $[0, H]$ of `ts`/`rho`) is, when not given, chosen from the data: the
    last time at which $|\hat\rho|$ exceeds three bootstrap standard errors, times 1.25, within
    $[20\Delta, T/2]$.

    **Arguments:** `ts` (uniform grid, shape `(n,)`), `xs`, `ys` (shape `(paths, n)`), and the
    options above; `seed` fixes the folds and the resamples.

    **Returns:** a `KernelEstimate` (a kernel: `est(t)` evaluates the fit anywhere).

    ```python
    import jax, numpy as np, jaxmem
    jax.config.update("jax_enable_x64", True)
    dt, rng = 0.05, np.random.default_rng(0)
    xs = rng.standard_normal((8, 400)) / np.sqrt(dt)
    ys = jaxmem.internal.exp_basis_outputs(xs, dt, [0.5])[..., 0]        # rho(t) = e^{-t/2}, exactly
    est = jaxmem.estimate_kernel(np.arange(400) * dt, xs, ys, horizon=5.0, n_boot=20)
    float(est(1.0))                                      # ~ e^{-1/2}
    ```
    """
    if basis not in BASES:
        raise ValueError(f"basis must be one of {BASES}; got {basis!r}.")
    dt, xs, ys = check_paths(ts, xs, ys)
    P, n = xs.shape
    span = (n - 1) * dt
    H = _check_horizon(horizon, dt, n)
    n_folds = positive_int(n_folds, "n_folds")
    if P < 2:
        raise ValueError(f"estimate_kernel cross-validates over paths: it needs at least 2 paths; got {P}.")
    n_folds = min(n_folds, P)
    if n_folds < 2:
        raise ValueError(f"n_folds must be >= 2; got {n_folds}.")
    n_boot = 0 if n_boot == 0 else positive_int(n_boot, "n_boot")
    if not (0 < level < 1):
        raise ValueError(f"level must satisfy 0 < level < 1; got {level!r}.")
    if rates is None:
        n_basis = positive_int(n_basis, "n_basis")
        rates = default_rates(dt, span, n_basis)
    rates = np.asarray(rates, dtype=np.float64)
    if rates.ndim != 1 or rates.size == 0 or not np.all(np.isfinite(rates) & (rates > 0)):
        raise ValueError(f"rates must be a non-empty 1-D array of finite rates > 0; got {show(rates)}.")
    if P * n < 2 * rates.size:
        raise ValueError(f"{P} path(s) of {n} samples are too few for {rates.size} basis functions.")

    T = _orthonormal(rates)
    Z = exp_basis_outputs(xs, dt, rates) @ T                   # (P, n, r)
    S = np.einsum("pni,pnj->pij", Z, Z)                        # per-path sufficient statistics
    g = np.einsum("pni,pn->pi", Z, ys)
    q = np.einsum("pn,pn->p", ys, ys)
    r = T.shape[1]
    scale = np.trace(S.sum(0)) / r
    alphas = scale * np.geomspace(1e-10, 1e2, 25) if alphas is None else np.asarray(alphas, dtype=np.float64)
    if alphas.ndim != 1 or alphas.size == 0 or not np.all(np.isfinite(alphas) & (alphas >= 0)):
        raise ValueError(f"alphas must be a non-empty 1-D array of finite values >= 0; got {show(alphas)}.")

    folds = _folds(P, n_folds, seed)
    cv = np.zeros(alphas.size)
    for val in folds:
        train = np.setdiff1d(np.arange(P), val)
        St, gt = S[train].sum(0), g[train].sum(0)
        Sv, gv, qv = S[val].sum(0), g[val].sum(0), q[val].sum()
        b = np.stack([_ridge(St, gt, a) for a in alphas])
        cv += _quadratic_error(Sv, gv, qv, b)
    cv /= P * n
    best = int(np.argmin(cv))
    alpha = float(alphas[best])
    coeffs = T @ _ridge(S.sum(0), g.sum(0), alpha)

    boot = None
    if n_boot:
        counts = np.random.default_rng(seed + 1).multinomial(P, np.full(P, 1.0 / P), size=n_boot)  # (B, P)
        Sb = np.einsum("bp,pij->bij", counts, S)
        gb = counts @ g
        boot = _ridge(Sb, gb, alpha) @ T.T                     # (B, K)

    def values(c, t):
        return np.exp(-np.multiply.outer(t, rates)) @ c.T

    if H is None:
        t_all = np.arange(0, int(np.floor(span / 2 / dt)) + 1) * dt
        est = values(coeffs, t_all)
        if boot is not None:
            se = values(boot, t_all).std(axis=1)
            sig = np.flatnonzero(np.abs(est) > 3 * se)
            last = t_all[sig[-1]] if sig.size else t_all[-1]
        else:
            last = t_all[-1]
        H = float(np.clip(1.25 * last, 20 * dt, span / 2))
    t_out = np.arange(0, int(np.floor(H / dt + 1e-9)) + 1) * dt
    rho = values(coeffs, t_out)
    if boot is not None:
        samples = values(boot, t_out).T
        lo, hi = np.percentile(samples, [50 * (1 - level), 50 * (1 + level)], axis=0)
    else:
        samples, lo, hi = rho[None], rho, rho
    return KernelEstimate(ExpSum(coeffs, rates), jnp.asarray(t_out), jnp.asarray(rho), jnp.asarray(lo),
                          jnp.asarray(hi), jnp.asarray(samples), alpha, tuple(map(float, alphas)),
                          tuple(map(float, cv)), H, f"exponential basis, {rates.size} rates, ridge (L2 norm), "
                          f"{n_folds}-fold CV over paths, {n_boot} bootstrap resamples")


def least_squares_kernel(ts, xs, ys, *, horizon, rule="trapezoid") -> KernelEstimate:
    r"""The plain baseline: least squares for the kernel's values on the grid,
    $y_j \approx \Delta\sum_{k=0}^{L} \omega_k\rho(k\Delta)x_{j-k}$ with $L\Delta$ = `horizon`,
    `rule="rectangle"` ($\omega_k = 1$) or `"trapezoid"` ($\omega_0 = 1/2$), unregularised.

    ```python
    import jax, numpy as np, jaxmem
    jax.config.update("jax_enable_x64", True)
    dt, rng = 0.05, np.random.default_rng(0)
    xs = rng.standard_normal((8, 400)) / np.sqrt(dt)
    ys = jaxmem.internal.exp_basis_outputs(xs, dt, [0.5])[..., 0]
    est = jaxmem.least_squares_kernel(np.arange(400) * dt, xs, ys, horizon=5.0)
    float(est(1.0))                                      # ~ e^{-1/2}
    ```
    """
    if rule not in ("rectangle", "trapezoid"):
        raise ValueError(f"rule must be 'rectangle' or 'trapezoid'; got {rule!r}.")
    dt, xs, ys = check_paths(ts, xs, ys)
    P, n = xs.shape
    if horizon is None:
        raise ValueError("least_squares_kernel needs a horizon (the number of grid values it solves for).")
    H = _check_horizon(horizon, dt, n)
    L = int(np.floor(H / dt + 1e-9)) + 1
    if P * (n - L + 1) < 2 * L:
        raise ValueError(f"{P} path(s) of {n} samples are too few for the horizon {H:g}: {L} unknown values need "
                         f"at least {2 * L} equations after the first {L - 1} samples; use more paths or a "
                         f"shorter horizon.")
    w = np.ones(L)
    if rule == "trapezoid":
        w[0] = 0.5
    # Normal equations from lagged products, never the (paths·n) × L design matrix:
    # Σ_j x_{j-k} x_{j-l} = Σ_{i ≤ n-1-l} x_i x_{i+d} (d = l - k ≥ 0), a running sum per lag d.
    A = np.empty((L, L))
    for d in range(L):
        run = np.cumsum((xs[:, d:] * xs[:, : n - d]).sum(0))      # run[i'] = Σ_{i ≤ i'} x_i x_{i+d}
        k = np.arange(L - d)
        A[k, k + d] = A[k + d, k] = run[n - 1 - k - d]
    b = np.array([np.sum(xs[:, : n - k] * ys[:, k:]) for k in range(L)])
    A *= np.outer(dt * w, dt * w)
    b *= dt * w
    rho = np.linalg.lstsq(A, b, rcond=None)[0]
    t_out = np.arange(L) * dt
    grid = jnp.asarray(t_out)
    return KernelEstimate(GridKernel(grid, jnp.asarray(rho)), grid, jnp.asarray(rho), jnp.asarray(rho),
                          jnp.asarray(rho), jnp.asarray(rho)[None], 0.0, (0.0,), (float("nan"),), H,
                          f"least squares on the grid ({rule} rule), {L} values")
