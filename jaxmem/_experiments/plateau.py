"""The plateau map's driver: settings → sweep → `plateau.csv`, `plateau.json`, `plateau.png`."""

import dataclasses
import math
import os
import time

import jax

from .. import _distributed
from .._flow import flow_solver
from .._hitting import HittingTimeSearch
from .._presets import CANONICAL_LAGS, LONG_LAGS, MIN_RATE, QUICK_LAGS
from .grid import config_key, plateau_grid
from .provenance import describe_search, provenance
from .report import failures_note, format_fits, summarize
from .store import RowStore, StoreError
from .sweep import plateau_sweep

COLUMNS = (
    "lag", "omega", "width", "seed", "optimizer", "lr", "momentum", "parameterization",
    "delta_param", "delta_loss", "tau_param", "tau_loss", "steps", "status", "wall_s",
    "batch_wall_s", "key",
)
#: The columns of plateau.csv that hold numbers (the others are strings).
NUMERIC = (
    "lag", "omega", "width", "seed", "lr", "momentum", "delta_param", "delta_loss", "tau_param", "tau_loss",
    "steps", "wall_s", "batch_wall_s",
)


@dataclasses.dataclass
class PlateauSettings:
    """The settings of a plateau map (`jaxmem plateau`), validated on construction; a resumed
    run must repeat them. `train_max_steps` caps the discrete optimisers' iterations;
    `batch_size` is the configurations per compiled call (or the flow's slots); `rtol`, `atol`
    are the flow's step-controller tolerances, `solver` its solver: "rodas4" (the default) or
    "kvaerno5" (`jaxmem.long_lag_solver()`, which reaches L = 60).

    ```python
    import jaxmem
    s = jaxmem.PlateauSettings(lags=(8.0, 10.0), optimizers=("flow",))
    len(s.grid())     # 2
    ```
    """

    lags: tuple = CANONICAL_LAGS
    widths: tuple = (10,)
    seeds: tuple = (0,)
    optimizers: tuple = ("flow", "gd", "momentum", "adam")
    lrs: tuple = (1e-2,)
    momentum: float = 0.9
    delta_param: float = 0.05
    delta_loss: float = 0.05
    parameterizations: tuple = ("identity",)
    train_max_steps: int = 5_000_000
    perturbation: float = 0.0
    batch_size: int = 64
    rtol: float = 1e-8
    atol: float = 1e-10
    solver: str = "rodas4"
    preset: str = "canonical"

    def __post_init__(self):
        from .._errors import (
            check_fraction,
            check_momentum,
            check_positive,
            integer_list,
            is_real,
            number_list,
            positive_int,
        )
        from .grid import distinct, name_list

        # Sequences (a string is refused), each value once at its first place: `--lags 20 20`
        # is one configuration, not the same key computed and written twice.
        self.lags = tuple(distinct(number_list(self.lags, "lags")))
        self.widths = tuple(distinct(integer_list(self.widths, "widths")))
        self.seeds = tuple(distinct(integer_list(self.seeds, "seeds")))
        self.lrs = tuple(distinct(number_list(self.lrs, "learning rates")))
        self.optimizers = tuple(distinct(name_list(self.optimizers, "optimizers")))
        self.parameterizations = tuple(distinct(name_list(self.parameterizations, "parameterizations")))
        for name in ("delta_param", "delta_loss", "atol"):
            setattr(self, name, float(check_positive(getattr(self, name), name)))
        self.rtol = float(check_fraction(self.rtol, "rtol"))
        flow_solver(self.solver)  # a known name
        self.momentum = float(check_momentum(self.momentum))
        if not is_real(self.perturbation):
            raise TypeError(f"perturbation must be a real number; got {self.perturbation!r}.")
        if not (math.isfinite(self.perturbation) and self.perturbation >= 0):
            raise ValueError(f"perturbation must be finite and >= 0; got {self.perturbation!r}.")
        self.perturbation = float(self.perturbation)
        self.train_max_steps = positive_int(self.train_max_steps, "train_max_steps")
        self.batch_size = positive_int(self.batch_size, "batch_size")
        self.grid()  # validates lags, widths, seeds, optimisers, learning rates, parameterisations

    def grid(self):
        return plateau_grid(
            self.lags, widths=self.widths, seeds=self.seeds, optimizers=self.optimizers, lrs=self.lrs,
            momenta=(self.momentum,), parameterizations=self.parameterizations,
        )


