"""The approximation map's driver: settings → batched best fits → `approx.csv`, `approx.json`,
`approx.png`.

For each memory parameter and width, the best width-m error of a diagonal linear RNN, with the
decay rates held above a floor (the uniform stability margin of JMLR Thm 11) and, beside it,
with free rates; and the width needed for a relative error `eps` under the floor. The fits run
batch by batch (one compiled, vmapped call per batch) and every finished batch is appended to
approx.csv at once: the same settings on the same folder resume and recompute nothing already
written; a folder holding another run, foreign files or a damaged CSV stops with an error and
is left untouched.
"""

import contextlib
import dataclasses
import math
import time
from pathlib import Path

import numpy as np

from .._approx import bisect_widths, check_args, fit_rows, map_keys
from .._kernels import Airy, Damped, GaussianBump, PowerLaw
from .plots import plot_approx_map
from .progress import Progress
from .provenance import provenance
from .report import format_approx_table
from .store import RowStore, StoreError

KERNELS = ("exp", "powerlaw", "bump", "airy")
DEFAULT_PARAMS = {"exp": (0.25, 0.5, 1.0, 2.0), "powerlaw": (0.25, 0.5, 1.0, 2.0), "bump": (0.1, 0.2), "airy": (1.0,)}
PARAM_NAME = {"exp": "beta", "powerlaw": "omega", "bump": "omega", "airy": "scale"}
DEFAULT_WIDTHS = (1, 2, 3, 4, 6, 8, 12, 16)
DEFAULT_BATCH_SIZE = 32


def _exp_kernel(beta):
    return Damped(PowerLaw(1.0), beta)


def _powerlaw_kernel(omega):
    return PowerLaw(omega)


def _bump_kernel(omega):
    return GaussianBump(1.0 / omega, 0.5)


# Module-level functions: the compiled fit takes the kernel builder as a static argument, so
# one stable function object per kernel family shares one compilation across runs and batches.
_KERNEL_FNS = {"exp": _exp_kernel, "powerlaw": _powerlaw_kernel, "bump": _bump_kernel}


def kernel_fn(kind):
    """The target of a kernel family as a function of its memory parameter."""
    if kind in _KERNEL_FNS:
        return _KERNEL_FNS[kind]
    if kind == "airy":
        return lambda s: Airy(6.0, float(s))
    raise ValueError(f"unknown kernel {kind!r}; expected one of {KERNELS}.")


def _groups(kind, params):
    """(kernel_fn, parameter indices) sharing one compiled program each. Airy's parameters are
    static (scipy nodes at construction): one program per parameter."""
    if kind != "airy":
        return [(kernel_fn(kind), list(range(len(params))))]
    make = kernel_fn(kind)
    return [((lambda _, k=make(s): k), [i]) for i, s in enumerate(params)]


