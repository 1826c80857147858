"""`jaxmem demo`: a short tour: kernels, exact losses, then the quick plateau map."""

import jax.numpy as jnp

from .._kernels import ExpSum, GaussianBump, PowerLaw
from .._loss import white_noise_loss
from .._presets import canonical_model, plateau_target
from .plateau import run as run_plateau_command


def add_parser(sub):
    p = sub.add_parser("demo", help="a short tour: kernels, exact losses, then the quick plateau map")
    p.add_argument("--out", default="runs/demo", help="output folder of the quick plateau map (default runs/demo)")
    p.set_defaults(func=run)
    return p


def run(args):
    print("Kernels and their exact Laplace moments b0(w) at w = 0.5, and L2 norms:")
    for name, k in [("e^{-t/2}", ExpSum(jnp.ones(1), jnp.full(1, 0.5))),
                    ("(1+t)^{-1.5}", PowerLaw(0.5)), ("bump at L=18", GaussianBump(18.0, 0.5))]:
        print(f"  {name:<14} b0(0.5) = {float(k.laplace(0.5)):.6e}   ||rho||^2 = {float(k.sq_norm()):.6f}")
    model = canonical_model()
    for lag in (8.0, 18.0, 40.0):
        print(f"  canonical model vs plateau target L={lag:g}: J = {float(white_noise_loss(model, plateau_target(lag))):.6f}")
    args.preset, args.lags, args.omega = "quick", None, None
    for name in ("widths", "optimizer", "lr", "momentum", "delta_param", "delta_loss", "parameterization",
                 "train_max_steps", "rtol", "atol", "seeds", "perturbation", "batch_size"):
        setattr(args, name, None)
    args.no_progress, args.processes = False, 1
    return run_plateau_command(args)
