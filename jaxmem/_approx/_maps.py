"""Maps of best-approximation errors over memory parameters and widths, and the width needed
for an accuracy: one compiled, vmapped call per batch of fits."""

import functools

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from .._errors import warn_if_not_x64
from .._kernels import AbstractKernel
from .._results import names
from ._fit import _errors, _fit_free, check_args, start_rates


@functools.partial(jax.jit, static_argnames=("kernel_fn", "bounded", "norm", "max_steps", "rtol"))
def _fit_pairs(kernel_fn, params, starts, on, lo, hi, *, bounded, norm, max_steps, rtol):

    def one(p, st, o, lo_):
        target = kernel_fn(p)
        w, a, J, result = _fit_free(target, st, o, lo_, hi, bounded=bounded, max_steps=max_steps, rtol=rtol)
        err, rel, _ = _errors(target, w, a, o, J, norm)
        return w, a, err, rel, result._value

    return jax.vmap(one)(params, starts, on, lo)


def fit_rows(kernel_fn, params, widths, min_rates, keys, *, pad=None, max_rate=None, norm="L2", n_starts=8,
             max_steps=400, rtol=1e-9, batch_size=None):
    r"""Best free-rate fits of `kernel_fn(p)` for rows $(p, m, \text{min\_rate})$, batch by batch.

    Every batch is one call of the same compiled, vmapped program: widths are padded to `pad`
    modes with a mask, rate floors and parameters are traced, and the last batch is padded to
    `batch_size` rows by repeating its last row, so the number of compilations does not grow
    with the number of batches. Row `i` draws its random starts from `keys[i]`, so its result
    does not depend on the batch it runs in.

    **Arguments:**

    - `kernel_fn`: builds the target from a (traced) scalar parameter; it is a static argument
      of the compiled program, so pass the same function object to share the compilation.
    - `params`, `widths`, `min_rates`, `keys`: one entry per row (`min_rates` entries may be
      `None` for no floor; `keys` a JAX key array).
    - `pad`: modes per row (default the largest width).
    - `batch_size`: rows per compiled call (default: all rows in one call).
    - `max_rate`, `norm`, `n_starts`, `max_steps`, `rtol`: as in `best_approximation`.

    **Returns:** a generator of `(rows, out)`, one per batch: the indices of its rows and a dict
    of numpy arrays with one entry per row, `error`, `relative_error` (in `norm`), `result`
    (the `jaxmem.RESULTS` member names), `rates`, `coeffs` (padded to `pad`). Bad input raises at the call,
    before the first batch.
    """
    params = np.asarray(params, dtype=np.float64)
    widths = [int(m) for m in widths]
    lows = np.asarray([0.0 if lo is None else float(lo) for lo in min_rates], dtype=np.float64)
    n = len(params)
    if params.ndim != 1 or not (len(widths) == len(lows) == len(keys) == n):
        raise ValueError(f"params, widths, min_rates and keys must be 1-D with one entry per row; got lengths "
                         f"{params.shape}, {len(widths)}, {len(lows)}, {len(keys)}.")
    pad = (max(widths) if widths else 1) if pad is None else pad
    for m in sorted(set(widths)) + [pad]:
        check_args(m, norm, None, max_rate)
    if widths and max(widths) > pad:
        raise ValueError(f"pad must be >= the largest width {max(widths)}; got {pad!r}.")
    hi = check_args(pad, norm, None, max_rate)[1]
    for lo in np.unique(lows):
        check_args(pad, norm, lo, max_rate)
    if not (isinstance(n_starts, (int, np.integer)) and n_starts >= 1):
        raise ValueError(f"n_starts must be a positive integer; got {n_starts!r}.")
    bs = max(n, 1) if batch_size is None else batch_size
    if not (isinstance(bs, (int, np.integer)) and bs >= 1):
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}.")
    bs = int(bs)
    static = dict(bounded=bool(np.isfinite(hi)), norm=norm, max_steps=max_steps, rtol=rtol)

    def batches():
        horizons = {}
        for first in range(0, n, bs):
            rows = np.arange(first, min(first + bs, n))
            starts = np.ones((bs, n_starts, pad))
            on = np.zeros((bs, pad), dtype=bool)
            for k, i in enumerate(rows):
                p, m = float(params[i]), widths[i]
                if p not in horizons:
                    horizons[p] = float(kernel_fn(p).horizon())
                starts[k, :, :m] = start_rates(keys[i], m, n_starts, float(lows[i]), hi, horizons[p])
                on[k, :m] = True
            fill = np.r_[np.arange(len(rows)), np.full(bs - len(rows), len(rows) - 1)]
            starts[len(rows):], on[len(rows):] = starts[fill[len(rows):]], on[fill[len(rows):]]
            w, a, err, rel, codes = _fit_pairs(kernel_fn, jnp.asarray(params[rows][fill]), jnp.asarray(starts),
                                                jnp.asarray(on), jnp.asarray(lows[rows][fill]), hi, **static)
            out = dict(error=err, relative_error=rel, result=np.asarray(names(codes)), rates=w, coeffs=a)
            yield rows, {k: np.asarray(v)[: len(rows)] for k, v in out.items()}

    return batches()