def preset_settings(name: str, **overrides) -> PlateauSettings:
    """The settings of a preset, with `overrides` (those not None) on top: `canonical` (m = 10,
    L = 8..18, flow, gd, momentum, adam), `quick` (L = 6..12, flow, gd, adam) or `long` (the
    flow alone for L = 8, 10, ..., 60 (`LONG_LAGS`), δ_loss = 0.01, solver "kvaerno5")."""
    if name == "canonical":
        base = {}
    elif name == "quick":
        base = dict(lags=QUICK_LAGS, optimizers=("flow", "gd", "adam"), train_max_steps=400_000)
    elif name == "long":
        base = dict(lags=LONG_LAGS, optimizers=("flow",), delta_loss=0.01, solver="kvaerno5")
    else:
        raise ValueError(f"unknown preset {name!r}; expected 'canonical', 'quick' or 'long'.")
    base.update({k: v for k, v in overrides.items() if v is not None})
    return PlateauSettings(preset=name, **base)


def _check_known(store, keys):
    unknown = sorted({r["key"] for r in store.done_rows} - keys)
    if unknown:  # same settings, yet rows of configurations outside the grid: a damaged file
        raise StoreError(
            f"{store.rows_path} holds {len(unknown)} row(s) of configurations outside this grid "
            f"(e.g. {unknown[0]!r}): a damaged or edited file (nothing was changed)."
        )


def run_plateau(settings: PlateauSettings, out_dir=None, *, progress=True, log=print):
    """Measure the hitting times of every configuration through `plateau_sweep`; write
    `plateau.csv` (rows appended batch by batch), `plateau.json` and `plateau.png` to `out_dir`.

    Re-running the same command in the same folder resumes: finished rows are not recomputed.
    A folder from another command, or a damaged one, stops with an error and is not touched.
    Returns the list of row dicts (resumed and new).
    """
    configs = settings.grid()
    keys = {config_key(c) for c in configs}
    store = None
    # Several processes (jax.distributed): process 0 opens (or creates) the folder and writes;
    # the others read it after process 0 has, so that all skip the same finished rows (their
    # shares of the queue must match); they never write. Whether process 0 could open it is
    # agreed on by all, so that a refusal stops every process instead of leaving them waiting.
    writer = jax.process_index() == 0
    error = None
    if out_dir is not None and writer:
        try:
            store = RowStore(out_dir, dataclasses.asdict(settings), COLUMNS, rows_name="plateau.csv",
                             manifest_name="plateau.json", other_outputs=("plateau.png",), numeric=NUMERIC)
            _check_known(store, keys)
            if any(config_key(c) not in {r["key"] for r in store.done_rows} for c in configs):
                store.require_writable()  # refused before any work (and before saying "resuming")
        except (StoreError, OSError) as e:
            error = e
    if not _distributed.agree(error is None):
        raise error if error is not None else StoreError(
            f"the process writing {out_dir!r} refused it (its message is above); nothing was computed.")
    if out_dir is not None and not writer:
        store = RowStore(out_dir, dataclasses.asdict(settings), COLUMNS, rows_name="plateau.csv",
                         manifest_name="plateau.json", other_outputs=("plateau.png",), read_only=True,
                         numeric=NUMERIC)
    done = {r["key"] for r in store.done_rows} if store else set()
    if store is not None and store.done_rows and log is not None:
        log(f"resuming: {len(store.done_rows)} of {len(configs)} configurations already in {out_dir}")
    if not writer:
        store_rows, store = (store.done_rows if store else []), None
    if store is not None and store.writable:
        from .plots import prefetch

        prefetch()  # matplotlib loads meanwhile, for plateau.png
    t_start = time.perf_counter()
    new_rows = plateau_sweep(
        configs, delta_param=settings.delta_param, delta_loss=settings.delta_loss,
        batch_size=settings.batch_size, train_max_steps=settings.train_max_steps,
        perturbation=settings.perturbation, rtol=settings.rtol, atol=settings.atol, solver=settings.solver,
        done=done,
        on_batch=store.append if store else None, progress=progress,
    )
    total = time.perf_counter() - t_start
    if not writer:
        return store_rows + new_rows
    rows = (store.done_rows if store else new_rows)
    fits = summarize(rows)
    if log is not None:
        log(format_fits(fits))
        note = failures_note(rows)
        if note:
            log(note)
    if store is not None and not store.writable:  # nothing was left to compute: display only
        if log is not None:
            log(f"note: {out_dir} cannot be written ({store.unwritable}); nothing was left to compute, "
                "and plateau.json and plateau.png are left as they were.")
    elif store is not None:
        from .plots import save_plateau_map

        save_plateau_map(rows, os.path.join(out_dir, "plateau.png"), w_min=MIN_RATE)
        import diffrax

        search = HittingTimeSearch(solver=flow_solver(settings.solver),
                                   stepsize_controller=diffrax.PIDController(rtol=settings.rtol, atol=settings.atol))
        store.update_manifest(
            fits=fits, **provenance(), solver=describe_search(search),
            timings=dict(this_run_s=total, new_rows=len(new_rows), resumed_rows=len(rows) - len(new_rows)),
        )
        if log is not None:
            log(f"wrote {out_dir}/plateau.csv, plateau.json, plateau.png")
    return rows
