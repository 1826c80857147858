"""`jaxmem plateau`: plateau lengths (hitting times) against the memory L = 1/ω."""

import sys

import jax

from .._distributed import is_launched, launch_local
from .._experiments.plateau import preset_settings, run_plateau
from .._parameterization import PARAMETERIZATIONS
from ._args import flat, floats, ints


def add_parser(sub):
    p = sub.add_parser(
        "plateau",
        help="measure plateau lengths (hitting times) against the memory L = 1/ω",
        description="The optimisation curse of memory: gradient flow and optax training on the "
        "exact white-noise loss of the plateau family ρ = e^{-t/2} + bump at lag L. Writes "
        "plateau.csv, plateau.json and plateau.png to --out.",
    )
    p.add_argument("--preset", choices=("canonical", "quick", "long"), default="canonical",
                   help="canonical: m=10, L=8..18, flow/gd/momentum/adam; quick: a small map; "
                   "long: the flow for L=8..60, delta-loss 0.01, solver kvaerno5")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--lags", type=floats, nargs="+", help="lags L, e.g. 8 10 12 or 8:40:2")
    g.add_argument("--omega", "--omegas", dest="omega", type=floats, nargs="+", help="ω = 1/L instead of lags")
    p.add_argument("--widths", "--width", dest="widths", type=ints, nargs="+",
                   help="model width(s) m (default 10); several share one compilation")
    p.add_argument("--seeds", type=int, help="number of seeds (random initialisations near the canonical one)")
    p.add_argument("--perturbation", type=float, help="size of the seed perturbation (default 0; 0.01 with --seeds > 1)")
    p.add_argument("--batch-size", type=int, help="configurations per compiled, sharded call (default 64)")
    p.add_argument("--optimizer", nargs="+", choices=("flow", "gd", "momentum", "adam"), help="one or several")
    p.add_argument("--lr", type=float, nargs="+", help="learning rate(s) η of the discrete optimisers (default 1e-2)")
    p.add_argument("--momentum", type=float, help="heavy-ball momentum (default 0.9)")
    p.add_argument("--delta-param", type=float, help="δ for τ₀ (default 0.05)")
    p.add_argument("--delta-loss", type=float, help="δ for τ₀′ (default 0.05; use 0.01 past L≈20)")
    p.add_argument("--parameterization", nargs="+", choices=tuple(PARAMETERIZATIONS),
                   help="one or several reparameterisations of the rates, side by side")
    p.add_argument("--train-max-steps", "--max-steps", dest="train_max_steps", type=int,
                   help="iteration cap of the discrete optimisers (default 5e6; quick preset 4e5)")
    p.add_argument("--rtol", type=float, help="relative tolerance of the flow solver")
    p.add_argument("--atol", type=float, help="absolute tolerance of the flow solver")
    p.add_argument("--solver", choices=("rodas4", "kvaerno5"),
                   help="the flow's solver: rodas4 (default; fastest to L≈40) or kvaerno5 "
                   "(jaxmem.long_lag_solver(): Newton stage solves, reaches L=60)")
    p.add_argument("--out", default="runs/plateau", help="output folder (default runs/plateau)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--processes", type=int, default=1,
                   help="run as N processes on this host joined by jax.distributed, e.g. one per CPU "
                   "core (XLA runs a batch on one core per process); default 1")
    p.set_defaults(func=run)
    return p


def settings_from_args(args):
    """The `PlateauSettings` of parsed options (the preset, with the options given on top)."""
    lags = flat(args.lags)
    if args.omega is not None:
        omegas = flat(args.omega)
        if any(not 0 < o < float("inf") for o in omegas):  # NaN too
            raise ValueError(f"omegas must be finite and > 0; got {omegas}.")
        lags = [1.0 / o for o in omegas]
    if args.seeds is not None and args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1; got {args.seeds}.")
    seeds = None if args.seeds is None else tuple(range(args.seeds))
    perturbation = args.perturbation
    if perturbation is None and seeds is not None and len(seeds) > 1:
        perturbation = 0.01
    widths = flat(args.widths)
    return preset_settings(
        args.preset, lags=None if lags is None else tuple(lags), widths=widths and tuple(widths), seeds=seeds,
        optimizers=args.optimizer and tuple(args.optimizer), lrs=args.lr and tuple(args.lr),
        momentum=args.momentum, delta_param=args.delta_param, delta_loss=args.delta_loss,
        parameterizations=args.parameterization and tuple(args.parameterization),
        train_max_steps=args.train_max_steps, rtol=args.rtol, atol=args.atol, solver=args.solver,
        perturbation=perturbation,
        batch_size=args.batch_size,
    )


def run(args):
    if args.processes < 1:
        raise ValueError(f"--processes must be >= 1; got {args.processes}.")
    settings = settings_from_args(args)  # bad options are refused once, before any process starts
    if args.processes > 1 and not is_launched():
        return launch_local([sys.executable, "-m", "jaxmem", *args.argv], args.processes)
    print(f"jaxmem plateau: preset {settings.preset}, lags {list(settings.lags)}, widths {list(settings.widths)}, "
          f"seeds {len(settings.seeds)}, optimizers {list(settings.optimizers)}, "
          f"parameterizations {list(settings.parameterizations)}, devices {len(jax.devices())}")
    # With several processes every one computes its share; only process 0 writes files.
    first = jax.process_index() == 0
    run_plateau(settings, args.out, progress=not args.no_progress and first, log=print if first else None)
    return 0
