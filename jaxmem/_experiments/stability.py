"""The stable-approximation driver: settings → the perturbation test → `stability.csv`,
`stability.json`, `stability.png`.

For each kernel and width m, the best width-m diagonal model (free rates above a floor), every
parameter moved by β on the vertices of the ℓ∞ ball (random directions, worst of several
samples), and the relative L² error E_m(β) on a grid of β, exactly through the white-noise loss:
one compiled, vmapped call for every (kernel, width, β, sample). Exponential memory keeps its
blow-up radius as m grows; polynomial memory loses it.
"""

import dataclasses
import math
import time
from pathlib import Path

import numpy as np

from .._kernels import Damped, PowerLaw
from .._memory import perturbation_test
from .plots import _pyplot
from .progress import Progress
from .provenance import provenance
from .store import RowStore, StoreError

KERNELS = ("exp", "powerlaw")
PARAM_NAME = {"exp": "beta", "powerlaw": "omega"}
DEFAULT_WIDTHS = (2, 4, 8, 12)
COLUMNS = ("kernel", "parameter", "width", "beta", "error", "status")
NUMERIC = ("parameter", "width", "beta", "error")


def make_kernel(kind, p):
    """`exp`: Damped(PowerLaw(1), β) = e^{-βt}(1+t)^-2; `powerlaw`: PowerLaw(ω) = (1+t)^-(1+ω)
    (the kernels of `jaxmem approx`)."""
    if kind == "exp":
        return Damped(PowerLaw(1.0), p)
    if kind == "powerlaw":
        return PowerLaw(p)
    raise ValueError(f"unknown kernel {kind!r}; expected one of {KERNELS}.")


@dataclasses.dataclass
class StabilitySettings:
    """The settings of the perturbation test (`jaxmem stability`), validated on construction.

    - `kernels`: among `exp` (e^{-βt}(1+t)^-2, parameter `beta`) and `powerlaw` ((1+t)^-(1+ω),
      parameter `omega`); `beta`, `omega`: their memory parameters.
    - `widths`; the perturbation grid: 0 and `n_radii` log-spaced sizes from `radius_min` to
      `radius_max`; `samples` perturbations per size (sample 0: every rate down, every
      coefficient away from zero; the others random vertices of the ℓ∞ ball).
    - `min_rate`: the rate floor of the fits (the stability margin; 0: free rates); `starts`
      of their search; `threshold`: the relative error that defines the blow-up radius; `seed`.

    ```python
    import jaxmem
    s = jaxmem.StabilitySettings(widths=(2, 4), n_radii=4)
    s.radii()
    ```
    """

    kernels: tuple = KERNELS
    beta: float = 1.0
    omega: float = 1.0
    widths: tuple = DEFAULT_WIDTHS
    radius_min: float = 1e-4
    radius_max: float = 1.0
    n_radii: int = 20
    samples: int = 10
    min_rate: float = 0.5
    threshold: float = 1.0
    starts: int = 8
    seed: int = 0

    def __post_init__(self):
        from .._errors import integer_list, is_integer, is_real, positive_int

        kinds = [self.kernels] if isinstance(self.kernels, str) else list(self.kernels)
        bad = [k for k in kinds if k not in KERNELS]
        if not kinds or bad:
            raise ValueError(f"kernels must be among {KERNELS}; got {kinds!r}.")
        self.kernels = tuple(dict.fromkeys(kinds))
        for name in ("beta", "omega", "radius_min", "radius_max", "threshold", "min_rate"):
            v = getattr(self, name)
            if not is_real(v):
                raise TypeError(f"{name} must be a real number; got {v!r}.")
            setattr(self, name, float(v))
        for name in ("beta", "omega", "radius_min", "radius_max", "threshold"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise ValueError(f"{name} must be finite and > 0; got {getattr(self, name)}.")
        if not self.radius_min < self.radius_max:
            raise ValueError(f"need radius_min < radius_max; got {self.radius_min} and {self.radius_max}.")
        if not (math.isfinite(self.min_rate) and self.min_rate >= 0):
            raise ValueError(f"min_rate must be a finite number >= 0; got {self.min_rate}.")
        widths = integer_list(self.widths, "widths")
        if not widths or min(widths) < 1:
            raise ValueError(f"widths must be integers >= 1; got {widths}.")
        self.widths = tuple(sorted(set(widths)))
        for name in ("n_radii", "samples", "starts"):
            setattr(self, name, positive_int(getattr(self, name), name))
        if not is_integer(self.seed) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0; got {self.seed!r}.")
        self.seed = int(self.seed)
        for kind in self.kernels:  # a parameter outside the family's domain fails here, before any work
            make_kernel(kind, self.parameter(kind))

    def parameter(self, kind) -> float:
        return self.beta if kind == "exp" else self.omega

    def radii(self) -> list:
        """The perturbation sizes β: 0, then `n_radii` log-spaced values."""
        return [0.0] + [float(b) for b in np.geomspace(self.radius_min, self.radius_max, self.n_radii)]

    def manifest(self) -> dict:
        return dataclasses.asdict(self) | {"kernels": list(self.kernels), "widths": list(self.widths)}


def run_stability(settings: StabilitySettings, out_dir, *, progress=True, log=print):
    """Run the perturbation test of `settings` and write `stability.csv`, `stability.json` and
    `stability.png` to `out_dir`; print the blow-up radii. A finished run in the same folder is
    redrawn without recomputing. Returns the rows."""
    import jax
    import jax.random as jr

    t_run = time.perf_counter()
    s = settings
    out = Path(out_dir)
    store = RowStore(str(out), s.manifest(), COLUMNS, rows_name="stability.csv", manifest_name="stability.json",
                     other_outputs=("stability.png",), numeric=NUMERIC)
    betas = s.radii()
    n_rows = len(s.kernels) * len(s.widths) * len(betas)
    rows = list(store.done_rows)
    summary = None
    if rows and len(rows) != n_rows:
        raise StoreError(f"{store.rows_path} holds {len(rows)} of the {n_rows} rows of this run: a damaged or "
                         "edited file (nothing was changed).")
    if not rows:
        store.require_writable()
        kernels = [make_kernel(k, s.parameter(k)) for k in s.kernels]
        log(f"[stability] {', '.join(s.kernels)}: {len(s.widths)} widths x {len(betas)} perturbation sizes x "
            f"{s.samples} samples, fits with rates >= {s.min_rate:g} ...")
        with Progress(1, "stability") if progress else _Null() as bar:
            t0 = time.perf_counter()
            res = perturbation_test(kernels, s.widths, betas, n_samples=s.samples, key=jr.key(s.seed),
                                    threshold=s.threshold, min_rate=s.min_rate or None, n_starts=s.starts)
            jax.block_until_ready(res.errors)
            wall = time.perf_counter() - t0
            bar.update(1, f"{wall:.1f} s")
        errors = np.asarray(res.errors)
        for i, kind in enumerate(s.kernels):
            for j, m in enumerate(s.widths):
                for b, beta in enumerate(betas):
                    rows.append(dict(kernel=kind, parameter=s.parameter(kind), width=m, beta=beta,
                                     error=float(errors[i, j, b]), status=res.status[i * len(s.widths) + j][b]))
        store.append(rows)
        summary = dict(
            radius={k: {str(m): float(res.radius[i, j]) for j, m in enumerate(s.widths)} for i, k in enumerate(s.kernels)},
            fit_error={k: {str(m): float(res.fit_errors[i, j]) for j, m in enumerate(s.widths)}
                       for i, k in enumerate(s.kernels)},
            slowest_rate={k: {str(m): float(res.slowest_rate[i, j]) for j, m in enumerate(s.widths)}
                          for i, k in enumerate(s.kernels)},
            wall_s=wall)
    radius = blowup_radii(rows, s.threshold)
    log(format_radii(radius, s.widths))
    if not store.writable:
        log(f"[stability] note: {out} cannot be written ({store.unwritable}); the figure is left as it was.")
        return rows
    plot_stability(rows, s, out / "stability.png")
    if summary is not None:
        store.update_manifest(
            command="jaxmem stability",
            method=("best width-m fits by variable projection (free rates above min_rate), every parameter moved by "
                    "beta on vertices of the l-infinity ball (sample 0: rates down, coefficients away from zero; "
                    "others random signs), relative L2 error from the closed-form white-noise loss (graded "
                    "quadrature where it cancels), worst over samples; infinite where a rate leaves (0, inf)"),
            **summary, **provenance(), timings=dict(this_run_s=time.perf_counter() - t_run))
    log(f"[stability] wrote {out / 'stability.csv'}, {out / 'stability.json'}, {out / 'stability.png'}")
    return rows


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, *args, **kwargs):
        pass


