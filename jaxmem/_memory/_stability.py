r"""The perturbation test of stable approximation (the inverse approximation theorem): the
error of the best width-m model when every parameter moves by β, exactly through the
white-noise loss, in one compiled, vmapped computation."""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, Float

from .._approx import check_args, start_rates
from .._approx._fit import _fit_free
from .._approx._norms import residual_norm
from .._errors import integer_list, number_list, positive_int, warn_if_not_x64
from .._kernels import AbstractKernel
from .._loss import gram


class Stability(eqx.Module):
    r"""The perturbed errors $E_m(\beta)$ of `perturbation_test`.

    - `errors` `(kernels, widths, betas)`: $E_m(\beta)$, the worst relative $L^2$ error over the
      sampled perturbations ($\infty$ where a rate left $(0, \infty)$); `sample_errors` adds the
      samples' axis.
    - `fit_errors` `(kernels, widths)`: the relative error of the unperturbed best fit (its
      `best_approximation` search); `rates`, `coeffs` `(kernels, widths, max width)`: the fits
      (padded with zeros); `slowest_rate`: their smallest rate.
    - `radius` `(kernels, widths)`: the blow-up radius, the smallest β of the grid with
      $E_m(\beta) >$ `threshold` ($\infty$ if none).
    - `status` `(kernels, widths, betas)`: `"successful"`, or `"diverged"` where a sampled
      perturbation pushed a rate out of $(0, \infty)$ (infinite error).
    """

    betas: Float[Array, " B"]
    widths: tuple = eqx.field(static=True)
    errors: Float[Array, "K M B"]
    sample_errors: Float[Array, "K M B S"]
    fit_errors: Float[Array, "K M"]
    rates: Float[Array, "K M P"]
    coeffs: Float[Array, "K M P"]
    slowest_rate: Float[Array, "K M"]
    radius: Float[Array, "K M"]
    status: tuple = eqx.field(static=True)
    threshold: float = eqx.field(static=True)


def _closed_form(kernel, a, w, on, beta, direction):
    """(valid, J, rounding, a1, wv) of the perturbed model, from the closed form."""
    # Coefficient moves are taken relative to sign(a): +1 moves a coefficient away from zero.
    a1 = jnp.where(on, a + beta * direction[0] * jnp.where(a >= 0, 1.0, -1.0), 0.0)
    w1 = w + beta * direction[1]
    valid = jnp.all(jnp.where(on, w1 > 0, True))
    wv = jnp.where(on & valid, w1, 1.0)
    c = kernel.sq_norm()
    G = gram(wv)
    b0 = jnp.where(on, kernel.laplace(wv), 0.0)
    J = a1 @ (G @ a1) - 2 * a1 @ b0 + c
    # Its rounding: ~eps (|a|ᵀG|a| + 2|a|ᵀ|b₀| + ‖ρ‖²), large where coefficients cancel.
    rounding = 64 * jnp.finfo(J.dtype).eps * (jnp.abs(a1) @ (G @ jnp.abs(a1)) + 2 * jnp.abs(a1) @ jnp.abs(b0) + c)
    return valid, J, rounding, a1, wv


def _relative(kernel, valid, J):
    return jnp.where(valid, jnp.sqrt(jnp.maximum(J, 0.0) / kernel.sq_norm()), jnp.inf)


def perturbed_error(kernel, a, w, on, beta, direction):
    r"""Relative $L^2$ error $\|\rho - \tilde\rho\|/\|\rho\|$ of the model $(a, w) + \beta\,$`direction`
    (`direction` shape `(2, m)`: the coefficients' moves, relative to $\mathrm{sign}(a)$ so that
    $+1$ moves a coefficient away from zero, and the rates' moves; entries in $[-1, 1]$),
    exactly: $J = \tilde a^\top G\tilde a - 2\tilde a^\top b_0(\tilde w) + \|\rho\|^2$; $\infty$ when an
    active rate leaves $(0, \infty)$. Masked modes (`on` false) take no part.

    Returns `(error, reliable)`: the closed form's rounding is ~eps$(|a|^\top G|a| + 2|a|^\top|b_0| +
    \|\rho\|^2)$, and where $J$ is not 1e3 times above it (cancelling coefficients, or a fit's tiny
    error) `reliable` is false: `integrated_error` gives the value then. At $\beta = 0$ (the
    unperturbed fit) the integral is taken at once, through `lax.cond`. Traceable."""
    valid, J, rounding, a1, wv = _closed_form(kernel, a, w, on, beta, direction)
    ok = J > 1e3 * rounding
    J = jax.lax.cond((beta == 0) & ~ok, lambda: residual_norm(kernel, a1, wv, on, 2), lambda: J)
    return _relative(kernel, valid, J), ok | (beta == 0) | ~valid


