"""The memory tools' speed: the perturbation test as one compiled vmapped call against a loop of
the same jitted single-configuration function, and the kernel estimate from 48 × 2400 samples.

Perturbation test: 2 kernels (exp = e^{-t}(1+t)^-2, powerlaw = (1+t)^-2) × 4 widths (2, 4, 8, 12)
× 21 perturbation sizes × 10 samples = 1680 errors of perturbed best fits (rates >= 0.5),
`perturbed_errors` (one program, kernels unrolled, the rest vmapped) against a Python loop
calling `perturbed_error_jit` once per (kernel, width, size, sample) on the same padded arrays
(one compilation per kernel type); both compute the closed-form loss (the direct integral at
β = 0) and flag the entries whose closed form lost its digits, which `perturbation_test` then
integrates (not timed here). The fits are made once, outside the timings.

Kernel estimate: 48 white-noise paths of 2400 samples (dt = 0.05, T = 120) through the power law
(1+t)^-2 by the exact interpolated-convolution rule (numpy, Gauss-Legendre per interval), 1%
observation noise; `jaxmem.estimate_kernel` (exponential basis, 5-fold CV, 200 bootstrap
resamples) against plain grid least squares (`least_squares_kernel`, horizon 30), relative L²
errors on [0, 30]. `--quick`: fewer repeats.
"""

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from numpy.polynomial.legendre import leggauss
from scipy.signal import fftconvolve

jax.config.update("jax_enable_x64", True)
import jaxmem  # noqa: E402
from jaxmem.internal import (  # noqa: E402
    directions,  # noqa: E402
    perturbed_error_jit,
    perturbed_errors,
)


def exact_outputs(rho, xs, dt):
    """y(t_j) = ∫_0^{t_j} ρ(s) x̃(t_j - s) ds, x̃ piecewise linear, nothing before 0 (numpy)."""
    n = xs.shape[-1]
    x, w = leggauss(16)
    u, w = (x + 1) / 2, w / 2
    s = (np.arange(n)[:, None] + u) * dt
    A = (rho(s) * (1 - u) * w).sum(1) * dt
    B = (rho(s) * u * w).sum(1) * dt
    h = A.copy()
    h[1:] += B[:-1]
    return fftconvolve(xs, h[None], axes=1)[:, :n] - A[None, :] * xs[:, :1]


def timed(f, repeats):
    out, times = None, []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = f()
        times.append(time.perf_counter() - t0)
    return out, statistics.median(times)


