"""Sweep throughput: gradient-flow hitting times of a grid of plateau
problems by `jaxmem.plateau_sweep` (one compiled, vmapped, sharded computation, with
continuous batching) against a Python loop over the single-configuration
`jaxmem.hitting_times` (jitted once), measured in the same run.

Default grid: 32 lags (linspace 8..30) × 4 widths (4, 6, 8, 10) × 4 seeds (perturbation 0.01)
= 512 problems; `--scale K` takes K× as many lags (512·K problems, for accelerators).

Reports
- compile times (sweep and loop) separately from run times;
- problems per second (and per minute) of the sweep and of the loop, and their ratio. The
  loop is timed on a random sample of `--loop-sample` configurations (fixed seed) and scaled
  to the grid (the sample is uniform, so its mean is an unbiased per-problem time). The
  machines are noisy, so `--repeats` rounds each time the whole-grid sweep and then the loop
  sample side by side; the median of the rounds' ratios is the ratio reported (the ratio of
  the medians is printed too);
- peak host memory (`ru_maxrss`, each process's high-water mark, summed over processes) and,
  on a GPU, device memory (`peak_bytes_in_use`) after sweeps over growing grids (¼, ½ and all
  of the lags, run in that order, so each number is the peak up to and including that grid),
  before the loop's function is compiled (which raises the process's peak on its own);
- uneven costs: the sweep's wall time with the queue ordered by predicted
  plateau length (longest first) vs randomly shuffled, each compared with the sum of its
  members' individual times (estimated from the timed loop sample by a least-squares fit
  t = c0 + c1·steps, steps from the sweep's rows), and the slot utilisation
  Σ steps / (calls · slots · steps per call).

The flow runs with continuous batching: `--batch-size` slots advance `--chunk-steps` solver
steps per compiled call, and a finished problem's slot takes the next one at once.

CPU cores: XLA runs a vmapped batch on one core. `--processes N` runs the sweep as N processes
joined by `jax.distributed` (the multi-host code path, on one host), one device each: each
process runs `--batch-size`/N slots through its own share of the queue (no collective per
call; finished rows are traded every 2 s), each pinned to its own CPUs; the loop is timed
in process 0, unpinned, while the others wait. (One
process split into several XLA devices, `--xla_force_host_platform_device_count`, hangs on the
flow's program with jax 0.10: see benchmarks/RESULTS.md.)

Goals: sweep ≥ 3× the loop on 2 CPU cores; the 512-problem sweep under 1 GiB host memory;
on one GPU ≥ 10,000 hitting-time problems per minute.

    python benchmarks/sweep_throughput.py                 # the 512-problem grid, 1 process
    python benchmarks/sweep_throughput.py --processes 2 --batch-size 128   # one process per core
    python benchmarks/sweep_throughput.py --quick         # a small grid (CI-like)
    python benchmarks/sweep_throughput.py --scale 8 --batch-size 1024 --json gpu.json
"""

import argparse
import datetime
import json
import math
import os
import platform
import random
import resource
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp
import jax.random as jr
import numpy as np

import jaxmem
from jaxmem.internal import (
    canonical_params,
    init_distributed,
    is_launched,
    launch_local,
    pin_threads,
    sync as _sync,
)

DELTA_PARAM, DELTA_LOSS = 0.05, 0.01  # delta_loss 0.01: reached up to L = 30 and beyond
PERTURBATION = 0.01


def rss_mib():
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024 if sys.platform != "darwin" else r / 2**20  # KiB on Linux, bytes on macOS


def device_peak_mib():
    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:  # pragma: no cover - backends without memory stats
        stats = None
    if not stats or "peak_bytes_in_use" not in stats:
        return None
    return stats["peak_bytes_in_use"] / 2**20


def make_grid(n_lags, widths, n_seeds, lag_max=30.0):
    lags = [float(x) for x in np.linspace(8.0, lag_max, n_lags)]
    return lags, jaxmem.plateau_grid(lags, widths=widths, seeds=range(n_seeds), optimizers=("flow",))