@dataclasses.dataclass
class ApproxSettings:
    """The settings of an approximation map (`jaxmem approx`), validated on construction.

    - `kernel`: `exp` (e^{-βt}(1+t)^-2, parameter β), `powerlaw` ((1+t)^-(1+ω), ω), `bump` (a
      Gaussian of width 1/2 at lag 1/ω, ω) or `airy` (Ai(s(t − 6)), s).
    - `params`: the memory parameters (default per kernel); `widths`: the widths m.
    - `min_rate`: the rate floor (0: none); fits with free rates are made beside it.
    - `max_rate`, `norm` (`L2` or `L1`), `starts` (random starts per fit), `seed`.
    - `eps`: the relative error for the width-needed bisection (0: none), up to `max_width`.
    - `batch_size`: fits per compiled call; a resumed run may change it. The rounding of a
      batched fit depends on the batch, and a few hard free-rate fits then end on another local
      optimum (errors moved by up to 16% between batches of 32 and 8 on the default map): keep
      it fixed where a table must be reproduced.

    ```python
    import jaxmem
    s = jaxmem.ApproxSettings(kernel="exp", params=(0.5, 1.0), widths=(1, 2, 4), eps=0.0)
    s.param_name        # 'beta'
    ```
    """

    kernel: str = "powerlaw"
    params: tuple | None = None
    widths: tuple = DEFAULT_WIDTHS
    min_rate: float = 0.5
    max_rate: float | None = None
    norm: str = "L2"
    starts: int = 8
    seed: int = 0
    eps: float = 0.05
    max_width: int = 32
    batch_size: int = DEFAULT_BATCH_SIZE

    def __post_init__(self):
        from .._errors import (
            integer_list,
            is_integer,
            is_real,
            number_list,
            positive_int,
        )

        kind = self.kernel
        if not isinstance(kind, str) or kind not in KERNELS:
            raise ValueError(f"unknown kernel {kind!r}; expected one of {KERNELS}.")
        # Sequences of numbers (a string is refused: "0.5" is not the parameters 0, . and 5).
        params = () if self.params is None else number_list(self.params, "memory parameters")
        params = params or DEFAULT_PARAMS[kind]
        self.params = tuple(dict.fromkeys(float(p) for p in params))  # distinct, in the order given
        widths = integer_list(self.widths, "widths")
        if not all(math.isfinite(p) and p > 0 for p in self.params) or not widths or any(m < 1 for m in widths):
            raise ValueError(f"memory parameters must be finite and > 0 and widths >= 1; got "
                             f"{list(self.params)}, {widths}.")
        for name in ("eps", "min_rate") + (("max_rate",) if self.max_rate is not None else ()):
            if not is_real(getattr(self, name)):
                raise TypeError(f"{name} must be a real number; got {getattr(self, name)!r}.")
        if not (math.isfinite(self.eps) and self.eps >= 0):
            raise ValueError(f"eps must be > 0 (or 0 to skip); got {self.eps}.")
        if not (math.isfinite(self.min_rate) and self.min_rate >= 0):
            raise ValueError(f"min_rate must be a finite number >= 0; got {self.min_rate}.")
        for name in ("starts", "batch_size", "max_width"):
            setattr(self, name, positive_int(getattr(self, name), name))
        if not is_integer(self.seed):
            raise TypeError(f"seed must be an integer >= 0; got {self.seed!r}.")
        if self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0; got {self.seed!r}.")
        self.seed = int(self.seed)
        self.eps = float(self.eps)
        self.widths = tuple(sorted(set(widths)))
        self.min_rate = float(self.min_rate)
        search = self.eps > 0 and kind != "airy"
        if not search:
            self.eps = 0.0
        floor = self.min_rate or None
        for m in [max(self.widths)] + ([self.max_width] if search else []):
            check_args(m, self.norm, floor, self.max_rate)
            check_args(m, self.norm, None, self.max_rate)

    @property
    def param_name(self) -> str:
        return PARAM_NAME[self.kernel]

    def manifest(self) -> dict:
        """What a resumed run must repeat (`batch_size` may change)."""
        return dict(kernel=self.kernel, param_name=self.param_name, params=list(self.params),
                    widths=list(self.widths), min_rate=self.min_rate, max_rate=self.max_rate, norm=self.norm,
                    starts=self.starts, seed=self.seed, eps=self.eps,
                    max_width=self.max_width if self.eps > 0 else None)


def columns(kind):
    """The columns of approx.csv for a kernel family."""
    return ("kernel", PARAM_NAME[kind], "width", "norm", "min_rate", "rates_mode", "error", "relative_error",
            "status", "part", "batch_wall_s", "key")


def row_key(part, mode, name, p, m):
    """A stable identifier of one fit: `map` rows per rates mode, `search` rows of `eps`."""
    return f"{part}|{mode}|{name}={float(p)!r}|m={int(m)}"


def numeric_columns(kind):
    """The columns of approx.csv that hold numbers (the others are strings)."""
    return (PARAM_NAME[kind], "width", "min_rate", "error", "relative_error", "batch_wall_s")