def perturbation(repeats):
    kernels = (jaxmem.Damped(jaxmem.PowerLaw(1.0), 1.0), jaxmem.PowerLaw(1.0))
    widths, betas, S = (2, 4, 8, 12), np.r_[0.0, np.geomspace(1e-4, 1.0, 20)], 10
    t0 = time.perf_counter()
    res = jaxmem.perturbation_test(kernels, widths, betas, n_samples=S, min_rate=0.5)
    t_all = time.perf_counter() - t0
    A, W = jnp.asarray(res.coeffs), jnp.asarray(res.rates)
    on = jnp.asarray(np.arange(max(widths))[None, :] < np.asarray(widths)[:, None])
    first, rnd = directions(jax.random.split(jax.random.key(0))[1], S, np.asarray(A))
    dirs = jnp.asarray(np.concatenate([first, rnd])[:S])
    b = jnp.asarray(betas)

    t0 = time.perf_counter()
    jax.block_until_ready(perturbed_errors(kernels, A, W, on, b, dirs))
    compile_v = time.perf_counter() - t0
    vm, t_v = timed(lambda: jax.block_until_ready(perturbed_errors(kernels, A, W, on, b, dirs)), repeats)

    def loop():
        out = [perturbed_error_jit(k, A[i, j], W[i, j], on[j], b[q], dirs[s])
               for i, k in enumerate(kernels) for j in range(len(widths)) for q in range(len(betas)) for s in range(S)]
        return jax.block_until_ready(out)

    t0 = time.perf_counter()
    for i, k in enumerate(kernels):  # compile once per kernel type
        jax.block_until_ready(perturbed_error_jit(k, A[i, 0], W[i, 0], on[0], b[0], dirs[0]))
    compile_l = time.perf_counter() - t0
    lp, t_l = timed(loop, max(1, repeats // 2))
    vm, ok_v = vm
    lp, ok_l = np.asarray([x[0] for x in lp]).reshape(np.shape(vm)), np.asarray([x[1] for x in lp]).reshape(np.shape(vm))
    both = np.isfinite(vm) & np.isfinite(lp) & np.asarray(ok_v)
    same_inf = np.array_equal(np.isinf(vm), np.isinf(lp))
    diff = np.max(np.abs(np.asarray(vm)[both] - lp[both]) / np.maximum(np.abs(lp[both]), 1e-300))
    n = np.size(vm)
    print(f"perturbation test: {len(kernels)} kernels x {len(widths)} widths x {len(betas)} sizes x {S} samples = {n}")
    print(f"  perturbation_test end to end (fits included, first call): {t_all:8.2f} s")
    print(f"  one vmapped call : {t_v * 1e3:9.2f} ms  (compile {compile_v:.2f} s)")
    print(f"  loop of {n} calls: {t_l * 1e3:9.2f} ms  (compile {compile_l:.2f} s), {t_l / n * 1e6:.1f} µs per call")
    print(f"  ratio loop / vmapped: {t_l / t_v:.1f}x   (goal >= 5x: {'met' if t_l / t_v >= 5 else 'NOT met'})")
    print(f"  agreement: same infinite entries {same_inf}, same reliable flags {np.array_equal(ok_v, ok_l)}, "
          f"largest relative difference (reliable entries) {diff:.1e}; {int((~ok_v).sum())} entries left to the integral fix-up")
    radius = np.asarray(res.radius)
    for i, name in enumerate(("exp", "powerlaw")):
        print(f"  blow-up radius {name:8s}: " + "  ".join(f"m={m}: {r:.3g}" for m, r in zip(widths, radius[i])))


def estimate(repeats):
    rng = np.random.default_rng(0)
    dt, n, P = 0.05, 2400, 48
    rho = lambda t: (1.0 + t) ** -2.0  # noqa: E731
    xs = rng.standard_normal((P, n)) / np.sqrt(dt)
    ys = exact_outputs(rho, xs, dt)
    ys = ys + 0.01 * ys.std() * rng.standard_normal(ys.shape)
    ts = np.arange(n) * dt
    tq = np.linspace(0.0, 30.0, 3001)

    def err(k):
        e = np.asarray(k(jnp.asarray(tq))) - rho(tq)
        return np.sqrt(np.trapezoid(e**2, tq) / np.trapezoid(rho(tq) ** 2, tq))

    est, t_e = timed(lambda: jaxmem.estimate_kernel(ts, xs, ys), repeats)
    rect, t_r = timed(lambda: jaxmem.least_squares_kernel(ts, xs, ys, horizon=30.0, rule="rectangle"), 1)
    trap, t_t = timed(lambda: jaxmem.least_squares_kernel(ts, xs, ys, horizon=30.0, rule="trapezoid"), 1)
    print(f"kernel estimate: {P} paths x {n} samples (dt {dt}), power law (1+t)^-2, 1% observation noise")
    print(f"  estimate_kernel (exp basis, CV, 200 bootstrap): {t_e:6.2f} s   L2 error on [0, 30]: {err(est):.2e}"
          f"   (horizon chosen {est.window:.3g}, alpha {est.alpha:.2e})")
    print(f"  grid least squares, rectangle rule          : {t_r:6.2f} s   L2 error on [0, 30]: {err(rect):.2e}")
    print(f"  grid least squares, trapezoid rule          : {t_t:6.2f} s   L2 error on [0, 30]: {err(trap):.2e}")
    d = jaxmem.decay_class(est)
    print(f"  decay class of the estimate: {d.kind}, exponent {d.exponent:.3f} {tuple(round(x, 3) for x in d.exponent_ci)}"
          f" on {tuple(round(x, 2) for x in d.window)}, bootstrap agreement {d.agreement:.2f}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--skip-estimate", action="store_true")
    args = p.parse_args()
    print(f"devices: {jax.devices()}")
    perturbation(3 if args.quick else 7)
    if not args.skip_estimate:
        estimate(1 if args.quick else 3)