def integrated_error(kernel, a, w, on, beta, direction):
    r"""`perturbed_error`'s value with $J = \int_0^\infty|\rho - \tilde\rho|^2dt$ on graded Gauss
    panels (tail included), free of the closed form's cancellation. Traceable."""
    valid, _, _, a1, wv = _closed_form(kernel, a, w, on, beta, direction)
    return _relative(kernel, valid, residual_norm(kernel, a1, wv, on, 2))


@jax.jit
def perturbed_errors(kernels, a, w, on, betas, directions):
    """`perturbed_error` for all of (kernels, widths, betas, samples) at once: `a`, `w` `(kernels,
    widths, pad)`, `on` `(widths, pad)`, `betas` `(B,)`, `directions` `(S, 2, pad)`. One compiled
    program: the kernels (which may differ in type) are unrolled, everything else is vmapped;
    the integral at β = 0 once per kernel and width. Returns `(errors, reliable)`."""
    out, oks = [], []
    for k, kernel in enumerate(kernels):
        f = lambda a_, w_, on_, beta, d, kernel=kernel: _closed_form(kernel, a_, w_, on_, beta, d)[:3]
        f = jax.vmap(f, in_axes=(None, None, None, None, 0))          # samples
        f = jax.vmap(f, in_axes=(None, None, None, 0, None))          # betas
        f = jax.vmap(f, in_axes=(0, 0, 0, None, None))                # widths
        valid, J, rounding = f(a[k], w[k], on, betas, directions)
        quad = jax.vmap(lambda a_, w_, on_, kernel=kernel: residual_norm(kernel, a_, w_, on_, 2))(a[k], w[k], on)
        ok = J > 1e3 * rounding
        at_zero = (betas == 0)[None, :, None]
        J = jnp.where(at_zero & ~ok, quad[:, None, None], J)
        out.append(_relative(kernel, valid, J))
        oks.append(ok | at_zero | ~valid)
    return jnp.stack(out), jnp.stack(oks)


#: One configuration (kernel, width, β, sample) alone: the loop the benchmark compares against.
perturbed_error_jit = jax.jit(perturbed_error)

_integrated = jax.jit(jax.vmap(integrated_error, in_axes=(None, 0, 0, 0, 0, 0)))


def _fix_unreliable(kernels, errs, ok, A, W, on, betas, dirs):
    """Replace the entries whose closed form lost its digits by the integral (batched, padded to
    a power of two so that few programs are compiled)."""
    errs = np.array(errs)
    for k, kernel in enumerate(kernels):
        idx = np.argwhere(~np.asarray(ok[k]))
        if idx.size == 0:
            continue
        n = 1 << int(np.ceil(np.log2(len(idx))))
        pad = np.concatenate([idx, np.repeat(idx[-1:], n - len(idx), axis=0)])
        j, q, s = pad.T
        vals = _integrated(kernel, A[k][j], W[k][j], on[j], jnp.asarray(betas)[q], dirs[s])
        errs[k, idx[:, 0], idx[:, 1], idx[:, 2]] = np.asarray(vals)[: len(idx)]
    return errs


@functools.partial(jax.jit, static_argnames=("max_steps", "rtol"))
def _fit_widths(kernel, starts, on, lo, hi, *, max_steps=400, rtol=1e-9):
    """The best free-rate fits (`best_approximation`'s variable projection) of one kernel for
    every width at once (padded, masked). The kernel is an argument, not a static one: one
    compilation per kernel type and shape, shared by every call."""
    one = lambda st, o: _fit_free(kernel, st, o, lo, hi, bounded=False, max_steps=max_steps, rtol=rtol)[:3]
    return jax.vmap(one)(starts, on)


def directions(key, n_samples, coeffs):
    """`(S, 2, pad)` moves in the ℓ∞ unit ball's vertices: sample 0 moves every rate down and every
    coefficient away from zero (`sign(a)`), the others are independent random signs."""
    pad = coeffs.shape[-1]
    first = np.stack([np.ones(pad), -np.ones(pad)])[None]
    rnd = np.asarray(jr.rademacher(key, (max(n_samples - 1, 0), 2, pad), dtype=jnp.float64))
    return first, rnd