def check_params(kind, params):
    """Build the target of every memory parameter at once, so that a parameter outside the
    kernel family's domain (e.g. `powerlaw` beyond ω = 60) is a `ValueError` before any work."""
    if kind == "airy":  # built (and checked) with its quadrature nodes, one program per scale
        return
    make = kernel_fn(kind)
    for p in params:
        try:
            make(p)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{PARAM_NAME[kind]} {p:g} is not a valid parameter of --kernel {kind} "
                             f"({str(e).rstrip('.')}).") from None


class _NotStored(Exception):
    pass


def stored_maps(settings, rows):
    """What `run_approx` prints and draws, from stored rows alone (nothing is fitted): the rates
    modes `[(mode, floor)]` and, per mode, the relative errors (parameters × widths) as a masked
    array, masked where no row is stored yet. `settings` is the manifest's."""
    name, params, widths = settings["param_name"], settings["params"], settings["widths"]
    floor = settings["min_rate"] or None
    modes = [("floor", floor)] + ([("free", None)] if floor is not None else [])
    by_key = {r["key"]: r for r in rows}
    maps = {}
    for mode, _ in modes:
        cells = [[by_key.get(row_key("map", mode, name, p, m)) for m in widths] for p in params]
        maps[mode] = np.ma.masked_array(
            [[np.nan if c is None else float(c["relative_error"]) for c in row] for row in cells],
            mask=[[c is None for c in row] for row in cells], dtype=np.float64)
    return modes, maps


def stored_width_needed(settings, rows, width_needed=None):
    """The widths needed for `eps`, from stored data alone: the manifest's `width_needed` (keyed
    by the parameter's repr) when given, else the bisection replayed from the stored `search`
    rows. None when `eps` is 0 or the stored rows do not settle it."""
    if not settings["eps"]:
        return None
    name, params = settings["param_name"], settings["params"]
    if isinstance(width_needed, dict):
        try:
            return np.array([int(width_needed[repr(float(p))]) for p in params])
        except (KeyError, TypeError, ValueError):
            pass
    cache = {r["key"]: r["relative_error"] for r in rows if r.get("part") == "search"}

    def evaluate(idx, ws):
        keys = [row_key("search", "floor", name, params[i], m) for i, m in zip(idx, ws)]
        if any(k not in cache for k in keys):
            raise _NotStored
        return np.array([cache[k] for k in keys], dtype=np.float64)

    try:
        return bisect_widths(evaluate, len(params), settings["max_width"], settings["eps"])
    except _NotStored:
        return None


