"""`jaxmem approx`: best width-m errors and widths needed, the approximation side of the curse.

With no options it draws both faces of DESIGN §1.5 for polynomial memory (1+t)^-(1+ω): under a
rate floor (the stability margin of JMLR Thm 11) the error stalls and the width needed for a
fixed accuracy grows quickly with the memory 1/ω; with free rates in L² (dashed) it looks easy.

The fits run batch by batch (one compiled, vmapped call per batch) and every finished batch is
appended to approx.csv at once: running the same command again in the same --out resumes and
recomputes nothing already written; a folder holding another run, foreign files or a damaged
CSV stops the command with an error and is left untouched.
"""

import argparse
import contextlib
import math
import platform
import time
from pathlib import Path

import numpy as np

from ._approx import STATUS

KERNELS = ("exp", "powerlaw", "bump", "airy")
DEFAULT_PARAMS = {"exp": [0.25, 0.5, 1.0, 2.0], "powerlaw": [0.25, 0.5, 1.0, 2.0], "bump": [0.1, 0.2], "airy": [1.0]}
PARAM_NAME = {"exp": "beta", "powerlaw": "omega", "bump": "omega", "airy": "scale"}
DEFAULT_BATCH_SIZE = 32


def _floats(text):
    """A grid of numbers: `0.5,1,2`, `0.5 1 2` (several arguments) or `START:STOP:STEP` (inclusive)."""
    from ._cli import _floats as grid

    return grid(text)


def _ints(text):
    out = _floats(text)
    if any(x != int(x) for x in out):
        raise argparse.ArgumentTypeError(f"expected integers; got {text!r}.")
    return [int(x) for x in out]


def _flat(values):
    """`nargs="+"` gives a list of lists (one per argument); the defaults are flat."""
    return None if values is None else [x for v in values for x in (v if isinstance(v, list) else [v])]


def add_parser(subparsers):
    p = subparsers.add_parser("approx", help="best width-m approximation errors and widths needed",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kernel", choices=KERNELS, default="powerlaw",
                   help="exp: e^{-βt}(1+t)^-2; powerlaw: (1+t)^-(1+ω); bump: Gaussian at lag 1/ω; airy: Ai(s(t-6))")
    p.add_argument("--beta", type=_floats, nargs="+", default=None,
                   help="decay rates β for --kernel exp: 0.5 1 2, 0.5,1,2 or a range 0.5:2:0.5")
    p.add_argument("--omega", type=_floats, nargs="+", default=None,
                   help="memory parameters ω (smaller = longer memory): a list or a range START:STOP:STEP")
    p.add_argument("--widths", type=_ints, nargs="+", default=[1, 2, 3, 4, 6, 8, 12, 16],
                   help="widths m: a list or a range")
    p.add_argument("--min-rate", type=float, default=0.5,
                   help="rate floor (stability margin); 0 for none. Free-rate fits without a floor are drawn too.")
    p.add_argument("--max-rate", type=float, default=None)
    p.add_argument("--norm", choices=("L2", "L1"), default="L2")
    p.add_argument("--eps", type=float, default=0.05,
                   help="relative error for the width-needed panel (0 to skip)")
    p.add_argument("--max-width", type=int, default=32, help="largest width tried for --eps")
    p.add_argument("--starts", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                   help=f"(parameter, width) fits per compiled call (default {DEFAULT_BATCH_SIZE}); each "
                        "finished batch is saved. It only cuts the work, so a resumed run may change it.")
    p.add_argument("--out", type=Path, default=Path("approx_out"))
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p



def _exp_kernel(beta):
    from ._kernels import PowerLaw
    from ._kernels._damped import Damped

    return Damped(PowerLaw(1.0), beta)


def _powerlaw_kernel(omega):
    from ._kernels import PowerLaw

    return PowerLaw(omega)


def _bump_kernel(omega):
    from ._kernels import GaussianBump

    return GaussianBump(1.0 / omega, 0.5)


# Module-level functions: the compiled fit takes the kernel builder as a static argument, so
# one stable function object per kernel family shares one compilation across runs and batches.
_KERNEL_FNS = {"exp": _exp_kernel, "powerlaw": _powerlaw_kernel, "bump": _bump_kernel}


def _kernel_fn(kind):
    if kind in _KERNEL_FNS:
        return _KERNEL_FNS[kind]
    if kind == "airy":
        from ._kernels import Airy

        return lambda s: Airy(6.0, float(s))
    raise ValueError(f"unknown kernel {kind!r}; expected one of {KERNELS}.")


def _groups(kind, params):
    """(kernel_fn, parameter indices) sharing one compiled program each. Airy's parameters are
    static (scipy nodes at construction): one program per parameter."""
    if kind != "airy":
        return [(_kernel_fn(kind), list(range(len(params))))]
    make = _kernel_fn(kind)
    return [((lambda _, k=make(s): k), [i]) for i, s in enumerate(params)]


