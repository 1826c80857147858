"""`jaxmem train`: sequence models trained by gradient methods on sampled data.

Input paths are sampled on the grid 0, dt, ..., duration; the target's outputs are exact (the
convolution of the interpolated input for a kernel, a tight Diffrax solve for Lorenz-96). Every
(parameter, width, seed, learning rate) of one target family is trained by one compiled,
vmapped program, in chunks; the loss curves are appended to train.csv as they are recorded, and
running the same command again in the same --out resumes from the last finished chunk.

Presets: `figure1` trains on exponential memory, Airy memory and Lorenz-96 (tanh RNNs) and draws
the three panels side by side; `theory` holds gradient descent on data from the canonical start
against gradient descent on the exact loss, for several lags (theory.png).
"""

import argparse
import functools
from pathlib import Path

from .._experiments.training import (
    INITS,
    INPUTS,
    MODELS,
    OPTIMIZERS,
    TIMES,
    TrainSettings,
)
from ._args import flat, floats, ints

PRESETS = ("figure1", "theory")
PARAM_FLAGS = ("beta", "omega", "scale", "lag", "forcing")


def add_parser(sub):
    from .._experiments.learn_batch import SWEPT

    d = TrainSettings.__dataclass_fields__
    p = sub.add_parser("train", help="train RNNs on sampled data (loss curves, plateaus on data)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=PRESETS, default=None, help="a ready-made run (other options then refine it)")
    p.add_argument("--kernel", choices=tuple(SWEPT), default=None,
                   help="the target: exp, powerlaw, bump, airy (as in jaxmem approx), plateau (--lag), lorenz96")
    for name in PARAM_FLAGS:
        p.add_argument(f"--{name}", type=floats, nargs="+", default=None,
                       help=f"the target's {name} values (a list or START:STOP:STEP)")
    p.add_argument("--dim", type=int, default=d["dim"].default, help="Lorenz-96 dimension K (default 8)")
    p.add_argument("--model", choices=MODELS, default=None, help="diagonal (modal linear), linear (dense) or tanh")
    p.add_argument("--time", choices=TIMES, default=None, help="continuous (ODE) or discrete (recurrence) time")
    p.add_argument("--init", choices=INITS, default=None,
                   help="canonical (the plateau experiment's start; linear models) or random")
    p.add_argument("--parameterization", choices=("identity", "exp", "softplus", "best"), default=None,
                   help="rates parameterisation of diagonal models")
    p.add_argument("--widths", "--width", dest="widths", type=ints, nargs="+", default=None, help="widths m")
    p.add_argument("--seeds", type=int, default=None, help="number of initialisation seeds")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=None)
    p.add_argument("--lr", type=floats, nargs="+", default=None, help="learning rates")
    p.add_argument("--momentum", type=float, default=None, help="heavy-ball momentum (--optimizer momentum)")
    p.add_argument("--steps", type=int, default=None, help="iterations")
    p.add_argument("--batch-size", type=int, default=None, help="paths per minibatch (= --n-train: full batch)")
    p.add_argument("--n-train", type=int, default=None, help="training paths")
    p.add_argument("--n-test", type=int, default=None, help="held-out test paths")
    p.add_argument("--paths", choices=("fixed", "fresh"), default=None,
                   help="minibatches of the fixed training paths, or fresh paths every iteration (kernel targets)")
    p.add_argument("--duration", type=float, default=None, help="path length T")
    p.add_argument("--dt", type=float, default=None, help="grid step")
    p.add_argument("--input", choices=INPUTS, default=None, help="input process (default white noise)")
    p.add_argument("--seed", type=int, default=None, help="the data's random seed")
    p.add_argument("--burn-in", type=float, default=None, help="times left out of the loss (default: the memory)")
    p.add_argument("--records", type=int, default=None, help="about how many points per loss curve")
    p.add_argument("--delta-param", type=float, default=None, help="escape threshold on the parameters")
    p.add_argument("--delta-loss", type=float, default=None, help="escape threshold on the loss")
    p.add_argument("--chunk", type=int, default=None, help="most iterations per compiled call")
    p.add_argument("--out", type=Path, default=Path("runs/train"), help="output folder (default runs/train)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def _overrides(args) -> dict:
    out = {}
    names = {"widths": "widths", "seeds": "seeds", "optimizer": "optimizer", "lr": "lrs", "momentum": "momentum",
             "steps": "steps", "batch_size": "batch_size", "n_train": "n_train", "n_test": "n_test", "paths": "paths",
             "duration": "duration", "dt": "dt", "input": "input", "seed": "seed", "burn_in": "burn_in",
             "records": "records", "delta_param": "delta_param", "delta_loss": "delta_loss", "chunk": "chunk",
             "model": "model", "time": "time", "init": "init", "parameterization": "parameterization"}
    for arg, field in names.items():
        v = getattr(args, arg)
        if v is not None:
            out[field] = tuple(flat(v)) if isinstance(v, list) else v
    return out


def _params(args):
    given = {n: flat(getattr(args, n)) for n in PARAM_FLAGS if getattr(args, n) is not None}
    if len(given) > 1:
        raise ValueError(f"give the target's parameters with one flag; got {', '.join('--' + n for n in given)}.")
    return given


def settings_from_args(args) -> list:
    """The `TrainSettings` of parsed options (one per target family)."""
    from .._experiments.learn_batch import param_name

    given = _params(args)
    over = _overrides(args)
    if args.preset is not None:
        from .._experiments.presets_train import train_presets

        if args.kernel is not None or given:
            raise ValueError("--preset fixes the targets; drop --kernel and the parameter flags.")
        return train_presets(args.preset, **over)
    kernel = args.kernel or "exp"
    if given:
        (flag, values), = given.items()
        if flag != param_name(kernel):
            raise ValueError(f"--{flag} does not go with --kernel {kernel} (its parameter is --{param_name(kernel)}).")
        over["params"] = tuple(values)
    if args.dim is not None:
        over["dim"] = args.dim
    return [TrainSettings(kernel=kernel, **over)]


def run(args) -> int:
    from .._experiments.training import run_train

    settings = settings_from_args(args)
    if args.preset == "theory":
        from .._experiments.presets_train import run_theory

        run_theory(settings, args.out, progress=not args.no_progress, log=functools.partial(print, flush=True))
        return 0
    run_train(settings, args.out, progress=not args.no_progress, log=functools.partial(print, flush=True),
              figure_title="jaxmem train --preset figure1" if args.preset == "figure1" else None)
    return 0
