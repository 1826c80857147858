"""What the theory predicts, and fits that compare measurements with it."""

import equinox as eqx
import jax.numpy as jnp
import numpy as np


def plateau_bound(omega, w_min, *, delta=0.05, width=10):
    r"""The JMLR Thm 20 lower bound on the plateau length, up to its constant:

    $\tau_0 \gtrsim \omega^2 e^{w_l^0/\omega}\min\{\delta/\sqrt m,\ \ln(1+\delta)\}$,

    exponential in the memory $1/\omega$ with rate $w_l^0$, the smallest initial decay rate.

    ```python
    import jaxmem
    jaxmem.plateau_bound(1 / 18, 0.5)   # ~ 0.05 * e^9 / 18^2 * 0.0158
    ```
    """
    omega = jnp.asarray(omega, dtype=float)
    if np.any(np.asarray(omega) <= 0):
        raise ValueError(f"omega must be > 0; got {omega}.")
    if delta <= 0:
        raise ValueError(f"delta must be > 0; got {delta}.")
    return omega**2 * jnp.exp(w_min / omega) * min(delta / np.sqrt(width), np.log1p(delta))


class ExpFit(eqx.Module):
    """A fit log τ = intercept + slope·L over the rows where τ was reached."""

    slope: float
    intercept: float
    r2: float
    n: int

    def __call__(self, lags):
        return np.exp(self.intercept + self.slope * np.asarray(lags, dtype=float))


def fit_exponential(lags, taus) -> ExpFit:
    """Least-squares fit of log τ against L = 1/ω (non-finite or non-positive τ are skipped).

    Returns slope (compare with the theory's w_l⁰), intercept and R²; NaNs when fewer than two
    points remain.
    """
    lags = np.asarray(lags, dtype=float)
    taus = np.asarray(taus, dtype=float)
    if lags.shape != taus.shape:
        raise ValueError(f"lags and taus must have the same shape; got {lags.shape} and {taus.shape}.")
    ok = np.isfinite(taus) & (taus > 0) & np.isfinite(lags)
    if ok.sum() < 2:
        return ExpFit(float("nan"), float("nan"), float("nan"), int(ok.sum()))
    x, y = lags[ok], np.log(taus[ok])
    slope, intercept = np.polyfit(x, y, 1)
    resid = y - (intercept + slope * x)
    ss = np.sum((y - y.mean()) ** 2)
    r2 = 1.0 - np.sum(resid**2) / ss if ss > 0 else 1.0
    return ExpFit(float(slope), float(intercept), float(r2), int(ok.sum()))
