"""`jaxmem report DIR`: the table and the figure of a `jaxmem plateau` or `jaxmem approx` run,
again, from its files alone.

The kind of run is recognised from the folder's files (plateau.csv and plateau.json, or
approx.csv and approx.json). The run may be finished or partial (interrupted, or still
running): the table shows the rows stored so far. Nothing is fitted, measured or compiled.
The figure is redrawn into the folder (plateau.png or approx.png) when the folder can be
written, or to --figure PATH; a folder that cannot be written still gets its table printed.
"""

import argparse
import os
import sys
from pathlib import Path

from .._experiments.approx import stored_maps, stored_width_needed
from .._experiments.load import FILES, read_run
from .._experiments.plateau import PlateauSettings
from .._experiments.report import (
    failures_note,
    format_approx_table,
    format_fits,
    summarize,
)
from .._presets import MIN_RATE


def add_parser(sub):
    p = sub.add_parser("report", help="reprint the table and redraw the figure of a run from its files",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", type=Path, metavar="DIR", help="the run's folder (the --out of jaxmem plateau or jaxmem approx)")
    p.add_argument("--figure", type=Path, default=None, metavar="PATH",
                   help="write the figure to this file instead of DIR/plateau.png or DIR/approx.png")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    kind, rows, manifest = read_run(args.dir)
    settings = manifest["settings"]
    if kind == "plateau":
        total = _plateau_total(settings)
        print(f"jaxmem report: plateau run in {args.dir}: {len(rows)}"
              f"{'' if total is None else f' of {total}'} configurations")
        if rows:
            print(format_fits(summarize(rows)))
            if failures_note(rows):
                print(failures_note(rows))
        draw = _plateau_figure(rows)
    else:
        modes, maps = stored_maps(settings, rows)
        needed = stored_width_needed(settings, rows, manifest.get("width_needed"))
        n_map = sum(int(m.count()) for m in maps.values())
        n_search = sum(r["part"] == "search" for r in rows)
        print(f"jaxmem report: approx run in {args.dir}: {n_map} of {sum(m.size for m in maps.values())} map rows"
              f"{f', {n_search} width-search rows' if settings['eps'] else ''}")
        if rows:
            print(format_approx_table(settings, modes, maps, needed))
        draw = _approx_figure(settings, modes, maps, needed)
    if not rows:
        print("no rows yet: no table, no figure.")
        return 0
    path = args.figure if args.figure is not None else args.dir / FILES[kind][2]
    if args.figure is None:
        why = _why_unwritable(path)
        if why is not None:
            print(f"jaxmem report: the figure was not drawn: {path} cannot be written ({why}); "
                  "--figure PATH writes it elsewhere.", file=sys.stderr)
            return 0
    try:
        _save(draw, path)
    except OSError as e:
        if args.figure is not None:
            raise
        print(f"jaxmem report: the figure was not drawn: {path} cannot be written ({e.strerror or e}); "
              "--figure PATH writes it elsewhere.", file=sys.stderr)
        return 0
    print(f"wrote {path}")
    return 0


def _plateau_total(settings):
    """The number of configurations of the run's grid (None if the settings do not say)."""
    try:
        return len(PlateauSettings(**{k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()}).grid())
    except Exception:  # settings of another version: the count is only shown, never needed
        return None


def _plateau_figure(rows):
    def draw(path):
        from .._experiments.plots import plot_plateau_map

        plot_plateau_map(rows, path, w_min=MIN_RATE)

    return draw


def _approx_figure(settings, modes, maps, needed):
    def draw(path):
        from .._experiments.plots import plot_approx_map

        plot_approx_map(settings, modes, {m: a.filled(float("nan")) for m, a in maps.items()}, needed, path)

    return draw


def _save(draw, path):
    """`draw(path)`, closing the figures it opens, saved or not."""
    import matplotlib.pyplot as plt

    before = set(plt.get_fignums())
    try:
        draw(path)
    finally:
        for n in set(plt.get_fignums()) - before:
            plt.close(n)


def _why_unwritable(path):
    """None if the figure can be written at `path` (an existing folder), else why not."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.access(folder, os.W_OK | os.X_OK):
        return "the folder is not writable"
    if os.path.exists(path) and not os.access(path, os.W_OK):
        return "the file is not writable"
    return None
