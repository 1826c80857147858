r"""The learnability report (`jaxmem memory`): a memory from data or from a trained model →
`memory.csv`, `memory.json`, `memory.png`.

Four questions, each answered with the library's own tools on one kernel $\rho$:

1. What is the memory? From data, `estimate_kernel` (regularised least squares with a bootstrap
   band); from a model file, the model's memory function (`memory_function`: exact for linear
   models, step inputs for the others).
2. How does it decay? `decay_class`: exponential or power law, with intervals.
3. How wide must a model be? The best free-rate fits of widths $1 \dots$ `max_width` with rates
   $\ge$ `min_rate` (the stability margin), as in `width_needed`: the smallest width whose
   relative $L^2$ error is $\le$ `eps`.
4. How long does gradient flow wait? `hitting_times` from the canonical start on $\rho/\|\rho\|_2$,
   for each parameterisation of the rates.

The canonical start on a general kernel: the rates of `canonical_model(plateau_width)`,
geomspace(0.5, 4, m) in the time unit of the data, with the coefficients that fit $\rho/\|\rho\|_2$
best for those rates (its $L^2$ projection on $e^{-w_i t}$). On the plateau target
$e^{-t/2} + \text{bump}$ this is, up to $O(e^{-L/2})$, the canonical start of the plateau
experiment: $a = e_1$. The gradient in the coefficients vanishes there, so the loss can only
drop by moving the rates: τ₀′ measures the plateau of the gradient flow (docs/mathematics.md) on this memory. When the start
already fits (loss0 ≈ 0) there is nothing to wait for.
"""

import dataclasses
import math
import os
import time
from pathlib import Path

import numpy as np

from .._errors import is_integer, is_real, positive_int
from .._parameterization import PARAMETERIZATIONS
from .store import _dumps

PARAMETERIZATION_NAMES = tuple(PARAMETERIZATIONS)
CSV_COLUMNS = ("t", "rho", "lo", "hi")
_RCOND = 1e-12  # eigenvalues of the start's Gram matrix below this fraction of the largest are dropped
DECAY_NAMES = {"exponential": "exponential", "polynomial": "power-law"}


@dataclasses.dataclass
class MemorySettings:
    """The settings of a learnability report (`jaxmem memory`), validated on construction.

    - `data` or `model` (exactly one): a `.npz` file with arrays `ts`, `xs`, `ys` (the format of
      `jaxmem data`), or a model file written by `jaxmem train`.
    - Estimation from data: `horizon` (None: chosen from the data), `n_basis`, `n_boot`,
      `level` (of the bootstrap band and the decay intervals), `seed`.
    - A model's memory function: on the grid $0, $ `dt`, ... up to `duration` (None: the
      model's training grid).
    - Width needed: `eps` (relative $L^2$ error), `min_rate` (rate floor of the fits; 0: free
      rates), `max_width`, `starts` (random starts per fit).
    - Plateau: `plateau_width` (width of the canonical start), `parameterizations`,
      `delta_param` (τ₀: the parameters moved by this much), `delta_loss` (τ₀′: the loss dropped
      by this fraction of the start's loss), `t1` (the horizon of the flow), `horizon_factor`
      (once τ₀ is known the flow is followed up to `horizon_factor`·τ₀ at most).

    ```python
    import jaxmem
    s = jaxmem.MemorySettings(data="d.npz", max_width=8)
    s.source
    ```
    """

    data: str | os.PathLike | None = None
    model: str | os.PathLike | None = None
    horizon: float | None = None
    n_basis: int = 40
    n_boot: int = 200
    level: float = 0.95
    seed: int = 0
    duration: float | None = None
    dt: float | None = None
    eps: float = 0.05
    min_rate: float = 0.5
    max_width: int = 16
    starts: int = 8
    plateau_width: int = 10
    parameterizations: tuple = PARAMETERIZATION_NAMES
    delta_param: float = 0.05
    delta_loss: float = 0.1
    t1: float = 1e12
    horizon_factor: float = 1e6

    def __post_init__(self):
        if (self.data is None) == (self.model is None):
            raise ValueError("give exactly one of data (a .npz file of paths) and model (a model file of jaxmem train).")
        for name in ("data", "model"):
            if getattr(self, name) is not None:
                setattr(self, name, os.fspath(getattr(self, name)))
        for name in ("horizon", "duration", "dt"):
            v = getattr(self, name)
            if v is not None:
                setattr(self, name, _positive(v, name))
        for name in ("eps", "delta_param", "delta_loss", "t1", "horizon_factor"):
            setattr(self, name, _positive(getattr(self, name), name))
        if not is_real(self.level) or not 0 < float(self.level) < 1:
            raise ValueError(f"level must satisfy 0 < level < 1; got {self.level!r}.")
        self.level = float(self.level)
        if not is_real(self.min_rate) or not (math.isfinite(float(self.min_rate)) and float(self.min_rate) >= 0):
            raise ValueError(f"min_rate must be a finite number >= 0 (0: free rates); got {self.min_rate!r}.")
        self.min_rate = float(self.min_rate)
        for name in ("n_basis", "max_width", "starts", "plateau_width"):
            setattr(self, name, positive_int(getattr(self, name), name))
        if not is_integer(self.n_boot) or self.n_boot < 0:
            raise ValueError(f"n_boot must be an integer >= 0; got {self.n_boot!r}.")
        if not is_integer(self.seed) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0; got {self.seed!r}.")
        self.n_boot, self.seed = int(self.n_boot), int(self.seed)
        names = [self.parameterizations] if isinstance(self.parameterizations, str) else list(self.parameterizations)
        bad = [p for p in names if p not in PARAMETERIZATIONS]
        if bad:
            raise ValueError(f"unknown parameterization {bad[0]!r}; expected among {PARAMETERIZATION_NAMES}.")
        self.parameterizations = tuple(dict.fromkeys(names))

    @property
    def source(self) -> str:
        return "data" if self.data is not None else "model"

    def manifest(self) -> dict:
        return dataclasses.asdict(self) | {"parameterizations": list(self.parameterizations)}


