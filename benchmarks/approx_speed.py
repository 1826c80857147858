"""12-width x 8-omega free-rate error map: one compiled vmapped jaxmem call vs a loop of scipy fits.

Both minimise the same variable-projection objective log J(w), w = min_rate + e^u, from the same
starts, BFGS to gradient tolerance ~1e-9; scipy evaluates the power law's Laplace moments with a
numpy port of the same closed forms. Prints compile and run times, the ratio and the maps'
largest disagreement. `--quick`: 4 widths x 3 omegas x 2 starts.
"""

import argparse
import time

import jax
import numpy as np
import scipy.optimize as so
import scipy.special as sp

jax.config.update("jax_enable_x64", True)
import jaxmem
from jaxmem import error_map
from jaxmem.internal import start_rates


def scaled_expn(nu, z):
    """e^z E_nu(z), numpy: continued fraction for z >= 1, incomplete gamma + recurrence below."""
    z = np.asarray(z, dtype=float)
    out = np.empty_like(z)
    big = z >= 1
    zl = z[big]
    f = zl + nu + 240.0
    for k in range(120, 0, -1):
        f = zl + nu + 2.0 * (k - 1) - k * (nu + k - 1) / f
    out[big] = 1.0 / f
    zs = z[~big]
    n = int(np.floor(nu))
    nu0 = nu - n
    if nu0 == 0:
        e, start, steps = sp.exp1(zs), 1.0, n - 1
    else:
        e, start, steps = zs ** (nu0 - 1) * sp.gamma(1 - nu0) * sp.gammaincc(1 - nu0, zs), nu0, n
    for k in range(steps):
        e = (np.exp(-zs) - zs * e) / (start + k)
    out[~big] = np.exp(zs) * e
    return out


def scipy_fit(omega, m, starts, lo):
    c = 1.0 / (1.0 + 2.0 * omega)

    def J_grad(u):
        w = lo + np.exp(np.clip(u, np.log(1e-4 / 50), np.log(1e5 / 50)))
        b0 = scaled_expn(1 + omega, w)
        b1 = scaled_expn(omega, w) - b0
        G = 1.0 / (w[:, None] + w[None, :])
        d = np.sqrt(2 * w)
        lam, V = np.linalg.eigh(d[:, None] * G * d[None, :])
        keep = lam > 1e-13 * lam[-1]
        p = V.T @ (d * b0)
        z = np.where(keep, p / np.where(keep, lam, 1), 0)
        a = d * (V @ z)
        J = max(c - p @ z, 0.0)
        g = -2 * a * ((G * G) @ a - b1) * (w - lo)
        return np.log(J / c + 1e-14), g / (J + 1e-14 * c)

    best = np.inf
    for w0 in starts:
        r = so.minimize(J_grad, np.log(w0 - lo), jac=True, method="BFGS", options={"gtol": 1e-9, "maxiter": 400})
        best = min(best, np.sqrt(max(np.exp(r.fun) - 1e-14, 0.0)))
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--min-rate", type=float, default=0.5)
    args = ap.parse_args()
    widths = [1, 2, 4, 8] if args.quick else [1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24]
    omegas = [0.5, 1.0, 2.0] if args.quick else [0.25, 0.35, 0.5, 0.7, 1.0, 1.4, 2.0, 3.0]
    n_starts = 2 if args.quick else 8
    kw = dict(min_rate=args.min_rate, n_starts=n_starts, key=jax.random.key(0))
    fn = lambda om: jaxmem.PowerLaw(om)
    print(f"device: {jax.devices()[0]}; {len(widths)} widths x {len(omegas)} omegas x {n_starts} starts")
    t0 = time.perf_counter()
    error_map(fn, omegas, widths, **kw)
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    jmap = error_map(fn, omegas, widths, **kw)["relative_error"]
    t_jax = time.perf_counter() - t0
    print(f"jaxmem: first call (compile + run) {t_first:.2f} s, run {t_jax:.2f} s")
    keys = jax.random.split(jax.random.key(0), len(omegas) * len(widths))
    smap = np.zeros_like(jmap)
    t0 = time.perf_counter()
    for i, om in enumerate(omegas):
        for j, m in enumerate(widths):
            st = np.asarray(start_rates(keys[i * len(widths) + j], m, n_starts, args.min_rate, np.inf, 50.0))
            smap[i, j] = scipy_fit(om, m, st, args.min_rate)
    t_scipy = time.perf_counter() - t0
    print(f"scipy loop: {t_scipy:.2f} s")
    print(f"ratio scipy / jaxmem (run): {t_scipy / t_jax:.1f}x; incl. compile: {t_scipy / t_first:.1f}x")
    dis = np.abs(np.log10(np.maximum(jmap, 1e-16)) - np.log10(np.maximum(smap, 1e-16)))
    print(f"largest disagreement |log10 err_jax - log10 err_scipy|: {dis.max():.3g} "
          f"(relative {np.max(np.abs(jmap - smap) / smap):.3g})")


if __name__ == "__main__":
    main()
