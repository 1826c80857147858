"""The `jaxmem` command line: `jaxmem plateau`, `jaxmem approx`, `jaxmem demo`."""

import argparse
import sys


def _floats(text):
    """A list of numbers: `8,10,12`, `8 10 12` (nargs) or a range `8:40:2` (inclusive)."""
    out = []
    for part in str(text).replace(",", " ").split():
        if ":" in part:
            bits = [float(b) for b in part.split(":")]
            if len(bits) != 3 or bits[2] <= 0:
                raise argparse.ArgumentTypeError(f"a range is START:STOP:STEP with STEP > 0; got {part!r}.")
            start, stop, step = bits
            n = int(round((stop - start) / step))
            out.extend(start + k * step for k in range(n + 1))
        else:
            try:
                out.append(float(part))
            except ValueError as e:
                raise argparse.ArgumentTypeError(f"not a number: {part!r}.") from e
    return out


def _flatten(lists):
    return None if lists is None else [x for sub in lists for x in sub]


def _add_plateau(sub):
    p = sub.add_parser(
        "plateau",
        help="measure plateau lengths (hitting times) against the memory L = 1/ω",
        description="The optimisation curse of memory: gradient flow and optax training on the "
        "exact white-noise loss of the plateau family ρ = e^{-t/2} + bump at lag L. Writes "
        "plateau.csv, plateau.json and plateau.png to --out.",
    )
    p.add_argument("--preset", choices=("canonical", "quick"), default="canonical",
                   help="canonical: DESIGN §1.4 (m=10, L=8..18, flow/gd/momentum/adam); quick: a small map")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--lags", type=_floats, nargs="+", help="lags L, e.g. 8 10 12 or 8:40:2")
    g.add_argument("--omegas", type=_floats, nargs="+", help="ω = 1/L instead of lags")
    p.add_argument("--width", type=int, nargs="+", help="model width(s) m (default 10); several share one compilation")
    p.add_argument("--seeds", type=int, help="number of seeds (random initialisations near the canonical one)")
    p.add_argument("--perturbation", type=float, help="size of the seed perturbation (default 0; 0.01 with --seeds > 1)")
    p.add_argument("--batch-size", type=int, help="configurations per compiled, sharded call (default 64)")
    p.add_argument("--optimizer", nargs="+", choices=("flow", "gd", "momentum", "adam"), help="one or several")
    p.add_argument("--lr", type=float, nargs="+", help="learning rate(s) η of the discrete optimisers (default 1e-2)")
    p.add_argument("--momentum", type=float, help="heavy-ball momentum (default 0.9)")
    p.add_argument("--delta-param", type=float, help="δ for τ₀ (default 0.05)")
    p.add_argument("--delta-loss", type=float, help="δ for τ₀′ (default 0.05; use 0.01 past L≈20)")
    p.add_argument("--parameterization", nargs="+", choices=("identity", "exp", "softplus", "best"),
                   help="one or several reparameterisations of the rates, side by side")
    p.add_argument("--max-steps", type=int, help="iteration cap of the discrete optimisers")
    p.add_argument("--rtol", type=float, help="relative tolerance of the flow solver")
    p.add_argument("--atol", type=float, help="absolute tolerance of the flow solver")
    p.add_argument("--out", default="runs/plateau", help="output folder (default runs/plateau)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--processes", type=int, default=1,
                   help="run as N processes on this host joined by jax.distributed, e.g. one per CPU "
                   "core (XLA runs a batch on one core per process); default 1")
    p.set_defaults(func=_run_plateau)


def _run_plateau(args):
    from ._launch import is_launched, launch_local
    from ._plateau import preset_settings, run_plateau

    if args.processes < 1:
        raise ValueError(f"--processes must be >= 1; got {args.processes}.")
    if args.processes > 1 and not is_launched():
        return launch_local([sys.executable, "-m", "jaxmem", *args.argv], args.processes)

    lags = _flatten(args.lags)
    if args.omegas is not None:
        omegas = _flatten(args.omegas)
        if any(o <= 0 for o in omegas):
            raise ValueError(f"omegas must be > 0; got {omegas}.")
        lags = [1.0 / o for o in omegas]
    lags = None if lags is None else tuple(lags)  # PlateauSettings.lags is a tuple
    seeds = None if args.seeds is None else tuple(range(args.seeds))
    if args.seeds is not None and args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1; got {args.seeds}.")
    perturbation = args.perturbation
    if perturbation is None and seeds is not None and len(seeds) > 1:
        perturbation = 0.01
    settings = preset_settings(
        args.preset, lags=lags, widths=args.width and tuple(args.width), seeds=seeds,
        optimizers=args.optimizer and tuple(args.optimizer), lrs=args.lr and tuple(args.lr),
        momentum=args.momentum, delta_param=args.delta_param, delta_loss=args.delta_loss,
        parameterizations=args.parameterization and tuple(args.parameterization),
        max_steps=args.max_steps, rtol=args.rtol, atol=args.atol, perturbation=perturbation,
        batch_size=args.batch_size,
    )
    print(f"jaxmem plateau: preset {settings.preset}, lags {list(settings.lags)}, widths {list(settings.widths)}, "
          f"seeds {len(settings.seeds)}, optimizers {list(settings.optimizers)}, "
          f"parameterizations {list(settings.parameterizations)}, devices {len(__import__('jax').devices())}")
    import jax

    # With several processes every one computes its share; only process 0 writes files.
    first = jax.process_index() == 0
    run_plateau(settings, args.out, progress=not args.no_progress and first, log=print if first else None)
    if first:
        print(f"wrote {args.out}/plateau.csv, plateau.json, plateau.png")
    return 0