TRACES = {"n": 0}  # traces of the sweep's compiled flow program (JAX's compile log)
jax.monitoring.register_event_duration_secs_listener(
    lambda event, duration, **kw: TRACES.__setitem__("n", TRACES["n"] + 1)
    if event == "/jax/core/compile/jaxpr_trace_duration" and kw.get("fun_name") == "advance_slots" else None
)


def sweep(configs, batch_size, order="predicted", chunk_steps=64):
    """(rows, wall seconds, compiled calls)."""
    stats = {}
    t0 = time.perf_counter()
    rows = jaxmem.plateau_sweep(configs, batch_size=batch_size, delta_param=DELTA_PARAM, delta_loss=DELTA_LOSS,
                                perturbation=PERTURBATION, order=order, progress=False, chunk_steps=chunk_steps,
                                stats=stats)
    wall = time.perf_counter() - t0
    calls = stats.get("flow", 0)
    if jax.process_count() > 1:  # each process makes its own calls: their total
        from jax.experimental import multihost_utils

        calls = int(np.sum(multihost_utils.process_allgather(np.array([calls]))))
    return rows, wall, calls


def gathered_rss():
    """Peak RSS (MiB) of every process (one entry in a single process)."""
    if jax.process_count() == 1:
        return [rss_mib()]
    from jax.experimental import multihost_utils

    return [float(x) for x in np.ravel(multihost_utils.process_allgather(np.array([rss_mib()])))]


def slot_utilisation(rows, calls, bs, chunk_steps):
    """Σ steps / (calls · slots · chunk_steps), with the calls of every process and the slots
    of one (`bs` / processes): the fraction of the solver steps the compiled
    calls could take that went to a problem (a lower bound: a call whose slots all stop early,
    at events, costs less than chunk_steps steps). What is missing is slots idling after their
    problem's event or end until the call returns, and empty slots at the end of the queue."""
    return sum(r["steps"] for r in rows) / max(1, calls * bs * chunk_steps)


def single_problem(c, max_width):
    """The sweep member `c` as a stand-alone model: the same padded, masked initialisation."""
    a, w, mask = canonical_params(jnp.asarray(c["width"], jnp.int32), max_width, dtype=jnp.float64,
                                  key=jr.key(c["seed"]), perturbation=PERTURBATION)
    model = jaxmem.DiagonalRNN(a, w, mask=mask)
    return model, jaxmem.plateau_target(jnp.asarray(c["lag"], jnp.float64))


