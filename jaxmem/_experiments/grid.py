"""The configurations of a plateau sweep: the grid, its keys, and the order it runs in."""

import itertools
import math

from .._errors import MOMENTUM, POSITIVE, integer_list, number_list
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

    Every argument is a sequence (a string is refused: `"18"` is not the lags 1 and 8): lags
    finite and > 0, widths integers >= 1, seeds integers >= 0, learning rates finite and > 0,
    momenta in [0, 1). A value given twice is kept once, at its first place.

    ```python
    import jaxmem
    grid = jaxmem.plateau_grid([8.0, 10.0], widths=[6, 10], optimizers=["flow", "gd"])
    len(grid)    # 8
    ```
    """
    lags = distinct(number_list(lags, "lags"))
    if not lags or any(not (math.isfinite(x) and x > 0) for x in lags):
        raise ValueError(f"lags must be positive and finite (omega = 1/lag > 0); got {lags}.")
    widths = distinct(integer_list(widths, "widths"))
    if not widths or any(m < 1 for m in widths):
        raise ValueError(f"widths must be positive integers; got {widths}.")
    seeds = distinct(integer_list(seeds, "seeds"))
    if not seeds or any(k < 0 for k in seeds):
        raise ValueError(f"seeds must be integers >= 0 (at least one); got {seeds}.")
    lrs = distinct(number_list(lrs, "learning rates"))
    if not lrs or any(not (math.isfinite(v) and v > 0) for v in lrs):
        raise ValueError(f"learning rates must {POSITIVE}; got {lrs}.")
    momenta = distinct(number_list(momenta, "momenta"))
    if not momenta or any(not 0 <= v < 1 for v in momenta):
        raise ValueError(f"momentum must {MOMENTUM}; got {momenta}.")
    optimizers = distinct(name_list(optimizers, "optimizers"))
    bad = [o for o in optimizers if o not in KINDS]
    if bad or not optimizers:
        raise ValueError(f"unknown optimizer(s) {bad}; expected some of {KINDS}.")
    parameterizations = distinct(name_list(parameterizations, "parameterizations"))
    if not parameterizations:
        raise ValueError("parameterizations must name at least one parameterization.")
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


def distinct(values):
    """The values in their order, each kept once (at its first place)."""
    return list(dict.fromkeys(values))


def name_list(values, name):
    if isinstance(values, str):
        raise TypeError(f"{name} must be a sequence of names (not a string); got {values!r}.")
    try:
        return list(values)
    except TypeError:
        raise TypeError(f"{name} must be a sequence of names; got {values!r}.") from None


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
