"""Plateau hitting times by the gradient flow vs by gradient descent.

For L in {12, 18, 24, 30} on the canonical experiment (m = 10), the wall time to find τ₀
(δ = 0.05) and τ₀′ (δ_loss = 0.01):

- flow: `jaxmem.hitting_times` (Rodas4, events), one call gives both times;
- GD:   `jaxmem.train(..., "gd", lr=1e-2)` on the same exact loss, which stops when both hold.

Times are after compilation (the first call of each, at L = 12, is reported separately as
"compile"); each is the best of `--repeats` runs. Where GD would need more than `--cap`
iterations (its iteration count is predicted as τ₀′/η from the flow's τ₀′), GD is run to the
cap, its time per iteration measured, and its time extrapolated to τ₀′/η iterations: such rows
are marked "extrapolated".

`--with-cli` also times the whole process `jaxmem plateau --preset canonical --out <tmp>` twice
as subprocesses, with JAXMEM_CACHE_DIR set to a fresh folder: cold (empty JAX persistent
compilation cache) and warm (second run, same cache). This takes several minutes on 2 CPU
cores (see the README of the benchmark output below / the printed timings).

Run: .venv/bin/python benchmarks/flow_vs_descent.py [--with-cli] [--cap 2000000] [--repeats 3]
Goals on 2 CPU cores: the flow answers L = 30 in < 2 s after compilation, >= 1000x faster
than GD there.
"""

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

import jax

jax.config.update("jax_enable_x64", True)

import jaxmem  # noqa: E402

LAGS = (12.0, 18.0, 24.0, 30.0)
LR = 1e-2
DELTA_PARAM = 0.05
DELTA_LOSS = 0.01


def _timed(fn, repeats):
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t0)
    return best, out


def flow_vs_gd(cap, repeats):
    model = jaxmem.canonical_model()

    def flow(lag):
        return jaxmem.hitting_times(model, jaxmem.plateau_target(lag), delta_param=DELTA_PARAM,
                                    delta_loss=DELTA_LOSS)

    def gd(lag, max_steps):
        return jaxmem.train(model, jaxmem.plateau_target(lag), "gd", lr=LR, max_steps=max_steps,
                            delta_param=DELTA_PARAM, delta_loss=DELTA_LOSS)

    t0 = time.perf_counter()
    jax.block_until_ready(flow(LAGS[0]))
    flow_compile = time.perf_counter() - t0
    t0 = time.perf_counter()
    jax.block_until_ready(gd(LAGS[0], cap))
    gd_compile = time.perf_counter() - t0
    print(f"compile (first call at L = {LAGS[0]:g}, including its run): flow {flow_compile:.1f} s, "
          f"GD {gd_compile:.1f} s", flush=True)

    rows = []
    for lag in LAGS:
        t_flow, h = _timed(lambda: flow(lag), repeats)
        assert bool(h.result == jaxmem.RESULTS.successful), lag
        tau0, tau1 = float(h.tau_param), float(h.tau_loss)
        predicted = tau1 / LR  # GD iterations to τ₀′, from the flow
        if predicted <= cap:
            t_gd, r = _timed(lambda: gd(lag, cap), repeats if predicted < 2e5 else 1)
            assert bool(r.reached_loss), lag
            mode, gd_tau0, gd_tau1, iters = "measured", float(r.tau_param), float(r.tau_loss), int(r.steps)
        else:
            t_cap, r = _timed(lambda: gd(lag, cap), 1)
            assert int(r.steps) == cap and not bool(r.reached_loss)
            per_iter = t_cap / cap
            t_gd = per_iter * predicted
            gd_tau0 = float(r.tau_param) if bool(r.reached_param) else float("nan")
            mode, gd_tau1, iters = f"extrapolated ({cap:.0e} its at {per_iter * 1e6:.2f} us/it)", float("nan"), int(predicted)
        rows.append(dict(lag=lag, tau0=tau0, tau1=tau1, steps=int(h.steps), t_flow=t_flow, t_gd=t_gd,
                         gd_tau0=gd_tau0, gd_tau1=gd_tau1, iters=iters, mode=mode))
        print(f"  L = {lag:g}: flow {t_flow:.3f} s, GD {t_gd:.3g} s ({mode})", flush=True)

    print()
    head = (f"{'L':>4} {'tau0 (flow)':>12} {'tau0p (flow)':>13} {'flow steps':>10} {'flow s':>8} "
            f"{'GD tau0':>10} {'GD tau0p':>10} {'GD iters':>10} {'GD s':>10} {'GD/flow':>9}  GD time")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['lag']:4g} {r['tau0']:12.5g} {r['tau1']:13.5g} {r['steps']:10d} {r['t_flow']:8.3f} "
              f"{r['gd_tau0']:10.5g} {r['gd_tau1']:10.5g} {r['iters']:10.3g} {r['t_gd']:10.4g} "
              f"{r['t_gd'] / r['t_flow']:9.3g}  {r['mode']}")
    last = rows[-1]
    print()
    print(f"goal at L = {last['lag']:g}: flow < 2 s after compilation: {last['t_flow']:.3f} s "
          f"({'met' if last['t_flow'] < 2 else 'NOT met'}); >= 1000x faster than GD: "
          f"{last['t_gd'] / last['t_flow']:.3g}x ({'met' if last['t_gd'] / last['t_flow'] >= 1000 else 'NOT met'})")
    return rows