def run_approx(settings: ApproxSettings, out_dir, *, progress=True, log=print):
    """Fit every (rates mode, parameter, width) of `settings` and the width-needed bisection,
    writing `approx.csv` (batch by batch), `approx.json` and `approx.png` to `out_dir`, and
    printing the table with `log`. Returns the widths needed (None when `eps` is 0).
    """
    import jax.random as jr

    t_run = time.perf_counter()
    s = settings
    settings = s.manifest()
    kind, name, params, widths = settings["kernel"], settings["param_name"], settings["params"], settings["widths"]
    floor, eps, max_width = (settings["min_rate"] or None), settings["eps"], settings["max_width"]
    P, K, bs = len(params), len(widths), int(s.batch_size)
    out = Path(out_dir)
    check_params(kind, params)
    store = RowStore(str(out), settings, columns(kind), rows_name="approx.csv", manifest_name="approx.json",
                     other_outputs=("approx.png",), numeric=numeric_columns(kind))
    key = jr.key(s.seed)
    common = dict(max_rate=s.max_rate, norm=s.norm, n_starts=s.starts)
    modes = [("floor", floor)] + ([("free", None)] if floor is not None else [])

    # The map: rows (rates mode, parameter, width).
    grid = [dict(mode=mode, lo=lo, i=i, j=j, key=row_key("map", mode, name, params[i], widths[j]))
            for mode, lo in modes for i in range(P) for j in range(K)]
    search_keys = {row_key("search", "floor", name, p, m) for p in params for m in range(1, (max_width or 0) + 1)}
    stored = {r["key"]: r for r in store.done_rows}
    unknown = sorted(set(stored) - {g["key"] for g in grid} - search_keys)
    if unknown:  # same settings, yet rows outside this grid: a damaged or edited file
        raise StoreError(f"{store.rows_path} holds {len(unknown)} row(s) outside this run's grid "
                         f"(e.g. {unknown[0]!r}): a damaged or edited file (nothing was changed).")
    if not store.writable and (any(g["key"] not in stored for g in grid)
                               or (eps > 0 and stored_width_needed(settings, store.done_rows) is None)):
        store.require_writable()  # work is left: refused before any (and before saying "resuming")
    if stored:
        log(f"[approx] resuming: {sum(g['key'] in stored for g in grid)} of {len(grid)} map rows"
              f"{f' and {len(stored.keys() & search_keys)} width-search rows' if eps else ''} already in {out}",
              )

    timings = {}
    # error_map's keys: pair (i, j) draws key i*K + j (Airy: one error_map call per parameter, j).
    per_param = kind == "airy"
    keys = map_keys(key, 1 if per_param else P, K)
    todo = [g for g in grid if g["key"] not in stored]
    plan = []
    for fn, members in _groups(kind, params):
        full = [g for g in grid if g["i"] in members]
        rows = [g for g in todo if g["i"] in members]
        if rows:  # the batch shape comes from the whole group: the same program on every resume
            plan.append((fn, rows, min(bs, len(full))))
    n_batches = sum(math.ceil(len(rows) / b) for _, rows, b in plan)
    if todo:
        log(f"[approx] {kind}: fitting {len(todo)} of {len(grid)} rows ({P} {name} x {K} widths x "
            f"{len(modes)} rate modes), {s.starts} starts, {n_batches} batch(es) ...")
    t_map = time.perf_counter()
    with Progress(n_batches, "approx map") if progress and n_batches else contextlib.nullcontext() as bar:
        for fn, rows, b in plan:
            keys_idx = np.array([(0 if per_param else g["i"]) * K + g["j"] for g in rows])
            t0 = time.perf_counter()
            for idx, res in fit_rows(fn, [params[g["i"]] for g in rows], [widths[g["j"]] for g in rows],
                                     [g["lo"] for g in rows], keys[keys_idx], pad=max(widths), batch_size=b,
                                     **common):
                wall = time.perf_counter() - t0
                new = [_record(settings, "map", rows[r]["mode"], rows[r]["lo"], params[rows[r]["i"]],
                               widths[rows[r]["j"]], res, k, wall) for k, r in enumerate(idx)]
                store.append(new)  # written and fsynced now: an interrupt loses at most the next batch
                if bar is not None:
                    bar.update(1, f"{len(new)} fits, {wall:.1f} s")
                t0 = time.perf_counter()
    timings["map_s"] = time.perf_counter() - t_map

    needed = None
    if eps > 0:
        needed, timings["width_needed_s"] = _search(store, settings, key, bs, common, progress, log)

    _, maps = stored_maps(settings, store.done_rows)
    log(format_approx_table(settings, modes, maps, needed))
    if not store.writable:  # nothing was left to compute: display only
        log(f"\n[approx] note: {out} cannot be written ({store.unwritable}); nothing was left to compute, "
            "and approx.json and approx.png are left as they were.")
        return needed
    plot_approx_map(settings, modes, {m: a.filled(np.nan) for m, a in maps.items()}, needed, out / "approx.png")
    n_new = len(store.done_rows) - len(stored)
    store.update_manifest(
        command="jaxmem approx", method="variable projection (BFGS on log J over rates), SVD residual",
        width_needed=None if needed is None else {repr(p): int(n) for p, n in zip(params, needed)},
        **provenance(), batch_size=bs, timings=dict(this_run_s=time.perf_counter() - t_run, **timings, new_rows=n_new,
                                    resumed_rows=len(stored)),
    )
    log(f"\n[approx] wrote {out / 'approx.csv'} ({n_new} new rows, {len(stored)} resumed), "
        f"{out / 'approx.json'}, {out / 'approx.png'}")
    return needed


