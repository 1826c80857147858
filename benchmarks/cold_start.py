"""Start-up of the command line: the canonical flow table as whole processes.

Times, as subprocesses (start, imports, work and files included), the flow table of
`jaxmem plateau --lags 8 10 12 14 16 18 --optimizer flow` (m = 10, τ₀ and τ₀′ at δ = 0.05):

- cold: `JAXMEM_CACHE_DIR` set to a new, empty folder (no compiled program, no exported
  program: jaxmem traces, lowers, exports and compiles);
- warm: the same command again with that folder (the exported program is read back and its
  compiled form loaded from JAX's persistent compilation cache);
- scipy: `benchmarks/scipy_flow_table.py`, an independent numpy/scipy implementation of the
  same table (closed-form gradient and Hessian, `solve_ivp` Radau, events).

Every round runs the three once, one after the other; the medians over `--repeats` rounds and
their ratios are printed (wall and CPU seconds: user + system of the child process, less
sensitive to other work on a shared machine). The tables are checked against each other: cold
and warm must be identical, and scipy's within `--rtol` of jaxmem's.

Run: .venv/bin/python benchmarks/cold_start.py [--repeats 5] [--json out.json]
Goals on 2 CPU cores: warm below scipy's whole process, cold below twice it.
"""

import argparse
import csv
import io
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
LAGS = ("8", "10", "12", "14", "16", "18")


def timed(cmd, env=None, cwd=None):
    """(wall s, CPU s of the child, stdout) of one subprocess run (which must succeed)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    out = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, out.stdout


def read_table(text):
    return {float(r["lag"]): (float(r["tau_param"]), float(r["tau_loss"])) for r in csv.DictReader(io.StringIO(text))}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--repo", default=os.path.dirname(HERE),
                   help="the checkout whose `python -m jaxmem` is timed (default: this one)")
    p.add_argument("--rtol", type=float, default=1e-6, help="agreement asked of scipy's table")
    p.add_argument("--json", help="write every timing to this file")
    args = p.parse_args(argv)
    py = sys.executable
    jaxmem_cmd = [py, "-m", "jaxmem", "plateau", "--lags", *LAGS, "--optimizer", "flow", "--no-progress"]
    scipy_cmd = [py, os.path.join(HERE, "scipy_flow_table.py"), "--lags", *LAGS]
    times = {"cold": [], "warm": [], "scipy": []}
    tables = {}
    root = tempfile.mkdtemp(prefix="jaxmem-cold-start-")
    try:
        for k in range(args.repeats):
            cache = os.path.join(root, f"cache{k}")
            env = dict(os.environ, JAXMEM_CACHE_DIR=cache)
            env.pop("JAXMEM_NO_CACHE", None)
            for kind in ("cold", "warm"):
                out_dir = os.path.join(root, f"{kind}{k}")
                wall, cpu, _ = timed([*jaxmem_cmd, "--out", out_dir], env=env, cwd=args.repo)
                times[kind].append((wall, cpu))
                with open(os.path.join(out_dir, "plateau.csv")) as f:
                    tables.setdefault(kind, read_table(f.read()))
            wall, cpu, text = timed(scipy_cmd)
            times["scipy"].append((wall, cpu))
            tables.setdefault("scipy", read_table(text))
            print(f"round {k + 1}: " + ", ".join(f"{n} {v[-1][0]:.2f} s ({v[-1][1]:.2f} s CPU)" for n, v in times.items()),
                  flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if tables["cold"] != tables["warm"]:
        raise SystemExit("cold and warm tables differ")
    worst = max(abs(s - j) / abs(j) for lag, pair in tables["cold"].items()
                for s, j in zip(tables["scipy"][lag], pair))
    med = {n: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for n, v in times.items()}
    print(f"\nmedians of {args.repeats} rounds (wall s, CPU s); jaxmem vs scipy largest relative difference {worst:.1e}")
    for n, (w, c) in med.items():
        print(f"  {n:6s} {w:6.2f} s  {c:6.2f} s CPU   wall ratio to scipy {w / med['scipy'][0]:.2f}"
              f"  CPU ratio {c / med['scipy'][1]:.2f}")
    ok = med["warm"][0] < med["scipy"][0] and med["cold"][0] < 2 * med["scipy"][0]
    print(f"goals (warm < scipy, cold < 2 x scipy, wall): {'met' if ok else 'NOT met'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(times=times, medians=med, max_rel_diff=worst, python=platform.python_version(),
                           cpus=os.cpu_count(), date=time.strftime("%Y-%m-%d")), f, indent=1)
    if worst > args.rtol:
        raise SystemExit(f"scipy's table differs from jaxmem's by {worst:.1e} > {args.rtol:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
