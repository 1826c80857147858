r"""The decay class of a memory: exponential ($\log M$ linear in $t$) or polynomial ($\log M$
linear in $\log t$), by cross-validated tail fits, with confidence intervals."""

import equinox as eqx
import numpy as np

from .._kernels import AbstractKernel
from .._models import DiagonalRNN, LinearRNN
from ._estimate import KernelEstimate
from ._function import memory_function

KINDS = ("exponential", "polynomial")


class DecayClass(eqx.Module):
    r"""The decay class of a memory function and the two tail fits it was chosen from.

    - `kind`: `"exponential"` or `"polynomial"`: the fit with the smaller cross-validated error.
    - `rate`, `rate_ci`: $\beta$ of the exponential fit $\log M = a - \beta t$ (the slowest decay).
    - `exponent`, `exponent_ci`: $1 + \omega$ of the polynomial fit $\log M = a - (1+\omega)\log t$.
    - `cv_exponential`, `cv_polynomial`: their cross-validated mean squared errors in $\log M$.
    - `window`: the tail $[t_a, t_b]$ fitted; `agreement`: for an estimate, the fraction of
      bootstrap kernels whose class is `kind` (1.0 otherwise); `level`: of the intervals;
      `interval`: how they were made (`"fit"`: least-squares standard errors, `"bootstrap"`).
    """

    kind: str = eqx.field(static=True)
    rate: float = eqx.field(static=True)
    rate_ci: tuple = eqx.field(static=True)
    exponent: float = eqx.field(static=True)
    exponent_ci: tuple = eqx.field(static=True)
    cv_exponential: float = eqx.field(static=True)
    cv_polynomial: float = eqx.field(static=True)
    window: tuple = eqx.field(static=True)
    agreement: float = eqx.field(static=True)
    level: float = eqx.field(static=True)
    interval: str = eqx.field(static=True)

    @property
    def omega(self) -> float:
        """$\\omega$ of the polynomial fit ($M \\sim t^{-(1+\\omega)}$)."""
        return self.exponent - 1.0


def _line(x, y):
    """Least squares y = a + s x: (a, s, standard error of s)."""
    X = np.stack([np.ones_like(x), x], axis=1)
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    res = y - X @ coef
    dof = max(len(x) - 2, 1)
    cov = np.linalg.pinv(X.T @ X) * (res @ res) / dof
    return coef[0], coef[1], float(np.sqrt(max(cov[1, 1], 0.0)))


def _cv(x, y, n_folds):
    """Mean squared prediction error of the line over interleaved folds."""
    err = 0.0
    for k in range(n_folds):
        val = np.arange(len(x)) % n_folds == k
        a, s, _ = _line(x[~val], y[~val])
        err += np.sum((y[val] - a - s * x[val]) ** 2)
    return err / len(x)


def _fits(t, m, n_folds):
    y = np.log(m)
    lt = np.log(t)
    _, s_e, se_e = _line(t, y)
    _, s_p, se_p = _line(lt, y)
    return dict(rate=-s_e, rate_se=se_e, exponent=-s_p, exponent_se=se_p,
                cv_e=_cv(t, y, n_folds), cv_p=_cv(lt, y, n_folds))


def _tail_of_exact(obj, floor, n_points):
    """A window [T/10, T]: T where M first falls below `floor` × its maximum (on a log grid up to
    1e8 horizons), for kernels and linear models evaluated exactly."""
    if isinstance(obj, AbstractKernel):
        h = float(obj.horizon())
    else:
        W = np.asarray(obj.dense()[0])
        h = 40.0 / max(-np.max(np.linalg.eigvals(W).real), 1e-300)
    t = np.geomspace(1e-3 * h, 1e8 * h, 2000)
    m = np.asarray(memory_function(obj, t))
    top = np.max(m)
    below = np.flatnonzero(m < floor * top)
    T = t[below[0]] if below.size else t[-1]
    return np.geomspace(T / 10, T, n_points)