def _positive(x, name):
    if not is_real(x) or not (math.isfinite(float(x)) and float(x) > 0):
        raise ValueError(f"{name} must be a finite number > 0; got {x!r}.")
    return float(x)


# -- reading the inputs ----------------------------------------------------------------------------


def read_paths(path):
    """`(ts, xs, ys)` of a `.npz` file with those arrays (a `jaxmem data` file or a user's own),
    checked: a clear `ValueError` naming the file and the value otherwise."""
    from .._memory._estimate import check_paths

    path = os.fspath(path)
    try:
        f = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise
    except (ValueError, OSError) as e:
        raise ValueError(f"{path!r} is not a readable .npz file of paths (ts, xs, ys): {e}") from None
    with f:
        if not hasattr(f, "files"):
            raise ValueError(f"{path!r} holds a single array, not an .npz archive with arrays ts, xs, ys.")
        missing = [k for k in ("ts", "xs", "ys") if k not in f.files]
        if missing:
            raise ValueError(f"{path!r} has no array {missing[0]!r} (it holds {sorted(f.files)}); a data file needs "
                             f"ts (n,), xs and ys (paths, n).")
        try:
            ts, xs, ys = (np.asarray(f[k]) for k in ("ts", "xs", "ys"))
        except ValueError as e:  # e.g. an object array
            raise ValueError(f"{path!r}: {e}") from None
    for name, arr in (("ts", ts), ("xs", xs), ("ys", ys)):
        if not np.issubdtype(arr.dtype, np.number):
            raise ValueError(f"{path!r}: {name} must be numeric; got dtype {arr.dtype}.")
    try:
        _, xs, ys = check_paths(ts, xs, ys)
    except ValueError as e:
        raise ValueError(f"{path!r}: {e}") from None
    if xs.shape[0] < 2:
        raise ValueError(f"{path!r}: the estimate cross-validates over paths: it needs at least 2 paths; got "
                         f"{xs.shape[0]}.")
    return ts.astype(np.float64), xs, ys


