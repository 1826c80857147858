"""`jaxmem memory`: the learnability report of a memory, from data or from a trained model.

From --data (a .npz file of paths: the format of `jaxmem data`, or any file with arrays ts (n,),
xs and ys (paths, n) on a uniform grid) the memory kernel is estimated with a bootstrap band;
from --model (a model file of `jaxmem train`) it is the model's memory function. Then: the decay
class (exponential or power law, with intervals), the width a diagonal linear RNN needs for a
relative error --eps with rates >= --min-rate, and the plateau hitting times of gradient flow
from the canonical start on that memory, per parameterisation of the rates. Writes memory.csv,
memory.json and memory.png to --out.
"""

import argparse
import functools
from pathlib import Path

from .._experiments.memory import PARAMETERIZATION_NAMES, MemorySettings, run_memory


def add_parser(sub):
    p = sub.add_parser("memory", help="learnability report: decay class, width needed, plateau (from data or a model)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", type=Path, help="a .npz file with arrays ts, xs, ys (e.g. written by jaxmem data)")
    src.add_argument("--model", type=Path, help="a model file written by jaxmem train (DIR/models/*.eqx)")
    p.add_argument("--horizon", type=float, default=None,
                   help="data: the window [0, H] of the estimate (default: chosen from the data)")
    p.add_argument("--n-basis", type=int, default=40, help="data: exponentials in the estimate's basis (default 40)")
    p.add_argument("--n-boot", type=int, default=200, help="data: bootstrap resamples of the paths (default 200)")
    p.add_argument("--level", type=float, default=0.95, help="level of the band and the intervals (default 0.95)")
    p.add_argument("--duration", type=float, default=None,
                   help="model: the memory function on [0, DURATION] (default: the model's training duration)")
    p.add_argument("--dt", type=float, default=None, help="model: the grid step (default: the model's training dt)")
    p.add_argument("--eps", type=float, default=0.05, help="relative L2 error of the width needed (default 0.05)")
    p.add_argument("--min-rate", type=float, default=0.5,
                   help="rate floor of the fits, the stability margin (default 0.5; 0: free rates)")
    p.add_argument("--max-width", type=int, default=16, help="widest fit tried (default 16)")
    p.add_argument("--starts", type=int, default=8, help="random starts of each fit's search (default 8)")
    p.add_argument("--plateau-width", type=int, default=10, help="width of the canonical start (default 10)")
    p.add_argument("--parameterizations", "--parameterization", dest="parameterizations", nargs="+",
                   choices=PARAMETERIZATION_NAMES, default=list(PARAMETERIZATION_NAMES),
                   help="parameterisations of the rates whose plateau is measured (default all)")
    p.add_argument("--delta-param", type=float, default=0.05, help="tau0: parameters moved by this (default 0.05)")
    p.add_argument("--delta-loss", type=float, default=0.1,
                   help="tau0': loss dropped by this fraction of the start's loss (default 0.1)")
    p.add_argument("--t1", type=float, default=1e12, help="horizon of the gradient flow (default 1e12)")
    p.add_argument("--horizon-factor", type=float, default=1e6,
                   help="once tau0 is known, follow the flow up to this many tau0 at most (default 1e6)")
    p.add_argument("--seed", type=int, default=0, help="folds, resamples and fit starts (default 0)")
    p.add_argument("--out", type=Path, default=Path("runs/memory"), help="output folder (default runs/memory)")
    p.add_argument("--no-progress", action="store_true", help="no progress messages")
    p.set_defaults(func=run)
    return p


def settings_from_args(args):
    """The `MemorySettings` of parsed options."""
    return MemorySettings(
        data=args.data, model=args.model, horizon=args.horizon, n_basis=args.n_basis, n_boot=args.n_boot,
        level=args.level, seed=args.seed, duration=args.duration, dt=args.dt, eps=args.eps, min_rate=args.min_rate,
        max_width=args.max_width, starts=args.starts, plateau_width=args.plateau_width,
        parameterizations=tuple(args.parameterizations), delta_param=args.delta_param, delta_loss=args.delta_loss,
        t1=args.t1, horizon_factor=args.horizon_factor,
    )


def run(args) -> int:
    log = (lambda *a, **k: None) if args.no_progress else functools.partial(print, flush=True)
    report = run_memory(settings_from_args(args), args.out, progress=not args.no_progress, log=log)
    if args.no_progress:
        print(report["verdict"], flush=True)
    return 0
