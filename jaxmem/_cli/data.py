"""`jaxmem data`: sampled input paths and the exact outputs of a target, in one .npz file.

The target is a memory kernel (exp, powerlaw, bump, airy, plateau: outputs by the exact
first-order-hold rule, y(t_j) = int_0^t_j rho(s) x~(t_j - s) ds with x~ the piecewise-linear
interpolant of the samples) or the nonlinear Lorenz-96 ring (outputs by Diffrax). The file holds
ts (n_t,), xs (N, n_t), ys (N, n_t) and meta, a JSON string describing how they were made. An
existing file is left alone unless --force is given.
"""

import argparse
import functools
from pathlib import Path

from .._data import INPUTS
from .._experiments.data import DataSettings, run_data
from .._experiments.targets import TARGET_NAMES, TARGETS

#: Each target parameter's option, and the targets it belongs to.
_OPTIONS = {name: [k for k, spec in TARGETS.items() if name in spec.defaults]
            for name in ("beta", "omega", "scale", "lag", "dim", "forcing")}


def add_parser(sub):
    p = sub.add_parser("data", help="sample input paths and compute a target's outputs into a .npz file",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kernel", "--target", dest="kernel", choices=TARGET_NAMES, default="exp",
                   help="exp: e^{-βt}(1+t)^-2; powerlaw: (1+t)^-(1+ω); bump: Gaussian at lag 1/ω; airy: Ai(s(t-6)); "
                        "plateau: e^{-t/2} + a bump at lag L; lorenz96: the forced Lorenz-96 ring (default exp)")
    p.add_argument("--beta", type=float, default=None, help="β of --kernel exp (default 0.5)")
    p.add_argument("--omega", type=float, default=None, help="ω of --kernel powerlaw (default 0.5) or bump (default 0.1)")
    p.add_argument("--scale", type=float, default=None, help="s of --kernel airy (default 1)")
    p.add_argument("--lag", type=float, default=None, help="the bump's lag L of --kernel plateau (default 10)")
    p.add_argument("--dim", type=int, default=None, help="K of --kernel lorenz96 (default 8)")
    p.add_argument("--forcing", type=float, default=None,
                   help="F of --kernel lorenz96, 0 <= F < 8/9 (default 0.5)")
    p.add_argument("--allow-unstable", action="store_true",
                   help="allow --forcing outside [0, 8/9), where the rest state of Lorenz-96 may be unstable")
    p.add_argument("--input", choices=INPUTS, default="white",
                   help="white: white noise N(0, 1/dt); ou: Ornstein-Uhlenbeck; smooth: smooth random signal")
    p.add_argument("--input-rate", type=float, default=None, help="the rate of --input ou (default 1)")
    p.add_argument("--input-scale", type=float, default=None, help="the correlation length of --input smooth (default 1)")
    p.add_argument("--n", type=int, default=64, help="number of paths N (default 64)")
    p.add_argument("--duration", type=float, default=100.0, help="the length T of each path (default 100)")
    p.add_argument("--dt", type=float, default=0.1, help="the sampling step Δ (default 0.1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the input paths (default 0)")
    p.add_argument("--batch-size", type=int, default=256, help="paths per compiled call (default 256)")
    p.add_argument("--out", type=Path, default=Path("runs/data.npz"), help="output file (default runs/data.npz)")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def settings_from_args(args):
    """The `DataSettings` of parsed options."""
    params = {}
    for name, kinds in _OPTIONS.items():
        value = getattr(args, name)
        if value is None:
            continue
        if args.kernel not in kinds:
            raise ValueError(f"--{name} goes with --kernel {' or '.join(kinds)}, not --kernel {args.kernel}.")
        params[name] = value
    if args.allow_unstable:
        if args.kernel != "lorenz96":
            raise ValueError(f"--allow-unstable goes with --kernel lorenz96, not --kernel {args.kernel}.")
        params["allow_unstable"] = 1
    input_params = {}
    for name, kind, key in (("--input-rate", "ou", "input_rate"), ("--input-scale", "smooth", "input_scale")):
        value = getattr(args, key)
        if value is None:
            continue
        if args.input != kind:
            raise ValueError(f"{name} goes with --input {kind}, not --input {args.input}.")
        input_params[key.removeprefix("input_")] = value
    return DataSettings(target=args.kernel, target_params=params, input=args.input, input_params=input_params,
                        n_paths=args.n, duration=args.duration, dt=args.dt, seed=args.seed,
                        batch_size=args.batch_size)


def run(args) -> int:
    run_data(settings_from_args(args), args.out, force=args.force, progress=not args.no_progress,
             log=functools.partial(print, flush=True))
    return 0