def kernel_of_model(model, ts):
    """`(kernel, values, kind)`: a kernel standing for the model's memory, its values on `ts`
    (signed kernel for linear models, $M \\ge 0$ otherwise), and how they were obtained."""
    import jax.numpy as jnp

    from .._kernels import ExpSum, GridKernel
    from .._memory import memory_function
    from .._models import DiagonalRNN, LinearRNN

    if isinstance(model, DiagonalRNN):
        on = np.asarray(model.active)
        kernel = ExpSum(jnp.asarray(np.asarray(model.coeffs)[on]), jnp.asarray(np.asarray(model.rates)[on]))
        return kernel, np.asarray(kernel(ts)), "exact kernel of a diagonal linear RNN (sum of a_i exp(-w_i t))"
    if isinstance(model, LinearRNN) and model.dense()[1].shape[1] == 1:
        values = np.asarray(model.kernel(ts))[..., 0]
        return GridKernel(ts, values), values, "exact kernel of a dense linear RNN (c^T exp(W t) U), on the grid"
    values = np.asarray(memory_function(model, ts, method="step"))
    return (GridKernel(ts, values), values,
            "step-input memory function of a nonlinear model: max over amplitudes of |d/dt y(x 1)| / |x|, "
            "no band (lo = hi = rho)")


# -- the four answers ---------------------------------------------------------------------------------


def decay_block(d):
    """The `decay` block of memory.json from a `DecayClass`."""
    return dict(**{"class": DECAY_NAMES[d.kind]}, rate=d.rate, rate_interval=list(d.rate_ci), omega=d.omega,
                omega_interval=[d.exponent_ci[0] - 1.0, d.exponent_ci[1] - 1.0], exponent=d.exponent,
                window=list(d.window), cv_exponential=d.cv_exponential, cv_power_law=d.cv_polynomial,
                agreement=d.agreement, level=d.level, interval=d.interval,
                criterion="the smaller 5-fold cross-validated squared error in log M of the two tail fits "
                          "log M = a - rate t and log M = a - (1 + omega) log t")


def width_block(kernel, s: MemorySettings):
    """Best free-rate fits of every width 1..max_width (rates >= min_rate), one compiled call: the
    errors per width and the smallest width reaching `eps` (None when none does)."""
    import jax.random as jr

    from .._approx import fit_rows

    widths = list(range(1, s.max_width + 1))
    keys = jr.split(jr.key(s.seed), len(widths))
    rel, status = np.empty(len(widths)), []
    for rows, out in fit_rows(lambda p, k=kernel: k, np.zeros(len(widths)), widths, [s.min_rate or None] * len(widths),
                              keys, pad=s.max_width, n_starts=s.starts):
        rel[rows] = out["relative_error"]
        status.extend(out["result"].tolist())
    best = np.minimum.accumulate(rel)  # the best error at width <= m (a wider model can switch modes off)
    hit = np.flatnonzero(best <= s.eps)
    return dict(eps=s.eps, min_rate=s.min_rate, width=int(widths[hit[0]]) if hit.size else None,
                max_width=s.max_width, error_at_max_width=float(best[-1]), widths=widths,
                relative_error=[float(x) for x in best], fit_status=status,
                method="best free-rate fits by variable projection (jaxmem.best_approximation's search, batched as "
                       "in jaxmem.width_needed), relative L2 error; the error per width is the best over widths <= m")


def canonical_start(kernel, width, parameterization):
    """The canonical start on `kernel` (see the module docstring): `(model, loss0)`, the model
    with the canonical rates and the best coefficients for them, and its white-noise loss."""
    import jax.numpy as jnp

    from .._models import DiagonalRNN
    from .._presets import canonical_model

    w = np.asarray(canonical_model(width).rates, dtype=np.float64)
    G = 1.0 / (w[:, None] + w[None, :])
    b = np.array([float(kernel.laplace(x)) for x in w])
    lam, V = np.linalg.eigh(G)
    keep = lam > _RCOND * lam[-1]
    a = V[:, keep] @ ((V[:, keep].T @ b) / lam[keep])
    loss0 = float(kernel.sq_norm()) - 2 * a @ b + a @ G @ a
    return DiagonalRNN(jnp.asarray(a), jnp.asarray(w), parameterization=parameterization), max(loss0, 0.0)