def _add_demo(sub):
    p = sub.add_parser("demo", help="a short tour: kernels, exact losses, then the quick plateau map")
    p.add_argument("--out", default="runs/demo")
    p.set_defaults(func=_run_demo)


def _run_demo(args):
    import jax.numpy as jnp

    from . import (
        ExpSum,
        GaussianBump,
        PowerLaw,
        canonical_model,
        plateau_target,
        white_noise_loss,
    )

    print("Kernels and their exact Laplace moments b0(w) at w = 0.5, and L2 norms:")
    for name, k in [("e^{-t/2}", ExpSum(jnp.ones(1), jnp.full(1, 0.5))),
                    ("(1+t)^{-1.5}", PowerLaw(0.5)), ("bump at L=18", GaussianBump(18.0, 0.5))]:
        print(f"  {name:<14} b0(0.5) = {float(k.laplace(0.5)):.6e}   ||rho||^2 = {float(k.sq_norm()):.6f}")
    model = canonical_model()
    for lag in (8.0, 18.0, 40.0):
        print(f"  canonical model vs plateau target L={lag:g}: J = {float(white_noise_loss(model, plateau_target(lag))):.6f}")
    args.preset, args.lags, args.omegas = "quick", None, None
    for name in ("width", "optimizer", "lr", "momentum", "delta_param", "delta_loss", "parameterization",
                 "max_steps", "rtol", "atol", "seeds", "perturbation", "batch_size"):
        setattr(args, name, None)
    args.no_progress, args.processes = False, 1
    return _run_plateau(args)


def enable_compilation_cache():
    """Turn on JAX's persistent compilation cache (repeated runs skip compiling).

    Folder: `$JAXMEM_CACHE_DIR`, else `~/.cache/jaxmem/xla`; `JAXMEM_NO_CACHE=1` turns it off.
    """
    import os

    import jax

    if os.environ.get("JAXMEM_NO_CACHE"):
        return None
    path = os.environ.get("JAXMEM_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "jaxmem", "xla")
    try:
        os.makedirs(path, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", path)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    except Exception:  # pragma: no cover - an unwritable home only loses the cache
        return None
    return path


def init_distributed():
    """`jax.distributed.initialize` from the environment when JAXMEM_DISTRIBUTED=1 (several
    hosts: JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID; or auto-detection on
    SLURM / TPU pods when those are unset). With JAXMEM_CPUS (a comma-separated list, set by
    `--processes N`) the process's threads are first pinned to those CPUs."""
    import os

    import jax

    if os.environ.get("JAXMEM_DISTRIBUTED", "") not in ("1", "true", "yes"):
        return False
    if os.environ.get("JAXMEM_CPUS"):  # set by `--processes N` (launch_local): this process's cores
        from ._launch import pin_threads

        pin_threads(os.environ["JAXMEM_CPUS"].split(","))
    # Cross-process collectives of the CPU backend (the sweep's gathers); GPU/TPU use their own.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    kwargs = {}
    if os.environ.get("JAX_COORDINATOR_ADDRESS"):
        kwargs = dict(
            coordinator_address=os.environ["JAX_COORDINATOR_ADDRESS"],
            num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
            process_id=int(os.environ["JAX_PROCESS_ID"]),
        )
    jax.distributed.initialize(**kwargs)
    return True


def main(argv=None) -> int:
    import jax

    # The CLI produces theory-grade numbers: float64 always (the library warns when it is off).
    jax.config.update("jax_enable_x64", True)
    enable_compilation_cache()
    init_distributed()
    parser = argparse.ArgumentParser(
        prog="jaxmem", description="Simulate, measure and see the curse of memory in linear RNNs."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_plateau(sub)
    _add_demo(sub)
    try:
        from . import _cli_approx
    except ImportError:  # pragma: no cover - the approximation CLI is optional at import
        _cli_approx = None
    if _cli_approx is not None:
        _cli_approx.add_parser(sub)
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError) as e:  # StoreError is a ValueError: nothing was overwritten
        print(f"jaxmem {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\njaxmem {args.command}: interrupted; rows finished so far are in the output folder.",
              file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
