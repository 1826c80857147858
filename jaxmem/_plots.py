"""Figures: the plateau map (log τ against the memory L = 1/ω) with fits and theory."""

import numpy as np

from ._theory import fit_exponential


def _pyplot():
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
        try:
            matplotlib.use("Agg")
        except Exception:  # pragma: no cover - a backend already in use stays
            pass
    import matplotlib.pyplot as plt

    return plt


def series_key(row, several_widths=False):
    label = "gradient flow" if row["optimizer"] == "flow" else row["optimizer"]
    if row["optimizer"] != "flow":
        label += f" (η={row['lr']:g})"
    if row.get("parameterization", "identity") != "identity":
        label += f", {row['parameterization']}"
    if several_widths:
        label += f", m={row['width']}"
    return label


def median_rows(rows):
    """One row per (series, lag), with the median τ over seeds; `series` names the series."""
    several = len({r.get("width") for r in rows}) > 1
    groups = {}
    for r in rows:
        groups.setdefault((series_key(r, several), r["lag"]), []).append(r)
    out = []
    for (label, lag), rs in groups.items():
        out.append(dict(rs[0], series=label, tau_param=float(np.median([r["tau_param"] for r in rs])),
                        tau_loss=float(np.median([r["tau_loss"] for r in rs]))))
    return out


def plot_plateau_map(rows, path=None, *, w_min=0.5, title=None):
    """Draw log τ₀ (parameters move) and log τ₀′ (loss drops) against L = 1/ω.

    One series per optimiser/parameterisation, each with its fitted exponential slope in the
    legend; beside them, a line of the Thm 20 lower-bound slope w_l⁰ (anchored at the
    gradient flow's first point) — the measured slopes should be at or above it. Rows whose
    hitting condition was not reached are drawn as open markers at the top of the axes.
    Returns the figure (and saves it to `path` if given).
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharex=True)
    series = {}
    for r in median_rows(rows):
        series.setdefault(r["series"], []).append(r)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
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
        ax.legend(fontsize=7)
    fig.suptitle(title or "Plateau length grows exponentially with the memory (curse of memory)")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
