"""The printed summaries of a run: fitted plateau slopes, and the approximation table."""

import collections

import numpy as np

from .._presets import MIN_RATE
from .._results import is_failure
from .._theory import fit_exponential


def series_key(row, several_widths=False, several_momenta=False):
    label = "gradient flow" if row["optimizer"] == "flow" else row["optimizer"]
    if row["optimizer"] != "flow":
        label += f" (η={row['lr']:g})"
    if several_momenta and row["optimizer"] == "momentum":
        label += f", β={row['momentum']:g}"
    if row.get("parameterization", "identity") != "identity":
        label += f", {row['parameterization']}"
    if several_widths:
        label += f", m={row['width']}"
    return label


def measured(rows):
    """The rows that are measurements: a failed run (`diverged`, `max_steps_reached`, ...) has no
    hitting time to fit or draw."""
    return [r for r in rows if not is_failure(str(r.get("status", "successful")))]


def failures_note(rows):
    """A line counting the failed rows by outcome, or None."""
    counts = collections.Counter(r["status"] for r in rows if is_failure(str(r.get("status", "successful"))))
    if not counts:
        return None
    what = ", ".join(f"{k}: {n}" for k, n in sorted(counts.items()))
    return (f"note: {sum(counts.values())} of {len(rows)} configurations failed ({what}); their rows are kept "
            "with that status and left out of the fits and the figure.")


def median_rows(rows):
    """One row per (series, lag) of the measured rows, with the median τ over seeds; `series`
    names the series."""
    rows = measured(rows)
    several = len({r.get("width") for r in rows}) > 1
    momenta = len({r.get("momentum") for r in rows if r.get("optimizer") == "momentum"}) > 1
    groups = {}
    for r in rows:
        groups.setdefault((series_key(r, several, momenta), r["lag"]), []).append(r)
    out = []
    for (label, lag), rs in groups.items():
        out.append(dict(rs[0], series=label, tau_param=float(np.median([r["tau_param"] for r in rs])),
                        tau_loss=float(np.median([r["tau_loss"] for r in rs]))))
    return out


def summarize(rows):
    """Fitted slopes of log τ against L per series (optimiser, parameterisation, width, lr),
    over the seed-median τ at each lag, with the theory's w_l⁰ (`MIN_RATE`)."""
    series = {}
    for r in median_rows(rows):
        series.setdefault(r["series"], []).append(r)
    out = []
    for rs in series.values():
        rs.sort(key=lambda r: r["lag"])
        first = rs[0]
        for col in ("tau_param", "tau_loss"):
            fit = fit_exponential([r["lag"] for r in rs], [r[col] for r in rs])
            out.append(dict(optimizer=first["optimizer"], parameterization=first["parameterization"],
                            width=first["width"], lr=first["lr"], quantity=col, slope=fit.slope,
                            intercept=fit.intercept, r2=fit.r2, n=fit.n, theory_slope=MIN_RATE))
    out.sort(key=lambda f: (f["optimizer"], f["parameterization"], f["width"], str(f["lr"])))
    return out


def _number(x, spec):
    """`x` formatted with `spec`, or a dash of the same width where there is no number (a fit
    with fewer than two points)."""
    width = int(spec.split(".")[0])
    if x is None or x != x:
        return f"{'—':>{width}}"
    return f"{x:{spec}}"


def format_fits(fits):
    """The slope table of `summarize`'s fits; `—` stands for the slope and R² of a fit with
    fewer than two reached points."""
    lines = [f"{'optimizer':<9} {'param.':<9} {'m':>3} {'lr':>7} {'quantity':<9} {'slope':>8} {'R²':>7} {'n':>3}"
             "  (theory: slope >= w_l0)"]
    for f in fits:
        lr = "-" if f["lr"] != f["lr"] else f"{f['lr']:g}"
        lines.append(
            f"{f['optimizer']:<9} {f['parameterization']:<9} {f['width']:>3} {lr:>7} {f['quantity']:<9} "
            f"{_number(f['slope'], '8.4f')} {_number(f['r2'], '7.4f')} {f['n']:3d}  w_l0 = {f['theory_slope']:.3g}"
        )
    return "\n".join(lines)


def format_approx_table(settings, modes, maps, needed):
    """The printed summary: relative errors per (parameter, rates mode) and width, then the
    widths needed for --eps. A masked cell of `maps` (no row stored yet) is printed `—`."""
    name, params, widths, norm = settings["param_name"], settings["params"], settings["widths"], settings["norm"]
    lines = [f"\n relative {norm} error, best width-m fit",
             f" {name:>6} {'rates':>14} " + " ".join(f"m={w:<7d}" for w in widths)]
    for mode, lo in modes:
        for i, p in enumerate(params):
            label = f">= {lo}" if lo else "free"
            lines.append(f" {p:6.3g} {label:>14} "
                         + " ".join(f"{'—':>9}" if e is np.ma.masked else f"{e:9.2e}" for e in maps[mode][i]))
    if needed is not None:
        mw = settings["max_width"]
        lines.append(f"\n width needed for {settings['eps']:g} (rates >= {settings['min_rate'] or 0}): "
                     + ", ".join(f"{name}={p:g}: {n if n > 0 else f'>{mw}'}" for p, n in zip(params, needed)))
    return "\n".join(lines)