def settings_from_args(args) -> dict:
    """The validated settings of a run (what a resumed run must repeat), from parsed options."""
    from ._approx import _check_args

    kind, beta, omega, widths = args.kernel, _flat(args.beta), _flat(args.omega), _flat(args.widths)
    if (kind == "exp" and omega) or (kind != "exp" and beta):
        raise ValueError("--beta goes with --kernel exp, --omega with the other kernels.")
    params = (beta if kind == "exp" else omega) or DEFAULT_PARAMS[kind]
    params = list(dict.fromkeys(float(p) for p in params))  # distinct, in the order given
    if not all(math.isfinite(p) and p > 0 for p in params) or not widths or any(m < 1 for m in widths):
        raise ValueError(f"memory parameters must be finite and > 0 and widths >= 1; got {params}, {widths}.")
    if not (math.isfinite(args.eps) and args.eps >= 0):
        raise ValueError(f"--eps must be > 0 (or 0 to skip); got {args.eps}.")
    if not (math.isfinite(args.min_rate) and args.min_rate >= 0):
        raise ValueError(f"--min-rate must be a finite number >= 0; got {args.min_rate}.")
    for name, v in (("--starts", args.starts), ("--batch-size", args.batch_size), ("--max-width", args.max_width)):
        if v < 1:
            raise ValueError(f"{name} must be a positive integer; got {v}.")
    widths = sorted(set(widths))
    floor = args.min_rate if args.min_rate > 0 else None
    search = args.eps > 0 and kind != "airy"
    for m in [max(widths)] + ([args.max_width] if search else []):
        _check_args(m, args.norm, floor, args.max_rate)
        _check_args(m, args.norm, None, args.max_rate)
    return dict(kernel=kind, param_name=PARAM_NAME[kind], params=params, widths=widths, min_rate=floor or 0.0,
                max_rate=args.max_rate, norm=args.norm, starts=args.starts, seed=args.seed,
                eps=args.eps if search else 0.0, max_width=args.max_width if search else None)


def columns(kind):
    return ("kernel", PARAM_NAME[kind], "width", "norm", "min_rate", "rates_mode", "error", "relative_error",
            "status", "part", "batch_wall_s", "key")


def row_key(part, mode, name, p, m):
    """A stable identifier of one fit: `map` rows per rates mode, `search` rows of --eps."""
    return f"{part}|{mode}|{name}={float(p)!r}|m={int(m)}"