def _record(settings, part, mode, lo, p, m, res, k, wall):
    """One CSV row from entry `k` of a batch's results."""
    return {"kernel": settings["kernel"], settings["param_name"]: p, "width": int(m), "norm": settings["norm"],
            "min_rate": lo or 0.0, "rates_mode": mode, "error": float(res["error"][k]),
            "relative_error": float(res["relative_error"][k]), "status": str(res["result"][k]),
            "part": part, "batch_wall_s": round(wall, 4), "key": row_key(part, mode, settings["param_name"], p, m)}


def _search(store, settings, key, batch_size, common, progress, log):
    """The width-needed bisection (`bisect_widths`) with every fit it makes stored as a
    `search` row: a resumed run replays the bisection from the stored rows and fits only what
    is missing. Returns the widths needed and the time taken."""
    import jax.random as jr

    name, params, floor = settings["param_name"], settings["params"], settings["min_rate"] or None
    max_width, P = settings["max_width"], len(settings["params"])
    fn = kernel_fn(settings["kernel"])
    keys = jr.split(key, P)  # width_needed's keys: one per parameter
    bs = min(batch_size, P)  # every step pads to bs rows: one program for the whole search
    per_step = math.ceil(P / bs)
    n_steps = 1 + math.ceil(math.log2(max_width))
    cache = {r["key"]: r["relative_error"] for r in store.done_rows if r["part"] == "search"}
    state = dict(step=0, bar=None, announced=False)
    t_start = time.perf_counter()

    def evaluate(idx, ws):
        need = list(dict.fromkeys((int(i), int(m)) for i, m in zip(idx, ws)
                                  if row_key("search", "floor", name, params[i], m) not in cache))
        if need and not state["announced"]:
            state["announced"] = True
            log(f"[approx] width needed for relative {settings['norm']} error <= {settings['eps']} "
                f"(max {max_width}), bisection in batches of {bs} ...")
            if progress:
                state["bar"] = Progress((n_steps - state["step"]) * per_step, "approx width").__enter__()
        bar, ran = state["bar"], 0
        if need:
            ii = np.array([i for i, _ in need])
            t0 = time.perf_counter()
            for rows, res in fit_rows(fn, [params[i] for i in ii], [m for _, m in need], [floor] * len(need),
                                      keys[ii], pad=max_width, batch_size=bs, **common):
                wall = time.perf_counter() - t0
                new = [_record(settings, "search", "floor", floor, params[need[r][0]], need[r][1], res, k, wall)
                       for k, r in enumerate(rows)]
                store.append(new)
                cache.update((r["key"], r["relative_error"]) for r in new)
                ran += 1
                if bar is not None:
                    bar.update(1, f"step {state['step'] + 1}: {len(new)} fits, {wall:.1f} s")
                t0 = time.perf_counter()
        if bar is not None and per_step > ran:
            bar.update(per_step - ran, f"step {state['step'] + 1}")
        state["step"] += 1
        return np.array([cache[row_key("search", "floor", name, params[i], m)] for i, m in zip(idx, ws)])

    try:
        needed = bisect_widths(evaluate, P, max_width, settings["eps"])
        bar = state["bar"]
        if bar is not None and bar.done < bar.total:  # the bisection ended early: fill the bar
            bar.update(bar.total - bar.done, "done")
    finally:
        if state["bar"] is not None:
            state["bar"].__exit__(None, None, None)
    return needed, time.perf_counter() - t_start