def _jaxmem_command():
    exe = os.path.join(os.path.dirname(sys.executable), "jaxmem")
    return [exe] if os.path.exists(exe) else [sys.executable, "-m", "jaxmem"]


def cli_cold_warm():
    cache = tempfile.mkdtemp(prefix="jaxmem-cache-")
    env = dict(os.environ, JAXMEM_CACHE_DIR=cache)
    env.pop("JAXMEM_NO_CACHE", None)
    times = []
    try:
        for label in ("cold (empty persistent cache)", "warm (same cache, second run)"):
            out = tempfile.mkdtemp(prefix="jaxmem-plateau-")
            cmd = [*_jaxmem_command(), "plateau", "--preset", "canonical", "--out", out, "--no-progress"]
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            dt = time.perf_counter() - t0
            shutil.rmtree(out, ignore_errors=True)
            if proc.returncode != 0:
                print(proc.stdout[-2000:], proc.stderr[-2000:])
                raise SystemExit(f"`{' '.join(cmd)}` failed with exit code {proc.returncode}")
            times.append(dt)
            print(f"  jaxmem plateau --preset canonical, {label}: {dt:.1f} s", flush=True)
    finally:
        size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(cache) for f in fs)
        shutil.rmtree(cache, ignore_errors=True)
    print(f"  cold/warm = {times[0] / times[1]:.2f}x; persistent cache {size / 1e6:.1f} MB "
          f"(whole-process times: Python + JAX import, compilation or cache load, all rows, files)")
    return times


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cap", type=int, default=2_000_000, help="GD iteration cap before extrapolating")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats (best of) for each row")
    p.add_argument("--with-cli", action="store_true", help="also time `jaxmem plateau --preset canonical` cold/warm")
    args = p.parse_args(argv)
    try:
        load = os.getloadavg()
    except OSError:  # pragma: no cover
        load = (float("nan"),) * 3
    print(f"flow vs gradient descent (eta = {LR:g}) on the canonical plateau experiment, m = 10, "
          f"delta_param = {DELTA_PARAM}, delta_loss = {DELTA_LOSS}")
    print(f"jax {jax.__version__}, jaxmem {jaxmem.__version__}, device {jax.devices()[0]}, "
          f"{os.cpu_count()} CPUs, load average {load[0]:.1f}, {platform.platform()}")
    print(f"flow: {type(jaxmem.HittingTimeSearch().solver).__name__}, rtol 1e-8, atol 1e-10")
    flow_vs_gd(args.cap, args.repeats)
    if args.with_cli:
        print()
        print("whole-process time of `jaxmem plateau --preset canonical` (subprocesses, fresh JAXMEM_CACHE_DIR):")
        cli_cold_warm()


if __name__ == "__main__":
    main()
