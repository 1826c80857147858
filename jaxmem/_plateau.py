"""The plateau map: hitting times over lags, optimisers and parameterisations, to files."""

import csv
import dataclasses
import json
import math
import os
import platform
import time

import jax
import numpy as np

from ._presets import CANONICAL_LAGS, QUICK_LAGS, canonical_model, plateau_target
from ._progress import Progress
from ._theory import fit_exponential, plateau_bound

COLUMNS = (
    "lag", "omega", "width", "optimizer", "lr", "parameterization", "delta_param", "delta_loss",
    "tau_param", "tau_loss", "steps", "status", "wall_s",
)


@dataclasses.dataclass
class PlateauSettings:
    lags: tuple = CANONICAL_LAGS
    width: int = 10
    optimizers: tuple = ("flow", "gd", "momentum", "adam")
    lr: float = 1e-2
    momentum: float = 0.9
    delta_param: float = 0.05
    delta_loss: float = 0.05
    parameterizations: tuple = ("identity",)
    max_steps: int = 5_000_000
    rtol: float = 1e-8
    atol: float = 1e-12
    preset: str = "canonical"

    def __post_init__(self):
        self.lags = tuple(float(x) for x in self.lags)
        if not self.lags or any(not (math.isfinite(x) and x > 0) for x in self.lags):
            raise ValueError(f"lags must be positive and finite (omega = 1/lag > 0); got {self.lags}.")
        if not isinstance(self.width, int) or self.width < 1:
            raise ValueError(f"width must be a positive integer; got {self.width!r}.")
        for name in ("delta_param", "delta_loss", "lr"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be > 0; got {v}.")
        bad = [o for o in self.optimizers if o not in ("flow", "gd", "momentum", "adam")]
        if bad or not self.optimizers:
            raise ValueError(f"unknown optimizer(s) {bad}; expected flow, gd, momentum or adam.")


def preset_settings(name: str, **overrides) -> PlateauSettings:
    """`canonical` (DESIGN §1.4: m = 10, L = 8..18, all four optimisers) or `quick`."""
    if name == "canonical":
        base = {}
    elif name == "quick":
        base = dict(lags=QUICK_LAGS, optimizers=("flow", "gd", "adam"), max_steps=400_000)
    else:
        raise ValueError(f"unknown preset {name!r}; expected 'canonical' or 'quick'.")
    base.update({k: v for k, v in overrides.items() if v is not None})
    return PlateauSettings(preset=name, **base)


def _status(reached_param, reached_loss, solver_ok=True):
    if not solver_ok:
        return "solver_failed"
    if reached_param and reached_loss:
        return "ok"
    if reached_param:
        return "loss_not_reached"
    if reached_loss:
        return "param_not_reached"
    return "not_reached"


def run_plateau(settings: PlateauSettings, out_dir=None, *, progress=True, log=print):
    """Measure the hitting times of every configuration; write CSV/JSON/PNG to `out_dir`.

    Each (optimiser, parameterisation) compiles once: the lag is a traced input. Rows are
    appended to `plateau.csv` as they finish. Returns the list of row dicts.
    """
    from ._flow import hitting_times
    from ._train import train

    if out_dir is not None:
        os.makedirs(out_dir, exist_ok=True)
    rows = []
    configs = [(o, p, L) for p in settings.parameterizations for o in settings.optimizers for L in settings.lags]
    csv_path = None if out_dir is None else os.path.join(out_dir, "plateau.csv")
    handle = None
    if csv_path is not None:
        handle = open(csv_path, "w", newline="")
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
    compile_s = {}
    t_start = time.perf_counter()
    bar = Progress(len(configs), "plateau") if progress else None
    try:
        for opt, param, lag in configs:
            model = canonical_model(settings.width, parameterization=param)
            target = plateau_target(lag)
            t0 = time.perf_counter()
            if opt == "flow":
                res = hitting_times(
                    model, target, delta_param=settings.delta_param, delta_loss=settings.delta_loss,
                    rtol=settings.rtol, atol=settings.atol,
                )
                jax.block_until_ready(res)
                tp, tl, steps = float(res.tau_param), float(res.tau_loss), int(res.steps)
                rp, rl, ok = bool(res.reached_param), bool(res.reached_loss), bool(res.solver_ok)
            else:
                res = train(
                    model, target, opt, lr=settings.lr, momentum=settings.momentum,
                    max_steps=settings.max_steps, delta_param=settings.delta_param,
                    delta_loss=settings.delta_loss,
                )
                jax.block_until_ready(res)
                tp, tl, steps = float(res.tau_param), float(res.tau_loss), int(res.steps)
                rp, rl, ok = bool(res.reached_param), bool(res.reached_loss), True
            wall = time.perf_counter() - t0
            compile_s.setdefault(f"{opt}/{param}", wall)
            row = dict(
                lag=lag, omega=1.0 / lag, width=settings.width, optimizer=opt,
                lr=float("nan") if opt == "flow" else settings.lr, parameterization=param,
                delta_param=settings.delta_param, delta_loss=settings.delta_loss,
                tau_param=tp if rp else float("inf"), tau_loss=tl if rl else float("inf"),
                steps=steps, status=_status(rp, rl, ok), wall_s=round(wall, 4),
            )
            rows.append(row)
            if handle is not None:
                writer.writerow(row)
                handle.flush()
            if bar is not None:
                bar.update(1, f"{opt} L={lag:g}: τ₀={row['tau_param']:.3g} τ₀′={row['tau_loss']:.3g}")
    finally:
        if handle is not None:
            handle.close()
        if bar is not None:
            bar.__exit__(None, None, None)
    total = time.perf_counter() - t_start
    fits = summarize(rows, settings)
    if log is not None:
        log(format_fits(fits))
    if out_dir is not None:
        from ._plots import plot_plateau_map

        w_min = float(np.min(canonical_model(settings.width).rates))
        plot_plateau_map(rows, os.path.join(out_dir, "plateau.png"), w_min=w_min)
        manifest = dict(
            settings=dataclasses.asdict(settings),
            fits=fits,
            versions=versions(),
            device=str(jax.devices()[0]),
            platform=platform.platform(),
            x64=bool(jax.config.jax_enable_x64),
            solver=_solver_description(settings),
            timings=dict(total_s=total, first_call_s_including_compile=compile_s),
        )
        with open(os.path.join(out_dir, "plateau.json"), "w") as f:
            json.dump(manifest, f, indent=2, default=str)
    return rows


def _solver_description(settings):
    from ._flow import describe_default_solver

    return describe_default_solver(rtol=settings.rtol, atol=settings.atol)


def summarize(rows, settings):
    """Fitted slopes of log τ against L per series, with the theory's w_l⁰."""
    w_min = float(np.min(canonical_model(settings.width).rates))
    out = []
    keys = sorted({(r["optimizer"], r["parameterization"]) for r in rows})
    for opt, param in keys:
        rs = sorted((r for r in rows if r["optimizer"] == opt and r["parameterization"] == param), key=lambda r: r["lag"])
        lags = [r["lag"] for r in rs]
        for col in ("tau_param", "tau_loss"):
            fit = fit_exponential(lags, [r[col] for r in rs])
            out.append(dict(optimizer=opt, parameterization=param, quantity=col, slope=fit.slope,
                            intercept=fit.intercept, r2=fit.r2, n=fit.n, theory_slope=w_min))
    return out


def format_fits(fits):
    lines = [f"{'optimizer':<9} {'param.':<9} {'quantity':<9} {'slope':>8} {'R²':>7} {'n':>3}  (theory: slope ≥ w_l⁰)"]
    for f in fits:
        lines.append(
            f"{f['optimizer']:<9} {f['parameterization']:<9} {f['quantity']:<9} {f['slope']:8.4f} "
            f"{f['r2']:7.4f} {f['n']:3d}  w_l⁰ = {f['theory_slope']:.3g}"
        )
    return "\n".join(lines)


def versions():
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("jaxmem", "jax", "jaxlib", "equinox", "diffrax", "optax", "numpy", "scipy"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:  # pragma: no cover
            out[pkg] = None
    return out


__all__ = ["PlateauSettings", "preset_settings", "run_plateau", "plateau_bound"]
