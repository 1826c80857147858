"""`jaxmem approx`: best width-m errors and widths needed, the approximation side of the curse.

With no options it draws both faces of the approximation curse for polynomial memory
(1+t)^-(1+ω): under a rate floor (the stability margin of JMLR Thm 11) the error stalls and the
width needed for a fixed accuracy grows quickly with the memory 1/ω; with free rates in L²
(dashed) it looks easy.

The fits run batch by batch (one compiled, vmapped call per batch) and every finished batch is
appended to approx.csv at once: running the same command again in the same --out resumes and
recomputes nothing already written; a folder holding another run, foreign files or a damaged
CSV stops the command with an error and is left untouched.
"""

import argparse
import functools
from pathlib import Path

from .._experiments.approx import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_WIDTHS,
    KERNELS,
    ApproxSettings,
    run_approx,
)
from ._args import flat, floats, ints


def add_parser(sub):
    p = sub.add_parser("approx", help="best width-m approximation errors and widths needed",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kernel", choices=KERNELS, default="powerlaw",
                   help="exp: e^{-βt}(1+t)^-2; powerlaw: (1+t)^-(1+ω); bump: Gaussian at lag 1/ω; airy: Ai(s(t-6))")
    p.add_argument("--beta", type=floats, nargs="+", default=None,
                   help="decay rates β for --kernel exp: 0.5 1 2, 0.5,1,2 or a range 0.5:2:0.5")
    p.add_argument("--omega", "--omegas", dest="omega", type=floats, nargs="+", default=None,
                   help="memory parameters ω (smaller = longer memory): a list or a range START:STOP:STEP")
    p.add_argument("--widths", "--width", dest="widths", type=ints, nargs="+", default=list(DEFAULT_WIDTHS),
                   help="widths m: a list or a range")
    p.add_argument("--min-rate", type=float, default=0.5,
                   help="rate floor (stability margin); 0 for none. Free-rate fits without a floor are drawn too.")
    p.add_argument("--max-rate", type=float, default=None, help="rate ceiling of the fits (default none)")
    p.add_argument("--norm", choices=("L2", "L1"), default="L2",
                   help="the norm of the reported error (the fit always minimises the L2 error)")
    p.add_argument("--eps", type=float, default=0.05,
                   help="relative error for the width-needed panel (0 to skip)")
    p.add_argument("--max-width", type=int, default=32, help="largest width tried for --eps")
    p.add_argument("--starts", type=int, default=8, help="random starts of the free-rate search per fit (default 8)")
    p.add_argument("--seed", type=int, default=0, help="the random key of those starts (default 0)")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                   help=f"(parameter, width) fits per compiled call (default {DEFAULT_BATCH_SIZE}); each "
                        "finished batch is saved. A resumed run may change it; keep it fixed to reproduce a table "
                        "(a few free-rate fits depend on the batch's rounding).")
    p.add_argument("--out", type=Path, default=Path("runs/approx"), help="output folder (default runs/approx)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def settings_from_args(args):
    """The `ApproxSettings` of parsed options."""
    kind, beta, omega = args.kernel, flat(args.beta), flat(args.omega)
    if (kind == "exp" and omega) or (kind != "exp" and beta):
        raise ValueError("--beta goes with --kernel exp, --omega with the other kernels.")
    for name, v in (("--starts", args.starts), ("--batch-size", args.batch_size), ("--max-width", args.max_width)):
        if v < 1:
            raise ValueError(f"{name} must be a positive integer; got {v}.")
    if not args.min_rate >= 0:
        raise ValueError(f"--min-rate must be a finite number >= 0; got {args.min_rate}.")
    return ApproxSettings(
        kernel=kind, params=tuple((beta if kind == "exp" else omega) or ()), widths=tuple(flat(args.widths)),
        min_rate=args.min_rate, max_rate=args.max_rate, norm=args.norm, starts=args.starts, seed=args.seed,
        eps=args.eps, max_width=args.max_width, batch_size=args.batch_size,
    )


def run(args) -> int:
    run_approx(settings_from_args(args), args.out, progress=not args.no_progress,
               log=functools.partial(print, flush=True))
    return 0
