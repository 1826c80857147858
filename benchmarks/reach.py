"""How far out in the lag L the flow's hitting-time search reaches.

For L = 32, 36, ..., 60 on the canonical experiment (m = 10, `jaxmem.canonical_model()` on
`jaxmem.plateau_target(L)`), `jaxmem.hitting_times` with `jaxmem.long_lag_solver()` (or `--solver rodas4`), δ = 0.05 (τ₀) and δ_loss = 0.01 (τ₀′),
at two step-controller tolerances (rtol/atol 1e-8/1e-10, the default, and 3e-9/3e-11). Prints
per lag and tolerance: τ₀, τ₀′, the solver steps, the outcome, and the seconds after
compilation (one compilation per tolerance serves every lag: the first call, at the first lag,
is timed separately as "compile"); then the relative disagreement between the tolerances and a
least-squares fit of log τ₀ (and of log τ₀′ where found at every lag) against L, with its
residuals.

Run: .venv/bin/python benchmarks/reach.py [--lags 32 36 ...] [--max-steps 20000] [--solver newton]
`--solver newton` (the default) is `jaxmem.long_lag_solver()`, `rodas4` the library's default.
`--max-steps` is the budget per solve segment (`HittingTimeSearch.max_steps`; the library's
default is 8192).
"""

import argparse
import os
import platform
import time

import diffrax
import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

import jaxmem  # noqa: E402
from jaxmem.internal import result_names  # noqa: E402

TOLERANCES = ((1e-8, 1e-10), (3e-9, 3e-11))


SOLVERS = dict(newton=jaxmem.long_lag_solver, rodas4=jaxmem.default_solver)


def search(solver, rtol, atol, max_steps):
    return jaxmem.HittingTimeSearch(solver=SOLVERS[solver](),
                                    stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
                                    delta_param=0.05, delta_loss=0.01, max_steps=max_steps)


def run(lags, solver, max_steps):
    model = jaxmem.canonical_model()
    table = {}
    for rtol, atol in TOLERANCES:
        s = search(solver, rtol, atol, max_steps)
        t0 = time.perf_counter()
        jax.block_until_ready(jaxmem.hitting_times(model, jaxmem.plateau_target(lags[0]), search=s, throw=False))
        print(f"rtol {rtol:g}, atol {atol:g}: compile + first lag {time.perf_counter() - t0:.1f} s")
        for lag in lags:
            t0 = time.perf_counter()
            h = jax.block_until_ready(jaxmem.hitting_times(model, jaxmem.plateau_target(lag), search=s, throw=False))
            sec = time.perf_counter() - t0
            row = dict(tau0=float(h.tau_param), tau0p=float(h.tau_loss), steps=int(h.steps),
                       result=result_names(h.result)[0], sec=sec)
            table[(rtol, lag)] = row
            print(f"  L = {lag:4.0f}  tau0 = {row['tau0']:.6e}  tau0' = {row['tau0p']:.6e}  steps = {row['steps']:6d}"
                  f"  {row['result']:<20s} {sec:6.2f} s", flush=True)
    return table


def _fit(lags, taus, name):
    ok = np.isfinite(taus)
    if ok.sum() < 3:
        print(f"{name}: found at {ok.sum()} lags, no fit")
        return
    y = np.log(taus[ok])
    slope, intercept = np.polyfit(lags[ok], y, 1)
    res = y - (intercept + slope * lags[ok])
    print(f"{name}: log tau = {intercept:.3f} + {slope:.4f} L over {ok.sum()} lags; residuals (in log tau) "
          + " ".join(f"{r:+.3f}" for r in res))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lags", type=float, nargs="+", default=[float(x) for x in range(32, 61, 4)])
    p.add_argument("--max-steps", type=int, default=20_000)
    p.add_argument("--solver", choices=sorted(SOLVERS), default="newton",
                   help="newton: jaxmem.long_lag_solver() (default); rodas4: the library's default solver")
    args = p.parse_args()
    print(f"jax {jax.__version__}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores")
    lags = np.asarray(args.lags, float)
    print(f"solver {args.solver}, {args.max_steps} steps per segment")
    table = run(list(lags), args.solver, args.max_steps)
    (r1, _), (r2, _) = TOLERANCES
    print("relative disagreement between the tolerances:")
    for lag in lags:
        a, b = table[(r1, lag)], table[(r2, lag)]
        d = [abs(a[k] - b[k]) / abs(b[k]) if np.isfinite(a[k]) and np.isfinite(b[k]) else float("nan")
             for k in ("tau0", "tau0p")]
        print(f"  L = {lag:4.0f}  tau0 {d[0]:.1e}  tau0' {d[1]:.1e}")
    for rtol, _ in TOLERANCES:
        _fit(lags, np.array([table[(rtol, lag)]["tau0"] for lag in lags]), f"tau0  (rtol {rtol:g})")
        _fit(lags, np.array([table[(rtol, lag)]["tau0p"] for lag in lags]), f"tau0' (rtol {rtol:g})")


if __name__ == "__main__":
    main()
