"""The figure of the learnability report (`jaxmem memory`): `memory.png`."""

import math
import textwrap

import numpy as np


def tail_lines(t, m, window):
    """The two tail fits of `decay_class` refitted on the window (for the figure): `(t, exp, pow)`."""
    sel = (t >= window[0]) & (t <= window[1]) & (t > 0) & (m > 0)
    if sel.sum() < 3:
        return None
    y = np.log(m[sel])
    pe = np.polyfit(t[sel], y, 1)
    pp = np.polyfit(np.log(t[sel]), y, 1)
    tt = np.geomspace(max(t[t > 0][0], window[0] / 10), t[-1], 200)
    return tt, np.exp(np.polyval(pe, tt)), np.exp(np.polyval(pp, np.log(tt)))


def plot_memory(report, t, rho, lo, hi, path):
    """memory.png: the memory function with its band and tail fits (log-log), the best error per
    width, and the hitting times per parameterisation."""
    from .plots import _pyplot

    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    ax = axes[0]
    pos = t > 0
    m = np.abs(rho)
    ax.loglog(t[pos], m[pos], color="C0", label="|rho| (memory function)")
    if np.any(lo != hi):
        band_lo = np.where((lo > 0) | (hi < 0), np.minimum(np.abs(lo), np.abs(hi)), 0.0)
        band_hi = np.maximum(np.abs(lo), np.abs(hi))
        ax.fill_between(t[pos], np.maximum(band_lo[pos], m[pos & (m > 0)].min(initial=1e-300) * 1e-3), band_hi[pos],
                        color="C0", alpha=0.25, label="bootstrap band")
    d = report["decay"]
    fit = tail_lines(t, m, d["window"])
    if fit is not None:
        tt, fe, fp = fit
        ax.loglog(tt, fe, "--", color="C3", label=f"exponential fit, rate {d['rate']:.3g}")
        ax.loglog(tt, fp, ":", color="C2", label=f"power-law fit, omega {d['omega']:.3g}")
        ax.axvspan(*d["window"], color="grey", alpha=0.1)
        top = m[pos].max() if np.any(m[pos] > 0) else 1.0
        ax.set_ylim(max(top * 1e-8, m[pos][m[pos] > 0].min(initial=top) / 10), top * 3)
    ax.set_xlabel("t")
    ax.set_ylabel("M(t)")
    ax.set_title(f"memory: {d['class']} (tail window shaded)")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)

    ax = axes[1]
    w = report["width_needed"]
    ax.semilogy(w["widths"], w["relative_error"], "o-", ms=3)
    ax.axhline(w["eps"], color="grey", ls=":")
    if w["width"] is not None:
        ax.axvline(w["width"], color="C3", ls="--", label=f"width needed: {w['width']}")
        ax.legend(fontsize=8)
    ax.set_xlabel("width m")
    ax.set_ylabel("best relative L2 error")
    floor = f"rates >= {w['min_rate']:g}" if w["min_rate"] > 0 else "free rates"
    ax.set_title(f"width needed for eps = {w['eps']:g} ({floor})")
    ax.grid(True, which="both", alpha=0.3)

    ax = axes[2]
    rows = report["plateau"]["rows"]
    x = np.arange(len(rows))
    horizon = max([r["horizon"] for r in rows if math.isfinite(r["horizon"])], default=1.0)
    for k, (key, label) in enumerate((("tau0", "tau0 (parameters move)"), ("tau0_prime", "tau0' (loss drops)"))):
        v = np.array([r[key] for r in rows], dtype=float)
        shown = np.where(np.isfinite(v), v, horizon)
        bars = ax.bar(x + (k - 0.5) * 0.38, shown, 0.38, label=label, color=f"C{k}")
        for b, ok in zip(bars, np.isfinite(v)):
            if not ok:
                b.set_hatch("//")
                b.set_alpha(0.4)
    ax.set_yscale("log")
    ax.set_xticks(x, [r["parameterization"] for r in rows])
    ax.set_ylabel("training time")
    ax.set_title(f"plateau from the canonical start (m = {report['plateau']['width']})")
    if any(not math.isfinite(r[k]) for r in rows for k in ("tau0", "tau0_prime")):
        from matplotlib.patches import Patch

        ax.add_artist(ax.legend(handles=[Patch(facecolor="white", edgecolor="grey", hatch="//",
                                               label="not reached (drawn at the horizon)")],
                                loc="upper left", fontsize=8))
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(True, axis="y", which="both", alpha=0.3)
    fig.suptitle("\n".join(textwrap.wrap(report["verdict"], 150)), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return fig
