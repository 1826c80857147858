"""The configurations of a plateau sweep: the grid, its keys, and the order it runs in."""

import itertools
import math

from .._parameterization import get_parameterization
from .._presets import MIN_RATE
from .._train import OPTIMIZERS

#: The kinds of training a sweep runs: the gradient flow and the discrete optimisers.
KINDS = ("flow", *OPTIMIZERS)


def config_key(c) -> str:
    """A stable identifier of one configuration (used to resume)."""
    return (f"{c['optimizer']}|{c['parameterization']}|L={c['lag']!r}|m={c['width']}|seed={c['seed']}"
            f"|lr={c['lr']!r}|mom={c['momentum']!r}")


def plateau_grid(lags, *, widths=(10,), seeds=(0,), optimizers=("flow",), lrs=(1e-2,), momenta=(0.9,),
                 parameterizations=("identity",)):
    """The configurations of a plateau sweep, as a list of dicts.

    One dict per (parameterisation, optimiser, lag, width, seed, learning rate, momentum), with
    keys `optimizer`, `parameterization`, `lag`, `width`, `seed`, `lr`, `momentum`. The gradient
    flow has no learning rate and no momentum, and gd and adam no momentum: those entries are
    NaN (not applicable).

    ```python
    import jaxmem
    grid = jaxmem.plateau_grid([8.0, 10.0], widths=[6, 10], optimizers=["flow", "gd"])
    len(grid)    # 8
    ```
    """
    lags = [float(x) for x in lags]
    if not lags or any(not (math.isfinite(x) and x > 0) for x in lags):
        raise ValueError(f"lags must be positive and finite (omega = 1/lag > 0); got {lags}.")
    widths = [int(m) for m in widths]
    if not widths or any(m < 1 for m in widths):
        raise ValueError(f"widths must be positive integers; got {widths}.")
    for name, vals in (("lrs", lrs), ("momenta", momenta)):
        if any(not (math.isfinite(float(v)) and float(v) >= 0) for v in vals):
            raise ValueError(f"{name} must be finite and >= 0; got {list(vals)}.")
    if any(float(v) <= 0 for v in lrs):
        raise ValueError(f"learning rates must be > 0; got {list(lrs)}.")
    bad = [o for o in optimizers if o not in KINDS]
    if bad or not optimizers:
        raise ValueError(f"unknown optimizer(s) {bad}; expected some of {KINDS}.")
    for p in parameterizations:
        get_parameterization(p)
    out = []
    for p, opt in itertools.product(parameterizations, optimizers):
        hyper = [(float("nan"), float("nan"))] if opt == "flow" else list(itertools.product(lrs, momenta))
        if opt in ("gd", "adam"):
            hyper = [(float(lr), float("nan")) for lr in lrs]
        for lag, m, seed, (lr, mom) in itertools.product(lags, widths, seeds, hyper):
            out.append(dict(optimizer=opt, parameterization=p, lag=lag, width=m, seed=int(seed),
                            lr=float(lr), momentum=float(mom)))
    return out


def predicted_log_tau(c):
    """Ordering key: log τ ≈ w_min·L on the plateau family (the Thm 20 exponent)."""
    return MIN_RATE * c["lag"]


def groups(configs, order="predicted"):
    """The configurations by (optimiser, parameterisation), each group in the order it runs:
    `"predicted"` sorts the discrete optimisers' batches by increasing predicted plateau length
    (so batches are even) and the flow's queue longest first (so its slots run out together);
    `"given"` keeps the order of `configs`."""
    if order not in ("predicted", "given"):
        raise ValueError(f"order must be 'predicted' or 'given'; got {order!r}.")
    out = {}
    for c in configs:
        out.setdefault((c["optimizer"], c["parameterization"]), []).append(c)
    if order == "predicted":
        for (kind, _), group in out.items():
            group.sort(key=predicted_log_tau, reverse=kind == "flow")
    return out
