"""Figures: the plateau map (log τ against the memory L = 1/ω) with fits and theory, and the
approximation map (best error against the width, and the width needed against the memory)."""

import numpy as np

from .._theory import fit_exponential
from .report import median_rows


def _pyplot():
    import matplotlib

    # The backend chosen so far, without resolving "auto" (which probes the GUI toolkits: ~0.8 s).
    get = getattr(matplotlib.rcParams, "_get_backend_or_none", None)
    backend = get() if get is not None else matplotlib.get_backend()
    if (backend or "").lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
        try:
            matplotlib.use("Agg")
        except Exception:  # pragma: no cover - a backend already in use stays
            pass
    import matplotlib.pyplot as plt

    return plt


def plot_plateau_map(rows, path=None, *, w_min=0.5, title=None):
    """Draw log τ₀ (parameters move) and log τ₀′ (loss drops) against L = 1/ω.

    One series per optimiser/parameterisation, each with its fitted exponential slope in the
    legend; beside them, a line of the Thm 20 lower-bound slope w_l⁰ (anchored at the
    gradient flow's first point) — the measured slopes should be at or above it. A lag whose
    hitting condition was not reached has no point (and no part in the fit).
    Returns the figure (and saves it to `path` if given).
    """
    plt = _pyplot()
    fig = plt.figure(figsize=(12, 4.8))
    _draw_plateau_map(fig, rows, w_min=w_min, title=title)
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def prefetch():
    """Import matplotlib's figure and Agg canvas in a background thread (~0.5 s of a short
    run's start), while the main thread loads and runs its compiled programs (which release
    the GIL); `save_plateau_map` then finds them imported. Returns the thread."""
    import threading

    def load():
        try:
            import matplotlib.backends.backend_agg  # noqa: F401
            import matplotlib.figure  # noqa: F401
        except Exception:  # pragma: no cover - the drawing imports again and reports it
            pass

    thread = threading.Thread(target=load, name="jaxmem-prefetch-matplotlib", daemon=True)
    thread.start()
    return thread


def save_plateau_map(rows, path, *, w_min=0.5, title=None):
    """`plot_plateau_map` written straight to `path` on a figure of its own (matplotlib's Agg
    canvas, without pyplot: no backend to resolve, nothing left open)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4.8))
    _draw_plateau_map(fig, rows, w_min=w_min, title=title)
    fig.savefig(path, dpi=120)


def _draw_plateau_map(fig, rows, *, w_min, title):
    import matplotlib

    axes = fig.subplots(1, 2, sharex=True)
    series = {}
    for r in median_rows(rows):
        series.setdefault(r["series"], []).append(r)
    colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, col, name in zip(axes, ("tau_param", "tau_loss"), ("τ₀: ‖θ−θ₀‖ > δ", "τ₀′: J(θ₀)−J > δ")):
        ymax = 1.0
        anchor = None
        for i, (label, rs) in enumerate(sorted(series.items())):
            rs = sorted(rs, key=lambda r: r["lag"])
            lags = np.array([r["lag"] for r in rs], float)
            taus = np.array([r[col] for r in rs], float)
            ok = np.isfinite(taus) & (taus > 0)
            fit = fit_exponential(lags, taus)
            c = colors[i % len(colors)]
            lab = f"{label}: slope {fit.slope:.3f}" if fit.n >= 2 else f"{label}"
            ax.semilogy(lags[ok], taus[ok], "o-", color=c, label=lab, ms=4)
            if ok.any():
                ymax = max(ymax, taus[ok].max())
            if (~ok).any():
                ax.plot(lags[~ok], np.full((~ok).sum(), np.nan), "o", mfc="none", color=c)
            if rs[0]["optimizer"] == "flow" and ok.any() and anchor is None:
                anchor = (lags[ok][0], taus[ok][0])
        if anchor is not None:
            xs = np.linspace(anchor[0], max(r["lag"] for r in rows), 50)
            ax.semilogy(xs, anchor[1] * np.exp(w_min * (xs - anchor[0])), "k--", lw=1,
                        label=f"Thm 20 lower-bound slope w_l⁰ = {w_min:g}")
        ax.set_xlabel("memory L = 1/ω")
        ax.set_ylabel("hitting time (flow time τ = kη)")
        ax.set_title(name)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")  # the series rise to the right: no search for a place
    fig.suptitle(title or "Plateau length grows exponentially with the memory (curse of memory)")
    # Fixed margins for the fixed 12 × 4.8 in figure: tight_layout would draw it once more
    # only to measure it (a third of the time of writing the PNG).
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.11, top=0.87, wspace=0.17)


def plot_approx_map(settings, modes, maps, needed, path):
    """The figure: best relative error against the width per parameter and rates mode (and the
    width needed against the memory 1/parameter), drawn from the stored rows."""
    plt = _pyplot()
    kind, name, params, widths = settings["kernel"], settings["param_name"], settings["params"], settings["widths"]
    norm, floor = settings["norm"], settings["min_rate"] or None
    ncols = 2 if needed is not None else 1
    fig, axes = plt.subplots(1, ncols, figsize=(6.5 * ncols, 4.8), squeeze=False)
    ax = axes[0, 0]
    for i, p in enumerate(params):
        line = None
        for mode, lo in modes:
            y = np.maximum(maps[mode][i], 1e-16)
            style = "-o" if mode == "floor" else "--"
            label = f"{name}={p:g}" + (f", rates >= {lo}" if lo else ", free rates")
            kw = {"color": line.get_color()} if line is not None else {}
            (ln,) = ax.loglog(widths, y, style, ms=4, label=label, **kw)
            line = line or ln
        if kind == "exp":
            ms = np.asarray(widths, dtype=float)
            e0 = maps[modes[0][0]][i, 0]
            ax.loglog(ms, e0 * ms[0] / ms, ":", color=line.get_color(), lw=1,
                      label="Jackson shape C/(β m^α), α=1" if i == 0 else None)
    ax.set(xlabel="width m", ylabel=f"relative {norm} error", title=f"Best width-m error: {kind} memory")
    ax.legend(fontsize=7)
    if needed is not None:
        mw = settings["max_width"]
        ax2 = axes[0, 1]
        inv = 1.0 / np.asarray(params)
        ok = needed > 0
        ax2.semilogy(inv[ok], needed[ok], "o-", label=f"rates >= {floor or 0}")
        if np.any(~ok):
            ax2.semilogy(inv[~ok], np.full((~ok).sum(), mw), "^", color="r", label=f"> {mw}")
        ax2.set(xlabel=f"memory 1/{name}", ylabel="width needed",
                title=f"Width needed for relative {norm} error <= {settings['eps']:g}")
        ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
