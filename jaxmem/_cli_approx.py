"""`jaxmem approx`: best width-m errors and widths needed, the approximation side of the curse.

With no options it draws both faces of DESIGN §1.5 for polynomial memory (1+t)^-(1+ω): under a
rate floor (the stability margin of JMLR Thm 11) the error stalls and the width needed for a
fixed accuracy grows quickly with the memory 1/ω; with free rates in L² (dashed) it looks easy.
"""

import argparse
import csv
import json
import platform
import time
from pathlib import Path

import numpy as np

KERNELS = ("exp", "powerlaw", "bump", "airy")
DEFAULT_PARAMS = {"exp": [0.25, 0.5, 1.0, 2.0], "powerlaw": [0.25, 0.5, 1.0, 2.0], "bump": [0.1, 0.2], "airy": [1.0]}
PARAM_NAME = {"exp": "beta", "powerlaw": "omega", "bump": "omega", "airy": "scale"}


def _floats(text):
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers; got {text!r}.") from e


def _ints(text):
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers; got {text!r}.") from e


def add_parser(subparsers):
    p = subparsers.add_parser("approx", help="best width-m approximation errors and widths needed",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kernel", choices=KERNELS, default="powerlaw",
                   help="exp: e^{-βt}(1+t)^-2; powerlaw: (1+t)^-(1+ω); bump: Gaussian at lag 1/ω; airy: Ai(s(t-6))")
    p.add_argument("--beta", type=_floats, default=None, help="decay rates β for --kernel exp (list)")
    p.add_argument("--omega", type=_floats, default=None, help="memory parameters ω (list; smaller = longer)")
    p.add_argument("--widths", type=_ints, default=[1, 2, 3, 4, 6, 8, 12, 16])
    p.add_argument("--min-rate", type=float, default=0.5,
                   help="rate floor (stability margin); 0 for none. Free-rate fits without a floor are drawn too.")
    p.add_argument("--max-rate", type=float, default=None)
    p.add_argument("--norm", choices=("L2", "L1"), default="L2")
    p.add_argument("--eps", type=float, default=0.05,
                   help="relative error for the width-needed panel (0 to skip)")
    p.add_argument("--max-width", type=int, default=32, help="largest width tried for --eps")
    p.add_argument("--starts", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("approx_out"))
    p.set_defaults(func=run)
    return p


def _kernel_fn(kind):
    import jaxmem

    from ._kernels._damped import Damped

    if kind == "exp":
        return lambda b: Damped(jaxmem.PowerLaw(1.0), b)
    if kind == "powerlaw":
        return lambda om: jaxmem.PowerLaw(om)
    if kind == "bump":
        return lambda om: jaxmem.GaussianBump(1.0 / om, 0.5)
    if kind == "airy":
        return lambda s: jaxmem.Airy(6.0, float(s))
    raise ValueError(f"unknown kernel {kind!r}; expected one of {KERNELS}.")


def _map(kind, params, widths, **kw):
    from ._approx import error_map

    if kind != "airy":
        return error_map(_kernel_fn(kind), params, widths, **kw)
    # Airy's parameters are static (scipy nodes at construction): one call per parameter.
    outs = [error_map(lambda _, k=_kernel_fn(kind)(s): k, [0.0], widths, **kw) for s in params]
    return {key: np.concatenate([o[key] for o in outs]) for key in outs[0]}