def blowup_radii(rows, threshold):
    """{kernel: {width: the smallest β with error > threshold (inf if none)}} from rows."""
    out = {}
    for r in sorted(rows, key=lambda r: (r["kernel"], r["width"], r["beta"])):
        d = out.setdefault(r["kernel"], {})
        d.setdefault(int(r["width"]), math.inf)
        if r["error"] > threshold and d[int(r["width"])] == math.inf:
            d[int(r["width"])] = float(r["beta"])
    return out


def format_radii(radius, widths):
    lines = ["blow-up radius (smallest perturbation with relative error > threshold):",
             "kernel     " + "".join(f"m={m:<10d}" for m in widths)]
    for kind, per in radius.items():
        lines.append(f"{kind:<11s}" + "".join(f"{per.get(m, math.nan):<12.3g}" for m in widths))
    return "\n".join(lines)


def plot_stability(rows, settings, path):
    """E_m(β) against β (log-log), one line per width, the kernels side by side; infinite errors
    are drawn at the top edge with a cross."""
    plt = _pyplot()
    kinds = settings.kernels
    fig, axes = plt.subplots(1, len(kinds), figsize=(6 * len(kinds), 4.6), squeeze=False, sharey=True)
    finite = [r["error"] for r in rows if math.isfinite(r["error"]) and r["error"] > 0]
    top = max(finite) * 3 if finite else 10.0
    for ax, kind in zip(axes[0], kinds):
        for m in settings.widths:
            sel = sorted((r for r in rows if r["kernel"] == kind and r["width"] == m and r["beta"] > 0),
                         key=lambda r: r["beta"])
            b = np.array([r["beta"] for r in sel])
            e = np.array([r["error"] for r in sel])
            (line,) = ax.loglog(b[np.isfinite(e)], e[np.isfinite(e)], "o-", ms=3, label=f"m = {m}")
            if np.any(~np.isfinite(e)):
                ax.plot(b[~np.isfinite(e)], np.full((~np.isfinite(e)).sum(), top), "x", color=line.get_color())
        ax.axhline(settings.threshold, color="grey", ls=":", lw=1)
        name = PARAM_NAME[kind]
        ax.set_title(f"{kind}: {'e^{-βt}(1+t)^-2' if kind == 'exp' else '(1+t)^-(1+ω)'}, "
                     f"{name} = {settings.parameter(kind):g}")
        ax.set_xlabel("perturbation size β (every parameter, ℓ∞)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("E_m(β): worst relative L² error (× : rate left (0, ∞))")
    fig.suptitle(f"Stable approximation: perturbed best fits (rates ≥ {settings.min_rate:g}, "
                 f"{settings.samples} samples)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return fig