def plateau_block(kernel, s: MemorySettings, log=print):
    """Hitting times τ₀, τ₀′ of gradient flow from the canonical start on kernel/‖kernel‖₂, for
    each parameterisation (`hitting_times(..., throw=False)`; the status names the outcome)."""
    from .._hitting_times import hitting_times
    from .._results import name

    norm = float(np.sqrt(kernel.sq_norm()))
    unit = (1.0 / norm) * kernel
    model, loss0 = canonical_start(unit, s.plateau_width, "identity")
    rows = []
    for p in s.parameterizations:
        t0 = time.perf_counter()
        h = hitting_times(model.__class__(model.a, model.rates, parameterization=p), unit, delta_param=s.delta_param,
                          delta_loss=s.delta_loss * loss0 if loss0 > 0 else s.delta_loss, t1=s.t1,
                          horizon_factor=s.horizon_factor, throw=False)
        rows.append(dict(parameterization=p, tau0=float(h.tau_param), tau0_prime=float(h.tau_loss),
                         status=name(h.result), loss0=float(h.loss0), horizon=float(h.horizon), steps=int(h.steps),
                         wall_s=time.perf_counter() - t0))
        log(f"[memory] plateau, {p}: tau0 = {rows[-1]['tau0']:.3g}, tau0' = {rows[-1]['tau0_prime']:.3g} "
            f"({rows[-1]['status']})")
    return dict(width=s.plateau_width, rates=[float(x) for x in np.asarray(model.rates)],
                coeffs=[float(x) for x in np.asarray(model.a)], loss0=loss0, kernel_norm=norm,
                delta_param=s.delta_param, delta_loss=s.delta_loss, delta_loss_absolute=s.delta_loss * loss0,
                t1=s.t1, horizon_factor=s.horizon_factor, rows=rows,
                start=("the rates of canonical_model(width), geomspace(0.5, 4, width), with the coefficients that fit "
                       "the unit-norm kernel best for those rates (L2 projection); the flow runs on "
                       "kernel / ||kernel||_2; tau0' is when the loss has dropped by delta_loss x loss0"))


def verdict(decay, width, plateau) -> str:
    """The report in one paragraph."""
    if decay["class"] == "power-law":
        lo, hi = decay["omega_interval"]
        parts = [f"power-law memory, omega ~ {decay['omega']:.2g} [{lo:.2g}, {hi:.2g}]: not stably approximable"]
    else:
        lo, hi = decay["rate_interval"]
        parts = [f"exponential memory, rate ~ {decay['rate']:.2g} [{lo:.2g}, {hi:.2g}]: stably approximable"]
    floor = f"rates >= {width['min_rate']:g}" if width["min_rate"] > 0 else "free rates"
    if width["width"] is not None:
        parts.append(f"width {width['width']} needed for {width['eps']:.0%} error with {floor}")
    else:
        parts.append(f"no width up to {width['max_width']} reaches {width['eps']:.0%} error with {floor} "
                     f"(best {width['error_at_max_width']:.2g})")
    by = {r["parameterization"]: r for r in plateau["rows"]}
    base = by.get("identity", plateau["rows"][0] if plateau["rows"] else None)
    fits = math.sqrt(plateau["loss0"])
    if fits <= width["eps"]:
        parts.append(f"the canonical start (width {plateau['width']}) already fits it to {fits:.2g} relative error: "
                     f"no plateau to wait on")
    elif base is not None:
        t = base["tau0_prime"]
        wait = (f"tau0' ~ {t:.2g}" if math.isfinite(t)
                else f"longer than the horizon {base['horizon']:.2g} of the flow ({base['status']})")
        parts.append(f"gradient flow from the canonical start ({base['parameterization']}) waits {wait}")
        finite = [r for r in plateau["rows"] if math.isfinite(r["tau0_prime"])]
        if finite:
            fast = min(finite, key=lambda r: r["tau0_prime"])
            if fast is not base and (not math.isfinite(t) or fast["tau0_prime"] < 0.8 * t):
                parts.append(f"the '{fast['parameterization']}' parameterisation shortens it to "
                             f"{fast['tau0_prime']:.2g}")
            elif len(plateau["rows"]) > 1 and math.isfinite(t):
                parts.append("no parameterisation shortens it by more than 20%")
    return "; ".join(parts) + "."


# -- the driver ------------------------------------------------------------------------------------