def perturbation_test(kernels, widths, betas, *, n_samples=10, key=None, threshold=1.0, min_rate=None,
                      n_starts=8) -> Stability:
    r"""The perturbation test of the inverse approximation theorem (docs/mathematics.md), exactly.

    For every kernel and width $m$: the best width-$m$ diagonal model $\theta_m = (a, w)$ (free
    rates above `min_rate`, the search of `best_approximation`, batched per kernel), then
    $E_m(\beta) = \max_{s}\|\rho - \hat\rho(\theta_m + \beta u_s)\|_{L^2}/\|\rho\|_{L^2}$ over
    `n_samples` moves $u_s$ on the vertices of the $\ell^\infty$ unit ball of the $2m$ parameters
    (sample 0: every rate down by β and every coefficient away from zero; the others random
    signs), from the closed-form white-noise loss. A rate pushed to $\le 0$ makes the model's
    memory non-integrable: infinite error. Exponential memory is stably approximable (the
    radius at which $E_m$ blows up stays put as $m$ grows); polynomial memory is not (the fits
    recruit ever slower rates, and the radius shrinks). All of (kernels × widths × β ×
    samples) is one compiled, vmapped call (`perturbed_errors`).

    **Arguments:** `kernels` (a kernel or a sequence), `widths`, `betas` (≥ 0), `n_samples`,
    `key` (the random moves), `threshold` (relative error defining the blow-up radius),
    `min_rate`, `n_starts` (of the fits).

    **Returns:** a `Stability`.

    ```python
    import jax, jaxmem
    jax.config.update("jax_enable_x64", True)
    s = jaxmem.perturbation_test(jaxmem.PowerLaw(1.0), [2, 4], [0.0, 0.01, 0.1], n_samples=3, n_starts=2)
    s.errors.shape, s.radius                 # (1, 2, 3)
    ```
    """
    warn_if_not_x64("perturbation_test")
    kernels = (kernels,) if isinstance(kernels, AbstractKernel) else tuple(kernels)
    if not kernels or not all(isinstance(k, AbstractKernel) for k in kernels):
        raise TypeError(f"kernels must be a kernel or a non-empty sequence of kernels; got {kernels!r}.")
    widths = integer_list(widths, "widths")
    if not widths or min(widths) < 1:
        raise ValueError(f"widths must be a non-empty list of integers >= 1; got {widths}.")
    betas_l = number_list(betas, "betas")
    if not betas_l or not all(np.isfinite(b) and b >= 0 for b in betas_l):
        raise ValueError(f"betas must be a non-empty list of finite numbers >= 0; got {betas_l}.")
    n_samples = positive_int(n_samples, "n_samples")
    if not (np.isfinite(threshold) and threshold > 0):
        raise ValueError(f"threshold must be finite and > 0 (a relative error); got {threshold!r}.")
    key = jr.key(0) if key is None else key
    k_fit, k_dir = jr.split(key)
    pad, M = max(widths), len(widths)
    A = np.zeros((len(kernels), M, pad))
    W = np.ones((len(kernels), M, pad))
    fit_err = np.zeros((len(kernels), M))
    lo, hi = check_args(pad, "L2", min_rate, None)
    n_starts = positive_int(n_starts, "n_starts")
    for i, kernel in enumerate(kernels):
        keys = jr.split(jr.fold_in(k_fit, i), M)
        starts = np.ones((M, n_starts, pad))
        for j, m in enumerate(widths):
            starts[j, :, :m] = start_rates(keys[j], m, n_starts, lo, hi, float(kernel.horizon()))
        on_ = jnp.asarray(np.arange(pad)[None, :] < np.asarray(widths)[:, None])
        w, a, J = _fit_widths(kernel, jnp.asarray(starts), on_, lo, hi)
        A[i], W[i] = np.asarray(a), np.asarray(w)
        fit_err[i] = np.sqrt(np.maximum(np.asarray(J), 0.0) / float(kernel.sq_norm()))
    on = np.arange(pad)[None, :] < np.asarray(widths)[:, None]
    W = np.where(on[None], W, 1.0)
    A = np.where(on[None], A, 0.0)
    first, rnd = directions(k_dir, n_samples, A)
    dirs = np.concatenate([first, rnd])[:n_samples]
    b = jnp.asarray(betas_l, dtype=jnp.float64)
    A, W, on, dirs = jnp.asarray(A), jnp.asarray(W), jnp.asarray(on), jnp.asarray(dirs)
    errs, ok = perturbed_errors(kernels, A, W, on, b, dirs)
    errs = _fix_unreliable(kernels, errs, ok, A, W, on, b, dirs)
    worst = errs.max(axis=-1)
    over = worst > threshold
    bl = np.asarray(betas_l)
    radius = np.where(over.any(-1), bl[np.argmax(over, axis=-1)], np.inf)
    status = np.where(np.isinf(worst), "diverged", "successful")
    slowest = np.where(np.asarray(on)[None], np.asarray(W), np.inf).min(-1)
    return Stability(b, tuple(int(m) for m in widths), jnp.asarray(worst), jnp.asarray(errs), jnp.asarray(fit_err), jnp.asarray(W),
                     jnp.asarray(A), jnp.asarray(slowest), jnp.asarray(radius), tuple(tuple(str(x) for x in row) for row in status.reshape(-1, len(bl))),
                     float(threshold))