def run(args) -> int:
    import jax

    jax.config.update("jax_enable_x64", True)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import jaxmem

    from ._approx import STATUS, width_needed

    kind = args.kernel
    params = args.beta if kind == "exp" else args.omega
    params = params or DEFAULT_PARAMS[kind]
    if (kind == "exp" and args.omega) or (kind != "exp" and args.beta):
        raise ValueError("--beta goes with --kernel exp, --omega with the other kernels.")
    if any(p <= 0 for p in params) or any(m < 1 for m in args.widths):
        raise ValueError(f"memory parameters must be > 0 and widths >= 1; got {params}, {args.widths}.")
    if args.eps < 0:
        raise ValueError(f"--eps must be > 0 (or 0 to skip); got {args.eps}.")
    floor = args.min_rate if args.min_rate > 0 else None
    widths = sorted(set(args.widths))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = PARAM_NAME[kind]
    key = jax.random.key(args.seed)
    common = dict(max_rate=args.max_rate, norm=args.norm, n_starts=args.starts, key=key)
    modes = [("floor", floor)] + ([("free", None)] if floor is not None else [])
    timings, maps = {}, {}
    for mode, lo in modes:
        print(f"[approx] {kind}: fitting {len(params)} {name} x {len(widths)} widths, rates {mode}"
              f"{f' >= {lo}' if lo else ''}, {args.starts} starts (one vmapped call) ...", flush=True)
        t0 = time.perf_counter()
        maps[mode] = _map(kind, params, widths, min_rate=lo, **common)
        timings[f"map_{mode}_s"] = time.perf_counter() - t0
        print(f"[approx]   done in {timings[f'map_{mode}_s']:.1f} s", flush=True)
    needed = None
    if args.eps > 0 and kind != "airy":
        print(f"[approx] width needed for relative {args.norm} error <= {args.eps} (max {args.max_width}) ...", flush=True)
        t0 = time.perf_counter()
        needed = width_needed((_kernel_fn(kind), params), args.eps, min_rate=floor, max_width=args.max_width, **common)
        timings["width_needed_s"] = time.perf_counter() - t0

    rows = []
    for mode, lo in modes:
        m = maps[mode]
        for i, p in enumerate(params):
            for j, w in enumerate(widths):
                rows.append({"kernel": kind, name: p, "width": w, "norm": args.norm, "min_rate": lo or 0.0,
                             "rates_mode": mode, "error": m["error"][i, j], "relative_error": m["relative_error"][i, j],
                             "status": STATUS[int(m["status"][i, j])]})
    with open(out / "approx.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    print(f"\n relative {args.norm} error, best width-m fit")
    print(f" {name:>6} {'rates':>14} " + " ".join(f"m={w:<7d}" for w in widths))
    for mode, lo in modes:
        for i, p in enumerate(params):
            label = f">= {lo}" if lo else "free"
            print(f" {p:6.3g} {label:>14} " + " ".join(f"{e:9.2e}" for e in maps[mode]["relative_error"][i]))
    if needed is not None:
        print(f"\n width needed for {args.eps:g} (rates >= {floor or 0}): "
              + ", ".join(f"{name}={p:g}: {n if n > 0 else f'>{args.max_width}'}" for p, n in zip(params, needed)))

    ncols = 2 if needed is not None else 1
    fig, axes = plt.subplots(1, ncols, figsize=(6.5 * ncols, 4.8), squeeze=False)
    ax = axes[0, 0]
    for i, p in enumerate(params):
        line = None
        for mode, lo in modes:
            y = np.maximum(maps[mode]["relative_error"][i], 1e-16)
            style = "-o" if mode == "floor" else "--"
            label = f"{name}={p:g}" + (f", rates >= {lo}" if lo else ", free rates")
            kw = {"color": line.get_color()} if line is not None else {}
            (ln,) = ax.loglog(widths, y, style, ms=4, label=label, **kw)
            line = line or ln
        if kind == "exp":
            ms = np.asarray(widths, dtype=float)
            e0 = maps[modes[0][0]]["relative_error"][i, 0]
            ax.loglog(ms, e0 * ms[0] / ms, ":", color=line.get_color(), lw=1,
                      label="Jackson shape C/(β m^α), α=1" if i == 0 else None)
    ax.set(xlabel="width m", ylabel=f"relative {args.norm} error", title=f"Best width-m error: {kind} memory")
    ax.legend(fontsize=7)
    if needed is not None:
        ax2 = axes[0, 1]
        inv = 1.0 / np.asarray(params)
        ok = needed > 0
        ax2.semilogy(inv[ok], needed[ok], "o-", label=f"rates >= {floor or 0}")
        if np.any(~ok):
            ax2.semilogy(inv[~ok], np.full((~ok).sum(), args.max_width), "^", color="r", label=f"> {args.max_width}")
        ax2.set(xlabel=f"memory 1/{name}", ylabel="width needed",
                title=f"Width needed for relative {args.norm} error <= {args.eps:g}")
        ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "approx.png", dpi=120)
    plt.close(fig)

    meta = {"command": "jaxmem approx", "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "func"},
            "params": params, "widths": widths, "method": "variable projection (BFGS on log J over rates), SVD residual",
            "width_needed": None if needed is None else [int(n) for n in needed],
            "versions": {"jaxmem": jaxmem.__version__, "jax": jax.__version__, "python": platform.python_version()},
            "device": str(jax.devices()[0]), "timings": timings}
    (out / "approx.json").write_text(json.dumps(meta, indent=2))
    print(f"\n[approx] wrote {out / 'approx.csv'}, {out / 'approx.json'}, {out / 'approx.png'}")
    return 0
