"""`jaxmem stability`: the perturbation test of stable approximation (the inverse approximation
theorem).

For each kernel and width m, the best width-m diagonal linear RNN (rates above --min-rate),
every parameter moved by β (worst of --samples directions on the vertices of the ℓ∞ ball), and
the relative L² error E_m(β) on a grid of β, exactly through the white-noise loss, in one
compiled, vmapped call. Exponential memory keeps its blow-up radius as m grows; polynomial
memory loses it. Writes stability.csv, stability.json and stability.png to --out.
"""

import argparse
import functools
from pathlib import Path

from .._experiments.stability import (
    DEFAULT_WIDTHS,
    KERNELS,
    StabilitySettings,
    run_stability,
)
from ._args import flat, ints


def add_parser(sub):
    p = sub.add_parser("stability", help="perturbation test of stable approximation (blow-up radius per width)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kernel", "--kernels", dest="kernels", nargs="+", choices=KERNELS, default=list(KERNELS),
                   help="exp: e^{-βt}(1+t)^-2; powerlaw: (1+t)^-(1+ω) (default both)")
    p.add_argument("--beta", type=float, default=1.0, help="the decay rate β of --kernel exp (default 1)")
    p.add_argument("--omega", type=float, default=1.0, help="the exponent ω of --kernel powerlaw (default 1)")
    p.add_argument("--widths", "--width", dest="widths", type=ints, nargs="+", default=list(DEFAULT_WIDTHS),
                   help="widths m: a list or a range (default 2 4 8 12)")
    p.add_argument("--radius-min", type=float, default=1e-4, help="smallest perturbation size (default 1e-4)")
    p.add_argument("--radius-max", type=float, default=1.0, help="largest perturbation size (default 1)")
    p.add_argument("--n-radii", type=int, default=20,
                   help="log-spaced perturbation sizes between them, besides 0 (default 20)")
    p.add_argument("--samples", type=int, default=10, help="perturbations per size, worst kept (default 10)")
    p.add_argument("--min-rate", type=float, default=0.5,
                   help="rate floor of the best fits, the stability margin (default 0.5; 0: free rates)")
    p.add_argument("--threshold", type=float, default=1.0,
                   help="relative error defining the blow-up radius (default 1)")
    p.add_argument("--starts", type=int, default=8, help="random starts of each fit's search (default 8)")
    p.add_argument("--seed", type=int, default=0, help="the random key of the starts and directions (default 0)")
    p.add_argument("--out", type=Path, default=Path("runs/stability"), help="output folder (default runs/stability)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def settings_from_args(args):
    """The `StabilitySettings` of parsed options."""
    return StabilitySettings(
        kernels=tuple(args.kernels), beta=args.beta, omega=args.omega, widths=tuple(flat(args.widths)),
        radius_min=args.radius_min, radius_max=args.radius_max, n_radii=args.n_radii, samples=args.samples,
        min_rate=args.min_rate, threshold=args.threshold, starts=args.starts, seed=args.seed,
    )


def run(args) -> int:
    run_stability(settings_from_args(args), args.out, progress=not args.no_progress,
                  log=functools.partial(print, flush=True))
    return 0