def error_map(kernel_fn, params, widths, *, min_rate=None, max_rate=None, norm="L2", n_starts=8,
              key=None, max_steps=400, rtol=1e-9, batch_size=None):
    r"""Best free-rate errors for every memory parameter × width, in one compiled vmapped call
    (or, with `batch_size`, in calls of `batch_size` pairs each, all sharing one compilation).

    `kernel_fn(p)` builds the target from a (traced) scalar parameter, e.g.
    `lambda om: jaxmem.PowerLaw(om)`; widths share one program by padding to the largest with
    masked modes. Returns a dict of numpy arrays of shape `(len(params), len(widths))`:
    `error`, `relative_error` (in `norm`), `result` (`jaxmem.RESULTS` member names), and
    `rates`, `coeffs` (padded).
    `jaxmem approx` runs the same fits through `fit_rows`, batch by batch, to a resumable folder.

    ```python
    import jax, jaxmem
    jax.config.update("jax_enable_x64", True)
    out = jaxmem.error_map(lambda om: jaxmem.PowerLaw(om), [0.5, 1.0], [1, 2, 4], min_rate=0.5, n_starts=2)
    out["relative_error"]
    ```
    """
    warn_if_not_x64("error_map")
    params, widths = np.asarray(params, dtype=np.float64), [int(m) for m in widths]
    if params.ndim != 1 or params.size == 0 or len(widths) == 0:
        raise ValueError(f"params and widths must be non-empty 1-D lists; got {params!r}, {widths!r}.")
    for m in widths:
        check_args(m, norm, min_rate, max_rate)
    P, K = len(params), len(widths)
    keys = map_keys(key, P, K)
    outs = dict(error=[], relative_error=[], result=[], rates=[], coeffs=[])
    for _, out in fit_rows(kernel_fn, np.repeat(params, K), np.tile(widths, P), [min_rate] * (P * K), keys,
                           pad=max(widths), max_rate=max_rate, norm=norm, n_starts=n_starts, max_steps=max_steps,
                           rtol=rtol, batch_size=batch_size):
        for k, v in out.items():
            outs[k].append(v)
    shape = (P, K)
    return {k: np.concatenate(v).reshape(*shape, *np.shape(v[0])[1:]) for k, v in outs.items()}


def map_keys(key, n_params, n_widths):
    """The random keys of `error_map`'s pairs, flat, pair (i, j) at index `i * n_widths + j`."""
    return jr.split(jr.key(0) if key is None else key, n_params * n_widths)


def bisect_widths(evaluate, n, max_width, eps):
    """The vectorised bisection of `width_needed`: `evaluate(indices, widths)` returns the
    relative errors of those rows at those widths; returns the smallest width reaching `eps`
    per row, `-1` where `max_width` does not. Only rows still bracketing are evaluated."""
    lo = np.zeros(n, dtype=int)  # errors above eps at width lo (0: nothing fitted)
    hi = np.full(n, max_width)
    reached = np.asarray(evaluate(np.arange(n), hi)) <= eps
    while np.any(hi - lo > 1):
        idx = np.flatnonzero(hi - lo > 1)
        mid = (lo[idx] + hi[idx]) // 2
        good = np.asarray(evaluate(idx, mid)) <= eps
        hi[idx], lo[idx] = np.where(good, mid, hi[idx]), np.where(good, lo[idx], mid)
    return np.where(reached, hi, -1)


def width_needed(target, eps, *, norm="L2", min_rate=None, max_rate=None, max_width=64, n_starts=8,
                 key=None, max_steps=400, rtol=1e-9):
    r"""The smallest width whose best (free-rate) relative error in `norm` is $\le$ `eps`.

    `target` is a kernel, or a pair `(kernel_fn, params)` to answer for several memory
    parameters at once (vectorised bisection: every step is one vmapped call, all widths padded
    to `max_width`). Assumes the best error is non-increasing in the width (true of the exact
    optimum; the multi-start search approximates it). Returns an int (or an int array for
    several parameters); `-1` where even `max_width` does not reach `eps`.

    ```python
    import jax, jaxmem
    jax.config.update("jax_enable_x64", True)
    jaxmem.width_needed(jaxmem.PowerLaw(1.0), 1e-2, max_width=8, n_starts=2)
    ```
    """
    if not (np.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be a finite number > 0 (a relative error); got {eps!r}.")
    check_args(max_width, norm, min_rate, max_rate)
    if isinstance(target, AbstractKernel):
        single, kernel_fn, params = True, (lambda p, k=target: k), np.zeros(1)
    else:
        single, (kernel_fn, params) = False, target
        params = np.atleast_1d(np.asarray(params, dtype=np.float64))
    keys = jr.split(jr.key(0) if key is None else key, len(params))

    def evaluate(idx, widths):
        # Every step pads to len(params) rows: one compiled program for the whole search.
        rel = np.empty(len(idx))
        for rows, out in fit_rows(kernel_fn, params[idx], widths, [min_rate] * len(idx), keys[idx], pad=max_width,
                                  max_rate=max_rate, norm=norm, n_starts=n_starts, max_steps=max_steps, rtol=rtol,
                                  batch_size=len(params)):
            rel[rows] = out["relative_error"]
        return rel

    out = bisect_widths(evaluate, len(params), max_width, eps)
    return int(out[0]) if single else out