def decay_class(obj, ts=None, *, window=None, floor=1e-250, n_points=64, n_folds=5, level=0.95,
                **memory_kwargs) -> DecayClass:
    r"""Whether a memory decays exponentially or polynomially, from the tail of its memory
    function, with confidence intervals.

    The criterion: on a tail window $[t_a, t_b]$, the two parametric fits $\log M = a - \beta t$
    and $\log M = a - (1+\omega)\log t$ are compared by `n_folds`-fold cross-validated squared
    error in $\log M$ (interleaved folds); the smaller one names the class.

    - A kernel or a linear RNN: $M = |\rho|$ exactly on `n_points` log-spaced times in
      $[T/10, T]$, $T$ the time at which $M$ falls below `floor` × its maximum (default 1e-250:
      deep in the tail, where a power law's $(1 + t/s)$ is $t/s$ and an exponentially damped
      kernel's polynomial factor no longer bends the line). Intervals from the fit (`level`
      t-intervals of the slopes).
    - A `KernelEstimate`: its grid, on $[t_b/5, t_b]$ with $t_b$ the last time at which the
      estimate exceeds three bootstrap standard errors; intervals are bootstrap percentiles of
      the same fits on the bootstrap kernels, and `agreement` is their share of the class.
    - Any other model: `memory_function(obj, ts, **memory_kwargs)` on `ts`, on $[t_b/10, t_b]$
      with $t_b$ the last time at which $M$ exceeds 1e-8 of its maximum.

    `window=(t_a, t_b)` overrides the window in every case.

    ```python
    import jax, jaxmem
    jax.config.update("jax_enable_x64", True)
    d = jaxmem.decay_class(jaxmem.PowerLaw(0.5))
    d.kind, d.exponent                       # 'polynomial', ~1.5
    jaxmem.decay_class(jaxmem.Damped(jaxmem.PowerLaw(1.0), 0.5)).rate      # ~0.5
    ```
    """
    if not (0 < level < 1):
        raise ValueError(f"level must satisfy 0 < level < 1; got {level!r}.")
    samples = None
    if isinstance(obj, KernelEstimate):
        t, m = np.asarray(obj.ts), np.abs(np.asarray(obj.rho))
        samples = np.abs(np.asarray(obj.samples))
        if window is None:
            se = samples.std(axis=0) if samples.shape[0] > 1 else np.zeros_like(m)
            sig = np.flatnonzero((m > 3 * se) & (t > 0))
            t_b = t[sig[-1]] if sig.size else t[-1]
            window = (t_b / 5, t_b)
    elif isinstance(obj, (AbstractKernel, DiagonalRNN, LinearRNN)) and not memory_kwargs and ts is None:
        t = _tail_of_exact(obj, floor, n_points) if window is None else np.geomspace(*window, n_points)
        m = np.asarray(memory_function(obj, t))
        window = (float(t[0]), float(t[-1]))
    else:
        if ts is None:
            raise ValueError("decay_class of a simulated model needs ts (a uniform grid from 0).")
        t = np.asarray(ts, dtype=np.float64)
        m = np.asarray(memory_function(obj, ts, **memory_kwargs))
        if window is None:
            big = np.flatnonzero(m > 1e-8 * np.max(m))
            t_b = t[big[-1]] if big.size else t[-1]
            window = (t_b / 10, t_b)
    t_a, t_b = float(window[0]), float(window[1])
    sel = (t >= t_a) & (t <= t_b) & (t > 0) & (m > 0)
    if sel.sum() < max(2 * n_folds, 6):
        raise ValueError(f"the tail window [{t_a:.4g}, {t_b:.4g}] holds {int(sel.sum())} positive values of the "
                         f"memory function; need at least {max(2 * n_folds, 6)} (a longer grid or another window).")
    f = _fits(t[sel], m[sel], n_folds)
    kind = "exponential" if f["cv_e"] <= f["cv_p"] else "polynomial"
    q = (1 - level) / 2
    if samples is not None and samples.shape[0] > 1:
        boots = []
        for s in samples:
            ok = sel & (s > 0)
            if ok.sum() >= max(2 * n_folds, 6):
                boots.append(_fits(t[ok], s[ok], n_folds))
        rates = np.array([b["rate"] for b in boots])
        exps = np.array([b["exponent"] for b in boots])
        same = np.mean([(b["cv_e"] <= b["cv_p"]) == (kind == "exponential") for b in boots]) if boots else np.nan
        rate_ci = tuple(np.quantile(rates, [q, 1 - q])) if boots else (np.nan, np.nan)
        exp_ci = tuple(np.quantile(exps, [q, 1 - q])) if boots else (np.nan, np.nan)
        how = "bootstrap"
    else:
        import scipy.stats  # here: importing it takes ~0.7 s, which every command would pay

        z = scipy.stats.t.ppf(1 - q, max(int(sel.sum()) - 2, 1))
        rate_ci = (f["rate"] - z * f["rate_se"], f["rate"] + z * f["rate_se"])
        exp_ci = (f["exponent"] - z * f["exponent_se"], f["exponent"] + z * f["exponent_se"])
        same, how = 1.0, "fit"
    return DecayClass(kind, float(f["rate"]), tuple(map(float, rate_ci)), float(f["exponent"]),
                      tuple(map(float, exp_ci)), float(f["cv_e"]), float(f["cv_p"]), (t_a, t_b), float(same),
                      float(level), how)