def _versions():
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("jaxmem", "jax", "jaxlib", "equinox", "optimistix", "numpy", "scipy"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:  # pragma: no cover
            out[pkg] = None
    return out


def run(args) -> int:
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.random as jr

    from ._approx import fit_rows, map_keys
    from ._progress import Progress
    from ._store import RowStore, StoreError

    t_run = time.perf_counter()
    settings = settings_from_args(args)
    kind, name, params, widths = settings["kernel"], settings["param_name"], settings["params"], settings["widths"]
    floor, eps, max_width = (settings["min_rate"] or None), settings["eps"], settings["max_width"]
    P, K, bs = len(params), len(widths), int(args.batch_size)
    progress = not getattr(args, "no_progress", False)
    out = Path(args.out)
    store = RowStore(str(out), settings, columns(kind), rows_name="approx.csv", manifest_name="approx.json",
                     other_outputs=("approx.png",))
    key = jr.key(args.seed)
    common = dict(max_rate=args.max_rate, norm=args.norm, n_starts=args.starts)
    modes = [("floor", floor)] + ([("free", None)] if floor is not None else [])

    # The map: rows (rates mode, parameter, width).
    grid = [dict(mode=mode, lo=lo, i=i, j=j, key=row_key("map", mode, name, params[i], widths[j]))
            for mode, lo in modes for i in range(P) for j in range(K)]
    search_keys = {row_key("search", "floor", name, p, m) for p in params for m in range(1, (max_width or 0) + 1)}
    stored = {r["key"]: r for r in store.done_rows}
    unknown = sorted(set(stored) - {g["key"] for g in grid} - search_keys)
    if unknown:  # same settings, yet rows outside this grid: a damaged or edited file
        raise StoreError(f"{store.rows_path} holds {len(unknown)} row(s) outside this run's grid "
                         f"(e.g. {unknown[0]!r}): a damaged or edited file (nothing was changed).")
    if stored:
        print(f"[approx] resuming: {sum(g['key'] in stored for g in grid)} of {len(grid)} map rows"
              f"{f' and {len(stored.keys() & search_keys)} width-search rows' if eps else ''} already in {out}",
              flush=True)

    timings = {}
    # error_map's keys: pair (i, j) draws key i*K + j (Airy: one error_map call per parameter, j).
    per_param = kind == "airy"
    keys = map_keys(key, 1 if per_param else P, K)
    todo = [g for g in grid if g["key"] not in stored]
    plan = []
    for fn, members in _groups(kind, params):
        full = [g for g in grid if g["i"] in members]
        rows = [g for g in todo if g["i"] in members]
        if rows:  # the batch shape comes from the whole group: the same program on every resume
            plan.append((fn, rows, min(bs, len(full))))
    n_batches = sum(math.ceil(len(rows) / b) for _, rows, b in plan)
    if todo:
        print(f"[approx] {kind}: fitting {len(todo)} of {len(grid)} rows ({P} {name} x {K} widths x "
              f"{len(modes)} rate modes), {args.starts} starts, {n_batches} batch(es) ...", flush=True)
    t_map = time.perf_counter()
    with Progress(n_batches, "approx map") if progress and n_batches else contextlib.nullcontext() as bar:
        for fn, rows, b in plan:
            keys_idx = np.array([(0 if per_param else g["i"]) * K + g["j"] for g in rows])
            t0 = time.perf_counter()
            for idx, res in fit_rows(fn, [params[g["i"]] for g in rows], [widths[g["j"]] for g in rows],
                                     [g["lo"] for g in rows], keys[keys_idx], pad=max(widths), batch_size=b,
                                     **common):
                wall = time.perf_counter() - t0
                new = [_record(settings, "map", rows[r]["mode"], rows[r]["lo"], params[rows[r]["i"]],
                               widths[rows[r]["j"]], res, k, wall) for k, r in enumerate(idx)]
                store.append(new)  # written and fsynced now: an interrupt loses at most the next batch
                if bar is not None:
                    bar.update(1, f"{len(new)} fits, {wall:.1f} s")
                t0 = time.perf_counter()
    timings["map_s"] = time.perf_counter() - t_map

    needed = None
    if eps > 0:
        needed, timings["width_needed_s"] = _search(store, settings, key, bs, common, progress)

    rows = {r["key"]: r for r in store.done_rows}
    maps = {mode: np.array([[rows[row_key("map", mode, name, p, m)]["relative_error"] for m in widths]
                            for p in params], dtype=np.float64) for mode, _ in modes}
    print(format_table(settings, modes, maps, needed))
    plot_map(settings, modes, maps, needed, out / "approx.png")
    n_new = len(store.done_rows) - len(stored)
    store.update_manifest(
        command="jaxmem approx", method="variable projection (BFGS on log J over rates), SVD residual",
        width_needed=None if needed is None else {repr(p): int(n) for p, n in zip(params, needed)},
        versions=_versions(), device=str(jax.devices()[0]), x64=bool(jax.config.jax_enable_x64),
        batch_size=bs, timings=dict(this_run_s=time.perf_counter() - t_run, **timings, new_rows=n_new,
                                    resumed_rows=len(stored)),
    )
    print(f"\n[approx] wrote {out / 'approx.csv'} ({n_new} new rows, {len(stored)} resumed), "
          f"{out / 'approx.json'}, {out / 'approx.png'}")
    return 0


def _record(settings, part, mode, lo, p, m, res, k, wall):
    """One CSV row from entry `k` of a batch's results."""
    return {"kernel": settings["kernel"], settings["param_name"]: p, "width": int(m), "norm": settings["norm"],
            "min_rate": lo or 0.0, "rates_mode": mode, "error": float(res["error"][k]),
            "relative_error": float(res["relative_error"][k]), "status": STATUS[int(res["status"][k])],
            "part": part, "batch_wall_s": round(wall, 4), "key": row_key(part, mode, settings["param_name"], p, m)}


def _search(store, settings, key, batch_size, common, progress):
    """The width-needed bisection (`jaxmem._approx.bisect_widths`) with every fit it makes
    stored as a `search` row: a resumed run replays the bisection from the stored rows and fits
    only what is missing. Returns the widths needed and the time taken."""
    import jax.random as jr

    from ._approx import bisect_widths, fit_rows
    from ._progress import Progress

    name, params, floor = settings["param_name"], settings["params"], settings["min_rate"] or None
    max_width, P = settings["max_width"], len(settings["params"])
    fn = _kernel_fn(settings["kernel"])
    keys = jr.split(key, P)  # width_needed's keys: one per parameter
    bs = min(batch_size, P)  # every step pads to bs rows: one program for the whole search
    per_step = math.ceil(P / bs)
    n_steps = 1 + math.ceil(math.log2(max_width))
    cache = {r["key"]: r["relative_error"] for r in store.done_rows if r["part"] == "search"}
    state = dict(step=0, bar=None)
    t_start = time.perf_counter()

    def evaluate(idx, ws):
        need = list(dict.fromkeys((int(i), int(m)) for i, m in zip(idx, ws)
                                  if row_key("search", "floor", name, params[i], m) not in cache))
        if need and state["bar"] is None:
            print(f"[approx] width needed for relative {settings['norm']} error <= {settings['eps']} "
                  f"(max {max_width}), bisection in batches of {bs} ...", flush=True)
            if progress:
                state["bar"] = Progress((n_steps - state["step"]) * per_step, "approx width").__enter__()
        bar, ran = state["bar"], 0
        if need:
            ii = np.array([i for i, _ in need])
            t0 = time.perf_counter()
            for rows, res in fit_rows(fn, [params[i] for i in ii], [m for _, m in need], [floor] * len(need),
                                      keys[ii], pad=max_width, batch_size=bs, **common):
                wall = time.perf_counter() - t0
                new = [_record(settings, "search", "floor", floor, params[need[r][0]], need[r][1], res, k, wall)
                       for k, r in enumerate(rows)]
                store.append(new)
                cache.update((r["key"], r["relative_error"]) for r in new)
                ran += 1
                if bar is not None:
                    bar.update(1, f"step {state['step'] + 1}: {len(new)} fits, {wall:.1f} s")
                t0 = time.perf_counter()
        if bar is not None and per_step > ran:
            bar.update(per_step - ran, f"step {state['step'] + 1}")
        state["step"] += 1
        return np.array([cache[row_key("search", "floor", name, params[i], m)] for i, m in zip(idx, ws)])

    try:
        needed = bisect_widths(evaluate, P, max_width, settings["eps"])
        bar = state["bar"]
        if bar is not None and bar.done < bar.total:  # the bisection ended early: fill the bar
            bar.update(bar.total - bar.done, "done")
    finally:
        if state["bar"] is not None:
            state["bar"].__exit__(None, None, None)
    return needed, time.perf_counter() - t_start


def format_table(settings, modes, maps, needed):
    """The printed summary: relative errors per (parameter, rates mode) and width, then the
    widths needed for --eps."""
    name, params, widths, norm = settings["param_name"], settings["params"], settings["widths"], settings["norm"]
    lines = [f"\n relative {norm} error, best width-m fit",
             f" {name:>6} {'rates':>14} " + " ".join(f"m={w:<7d}" for w in widths)]
    for mode, lo in modes:
        for i, p in enumerate(params):
            label = f">= {lo}" if lo else "free"
            lines.append(f" {p:6.3g} {label:>14} " + " ".join(f"{e:9.2e}" for e in maps[mode][i]))
    if needed is not None:
        mw = settings["max_width"]
        lines.append(f"\n width needed for {settings['eps']:g} (rates >= {settings['min_rate'] or 0}): "
                     + ", ".join(f"{name}={p:g}: {n if n > 0 else f'>{mw}'}" for p, n in zip(params, needed)))
    return "\n".join(lines)


def plot_map(settings, modes, maps, needed, path):
    """The figure: best relative error against the width per parameter and rates mode (and the
    width needed against the memory 1/parameter), drawn from the stored rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kind, name, params, widths = settings["kernel"], settings["param_name"], settings["params"], settings["widths"]
    norm, floor = settings["norm"], settings["min_rate"] or None
    ncols = 2 if needed is not None else 1
    fig, axes = plt.subplots(1, ncols, figsize=(6.5 * ncols, 4.8), squeeze=False)
    ax = axes[0, 0]
    for i, p in enumerate(params):
        line = None
        for mode, lo in modes:
            y = np.maximum(maps[mode][i], 1e-16)
            style = "-o" if mode == "floor" else "--"
            label = f"{name}={p:g}" + (f", rates >= {lo}" if lo else ", free rates")
            kw = {"color": line.get_color()} if line is not None else {}
            (ln,) = ax.loglog(widths, y, style, ms=4, label=label, **kw)
            line = line or ln
        if kind == "exp":
            ms = np.asarray(widths, dtype=float)
            e0 = maps[modes[0][0]][i, 0]
            ax.loglog(ms, e0 * ms[0] / ms, ":", color=line.get_color(), lw=1,
                      label="Jackson shape C/(β m^α), α=1" if i == 0 else None)
    ax.set(xlabel="width m", ylabel=f"relative {norm} error", title=f"Best width-m error: {kind} memory")
    ax.legend(fontsize=7)
    if needed is not None:
        mw = settings["max_width"]
        ax2 = axes[0, 1]
        inv = 1.0 / np.asarray(params)
        ok = needed > 0
        ax2.semilogy(inv[ok], needed[ok], "o-", label=f"rates >= {floor or 0}")
        if np.any(~ok):
            ax2.semilogy(inv[~ok], np.full((~ok).sum(), mw), "^", color="r", label=f"> {mw}")
        ax2.set(xlabel=f"memory 1/{name}", ylabel="width needed",
                title=f"Width needed for relative {norm} error <= {settings['eps']:g}")
        ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