def run_single(c, max_width):
    model, target = single_problem(c, max_width)
    h = jaxmem.hitting_times(model, target, delta_param=DELTA_PARAM, delta_loss=DELTA_LOSS)
    jax.block_until_ready(h)
    return h


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a small grid: 8 lags (8..14) × widths 4, 8 × 2 seeds")
    p.add_argument("--scale", type=int, default=1, help="K× as many lags (grid of 512·K problems)")
    p.add_argument("--batch-size", type=int, default=64, help="configurations per compiled call")
    p.add_argument("--loop-sample", type=int, default=64, help="configurations timed in the Python loop")
    p.add_argument("--no-shuffled", action="store_true", help="skip the shuffled-order sweep")
    p.add_argument("--chunk-steps", type=int, default=64, help="flow solver steps per compiled call")
    p.add_argument("--processes", type=int, default=1,
                   help="run the sweep as N processes joined by jax.distributed (one per CPU core); the "
                   "loop runs in process 0 alone, the others waiting")
    p.add_argument("--repeats", type=int, default=3,
                   help="rounds of (whole-grid sweep, loop sample), each timing both side by side; the median "
                   "of the rounds' ratios is reported (the machines are shared and noisy)")
    p.add_argument("--json", help="write every number to this JSON file")
    args = p.parse_args(argv)
    if args.processes > 1 and not is_launched():
        return sys.exit(launch_local([sys.executable, os.path.abspath(__file__), *(sys.argv[1:] if argv is None else argv)],
                                     args.processes))
    if is_launched():
        init_distributed()
    first = jax.process_index() == 0
    if min(args.scale, args.batch_size, args.chunk_steps, args.processes, args.repeats) < 1 or args.loop_sample < 2:
        p.error("--scale, --batch-size, --chunk-steps, --processes and --repeats must be >= 1, --loop-sample >= 2")

    if args.quick:
        n_lags, widths, n_seeds, lag_max = 8, (4, 8), 2, 14.0
        args.loop_sample = min(args.loop_sample, 8)
        args.batch_size = min(args.batch_size, 8)
    else:
        n_lags, widths, n_seeds, lag_max = 32 * args.scale, (4, 6, 8, 10), 4, 30.0
    lags, grid = make_grid(n_lags, widths, n_seeds, lag_max)
    n = len(grid)
    max_width = max(widths)
    devices = jax.devices()
    bs = len(devices) * math.ceil(min(args.batch_size, n) / len(devices))
    out = dict(
        date=datetime.datetime.now().isoformat(timespec="seconds"), command=" ".join(["python", *sys.argv]),
        device=str(devices[0]), device_kind=devices[0].device_kind, platform=devices[0].platform,
        n_devices=len(devices), processes=jax.process_count(), cpu_count=os.cpu_count(), host=platform.platform(),
        jax=jax.__version__, x64=bool(jax.config.jax_enable_x64),
        grid=dict(n=n, lags=f"linspace(8, {lag_max:g}, {n_lags})", widths=list(widths), seeds=n_seeds,
                  perturbation=PERTURBATION, delta_param=DELTA_PARAM, delta_loss=DELTA_LOSS),
        batch_size=bs, chunk_steps=args.chunk_steps,
    )
    cs = args.chunk_steps
    print(f"devices: {len(devices)} × {devices[0].device_kind} ({devices[0].platform}) in {jax.process_count()} "
          f"process(es); {os.cpu_count()} CPU cores; jax {jax.__version__}, x64")
    print(f"grid: {n} gradient-flow hitting-time problems = {n_lags} lags in [8, {lag_max:g}] × widths "
          f"{list(widths)} × {n_seeds} seeds; {bs} slots ({bs // len(devices)} per device), {cs} steps per call")
    out["rss_before_compile_mib"] = gathered_rss()
    print(f"host memory before compiling: {sum(out['rss_before_compile_mib']):.0f} MiB")

    # --- compile: the sweep (one batch of the shortest plateaus, twice) -----------------------
    warm = sorted(grid, key=lambda c: c["lag"])[:bs]
    before = TRACES["n"]
    _, first_s, _ = sweep(warm, bs, chunk_steps=cs)
    _, again, _ = sweep(warm, bs, chunk_steps=cs)
    traces = TRACES["n"] - before
    out["sweep_compile_s"] = first_s - again
    print(f"sweep: first run {first_s:.1f} s, again {again:.2f} s -> compile ≈ {first_s - again:.1f} s "
          f"({traces} trace)")

    out["rss_after_compile_mib"] = gathered_rss()
    print(f"host memory after compiling the sweep: {sum(out['rss_after_compile_mib']):.0f} MiB "
          f"(peak; XLA's compilation dominates it)")

    # --- sweeps over growing grids (¼, ½, all lags) ----------------------------------------------
    out["grids"] = []
    print("\nsweep (queue ordered by predicted plateau length, longest first; continuous batching):")
    print(f"  {'problems':>8} {'wall s':>8} {'problems/s':>11} {'problems/min':>13} {'peak RSS MiB':>13} "
          f"{'device peak MiB':>16}")
    rows_full, wall_full, calls_full = None, None, None
    fractions = (4, 2, 1) if n_lags >= 8 else (1,)
    for k in fractions:
        sub = [c for c in grid if lags.index(c["lag"]) % k == 0]
        rows, wall, calls = sweep(sub, bs, chunk_steps=cs)
        rss = gathered_rss()
        rec = dict(n=len(sub), wall_s=wall, per_s=len(sub) / wall, per_min=60 * len(sub) / wall, calls=calls,
                   peak_rss_mib=sum(rss), peak_rss_per_process_mib=rss, device_peak_mib=device_peak_mib(),
                   status={s: sum(r["status"] == s for r in rows) for s in {r["status"] for r in rows}})
        out["grids"].append(rec)
        dev = "-" if rec["device_peak_mib"] is None else f"{rec['device_peak_mib']:.0f}"
        print(f"  {rec['n']:>8} {wall:>8.1f} {rec['per_s']:>11.2f} {rec['per_min']:>13.0f} "
              f"{rec['peak_rss_mib']:>13.0f} {dev:>16}   status {rec['status']}")
        if k == 1:
            rows_full, calls_full = rows, calls

    # --- compile: the single-configuration function (jitted once; process 0 only) -------------
    if first:
        t0 = time.perf_counter()
        run_single(warm[0], max_width)
        first_l = time.perf_counter() - t0
        t0 = time.perf_counter()
        run_single(warm[0], max_width)
        again = time.perf_counter() - t0
        out["loop_compile_s"] = first_l - again
        print(f"loop:  first call {first_l:.1f} s, again {again:.3f} s -> compile ≈ {first_l - again:.1f} s")
    _sync("compiled")
    out["rss_after_loop_compile_mib"] = gathered_rss()
    print(f"host memory after compiling the loop's function as well: {sum(out['rss_after_loop_compile_mib']):.0f} MiB "
          "(peak)")

    # --- rounds: the whole grid by the sweep, then the loop's sample (process 0 alone) --------
    # The machine's speed drifts from minute to minute: each round times both side by side, and
    # the median of the rounds' ratios is reported. With --processes, process 0 runs pinned to
    # its share of the CPUs (launch_local); the loop is timed with every CPU open to it, as in a
    # plain single process, while the other processes wait at a barrier.
    pinned = os.environ.get("JAXMEM_CPUS")
    rng = random.Random(0)
    sample = rng.sample(range(n), min(args.loop_sample, n))
    by_key = {r["key"]: r for r in rows_full}
    rounds, times, steps, rel = [], [], [], []
    print(f"\nrounds (the {n}-problem sweep, then the loop over jaxmem.hitting_times, jitted once, on {len(sample)} "
          f"sampled configurations, scaled to {n}):")
    print(f"  {'round':>5} {'sweep s':>8} {'loop s/problem':>15} {'loop s (est.)':>14} {'ratio':>7}")
    for rnd in range(args.repeats):
        _sync(f"round-{rnd}")
        _, wall, _ = sweep(grid, bs, chunk_steps=cs)
        _sync(f"round-{rnd}-swept")
        if first:
            if pinned:
                pin_threads(range(os.cpu_count()))
            round_times = []
            for i in sample:
                c = grid[i]
                t0 = time.perf_counter()
                h = run_single(c, max_width)
                round_times.append(time.perf_counter() - t0)
                if rnd == 0:
                    steps.append(int(h.steps))
                    r = by_key[jaxmem.config_key(c)]
                    for a, b in ((r["tau_param"], float(h.tau_param)), (r["tau_loss"], float(h.tau_loss))):
                        if math.isfinite(a) and math.isfinite(b):
                            rel.append(abs(a - b) / abs(b))
                        elif a != b:
                            rel.append(math.inf)
            if pinned:
                pin_threads(pinned.split(","))
            if rnd == 0:
                times = round_times
            per = float(np.mean(round_times))
            rounds.append(dict(sweep_wall_s=wall, loop_mean_s=per, ratio=per * n / wall))
            print(f"  {rnd + 1:>5} {wall:>8.2f} {per:>15.4f} {per * n:>14.1f} {per * n / wall:>6.2f}×")
        _sync(f"round-{rnd}-looped")
    wall_full = float(np.median([r["sweep_wall_s"] for r in rounds])) if first else None
    if first:
        sweep_rate = n / wall_full
        loop_per = float(np.median([r["loop_mean_s"] for r in rounds]))
        loop_rate = 1.0 / loop_per
        ratio = float(np.median([r["ratio"] for r in rounds]))
        each = ", ".join(f"{r['ratio']:.2f}" for r in rounds)
        out.update(loop=dict(sample=len(sample), mean_s=loop_per, per_s=loop_rate, per_min=60 * loop_rate,
                             estimated_grid_s=loop_per * n, max_rel_diff_vs_sweep=max(rel) if rel else None),
                   sweep=dict(wall_s=wall_full, per_s=sweep_rate, per_min=60 * sweep_rate), ratio=ratio,
                   rounds=rounds)
        print(f"  medians: sweep {wall_full:.2f} s, loop {loop_per:.4f} s/problem; loop vs sweep hitting times: max "
              f"relative difference {max(rel) if rel else float('nan'):.1e}")
        out["ratio_of_medians"] = sweep_rate / loop_rate
        print(f"\nTHROUGHPUT  sweep {sweep_rate:.2f} problems/s ({60 * sweep_rate:.0f}/min, {jax.process_count()} "
              f"process(es))  vs  loop {loop_rate:.2f} problems/s  (medians)")
        print(f"RATIO  {ratio:.2f}×, the median of the {len(rounds)} rounds' ratios ({each}); ratio of the medians "
              f"{sweep_rate / loop_rate:.2f}×   (goal ≥ 3× on 2 CPU cores)")
        host = out["grids"][-1]["peak_rss_mib"]
        per = out["grids"][-1]["peak_rss_per_process_mib"]
        print(f"PEAK HOST MEMORY ({n} problems): {host:.0f} MiB" + (f" (processes: {', '.join(f'{x:.0f}' for x in per)})"
              if len(per) > 1 else "") + "  (goal < 1024 MiB)")
        if devices[0].platform == "gpu":
            print(f"PER MINUTE on {devices[0].device_kind}: {60 * sweep_rate:.0f}  (goal ≥ 10,000)")

    # --- uneven costs: ordered vs shuffled, vs the sum of individual times ---------------------
    orders = [("ordered", rows_full, wall_full, calls_full)]
    if not args.no_shuffled:
        shuffled = list(grid)
        random.Random(1).shuffle(shuffled)
        rows_sh, wall_sh, calls_sh = sweep(shuffled, bs, order="given", chunk_steps=cs)
        orders.append(("shuffled", rows_sh, wall_sh, calls_sh))
    if first:
        A = np.stack([np.ones(len(steps)), np.asarray(steps, float)], 1)
        (c0, c1), *_ = np.linalg.lstsq(A, np.asarray(times), rcond=None)
        indiv = lambda rows: float(sum(c0 + c1 * r["steps"] for r in rows))
        uneven = dict(fit_c0_s=float(c0), fit_c1_s_per_step=float(c1))
        print(f"\nuneven costs ({bs} slots; individual time ≈ {c0 * 1e3:.1f} ms + {c1 * 1e3:.3f} ms × steps, fitted "
              f"on the loop sample):")
        print(f"  {'order':<9} {'sweep wall s':>12} {'Σ individual s':>15} {'wall/Σ indiv':>13} {'calls':>6} "
              f"{'slot utilisation':>17}")
        for name, rows, wall, calls in orders:
            s_ind = indiv(rows)
            util = slot_utilisation(rows, calls, bs // jax.process_count(), cs)
            uneven[name] = dict(wall_s=wall, sum_individual_s=s_ind, wall_over_sum=wall / s_ind, calls=calls,
                                slot_utilisation=util)
            print(f"  {name:<9} {wall:>12.1f} {s_ind:>15.1f} {wall / s_ind:>13.3f} {calls:>6} {util:>17.3f}")
        if "shuffled" in uneven:
            uneven["shuffled_over_ordered"] = uneven["shuffled"]["wall_s"] / uneven["ordered"]["wall_s"]
            print(f"  shuffled / ordered wall time: {uneven['shuffled_over_ordered']:.2f}")
        out["uneven"] = uneven
        if args.json:
            with open(args.json, "w") as f:
                json.dump(out, f, indent=2, default=str)
            print(f"\nwrote {args.json}")
    return out


if __name__ == "__main__":
    main()