def run_memory(settings: MemorySettings, out_dir, *, progress=True, log=print) -> dict:
    """The learnability report of `settings` written to `out_dir` (`memory.csv`, `memory.json`,
    `memory.png`); returns the contents of memory.json. Every run recomputes (a few seconds to a
    minute) and overwrites the three files.

    ```python
    import jaxmem
    # report = jaxmem.run_memory(jaxmem.MemorySettings(data="runs/data.npz"), "runs/memory")
    # report["verdict"]
    ```
    """
    from .._memory import decay_class, estimate_kernel
    from .memory_plot import plot_memory
    from .provenance import provenance

    t_run = time.perf_counter()
    s = settings
    out = Path(out_dir)
    timings = {}
    if s.data is not None:
        ts, xs, ys = read_paths(s.data)
        span = ts[-1] - ts[0]
        if s.horizon is not None and s.horizon > span:
            raise ValueError(f"horizon {s.horizon:g} is longer than the paths' span {span:g} ({s.data!r}).")
        if xs.shape[0] * xs.shape[1] < 2 * s.n_basis:
            raise ValueError(f"{s.data!r}: {xs.shape[0]} path(s) of {xs.shape[1]} samples are too few for "
                             f"{s.n_basis} basis functions; use more paths or a smaller n_basis.")
        t0 = time.perf_counter()
        est = estimate_kernel(ts - ts[0], xs, ys, horizon=s.horizon, n_basis=s.n_basis, n_boot=s.n_boot,
                              level=s.level, seed=s.seed)
        timings["estimate_s"] = time.perf_counter() - t0
        grid, rho, lo, hi = (np.asarray(v) for v in (est.ts, est.rho, est.lo, est.hi))
        kernel = est.kernel
        decay = decay_class(est, level=s.level) if s.n_boot > 1 else decay_class(est.kernel, grid, level=s.level)
        memory = dict(source="data", file=s.data, kind="estimated kernel with its bootstrap band",
                      method=est.method, alpha=est.alpha, horizon=est.window, paths=int(xs.shape[0]),
                      samples=int(xs.shape[1]), dt=float(ts[1] - ts[0]))
        log(f"[memory] estimated the kernel from {xs.shape[0]} paths of {xs.shape[1]} samples on [0, {est.window:.4g}]")
    else:
        from .model_file import load_model

        model, header = load_model(s.model)
        train = header.get("settings", {})
        dt = s.dt or float(train.get("dt", 0.1))
        duration = s.duration or float(train.get("duration", 100.0))
        grid = np.arange(int(math.floor(duration / dt + 1e-9)) + 1) * dt
        t0 = time.perf_counter()
        kernel, rho, kind = kernel_of_model(model, grid)
        timings["memory_function_s"] = time.perf_counter() - t0
        lo = hi = rho
        decay = decay_class(kernel, grid, level=s.level)
        memory = dict(source="model", file=s.model, kind=kind, model_class=header.get("model_class"),
                      config=header.get("config"), duration=duration, dt=dt)
        log(f"[memory] {header.get('model_class')} from {s.model}: {kind}")
    decay_b = decay_block(decay)
    log(f"[memory] decay: {decay_b['class']} (rate {decay.rate:.3g}, omega {decay.omega:.3g})")
    t0 = time.perf_counter()
    width_b = width_block(kernel, s)
    timings["width_s"] = time.perf_counter() - t0
    log(f"[memory] width needed for {s.eps:g}: {width_b['width']}")
    t0 = time.perf_counter()
    plateau_b = plateau_block(kernel, s, log=log)
    timings["plateau_s"] = time.perf_counter() - t0
    report = dict(command="jaxmem memory", settings=s.manifest(), memory=memory, decay=decay_b,
                  width_needed=width_b, plateau=plateau_b, verdict=verdict(decay_b, width_b, plateau_b),
                  **provenance())
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "memory.csv", grid, rho, lo, hi)
    plot_memory(report, grid, rho, lo, hi, out / "memory.png")
    report["timings"] = dict(**timings, this_run_s=time.perf_counter() - t_run)
    _write_text(out / "memory.json", _dumps(report, indent=2) + "\n")
    log(f"[memory] {report['verdict']}")
    log(f"[memory] wrote {out / 'memory.csv'}, {out / 'memory.json'}, {out / 'memory.png'}")
    return report


def _write_text(path, text):
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def write_csv(path, t, rho, lo, hi):
    """memory.csv: columns t, rho, lo, hi (finite numbers only)."""
    lines = [",".join(CSV_COLUMNS)]
    lines += [f"{a!r},{b!r},{c!r},{d!r}" for a, b, c, d in zip(*(np.asarray(v, dtype=float).tolist()
                                                                   for v in (t, rho, lo, hi)))]
    _write_text(path, "\n".join(lines) + "\n")
