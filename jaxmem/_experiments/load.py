"""A run read back from its folder: the rows and the manifest of `jaxmem plateau` or
`jaxmem approx`, without computing anything."""

import os

from . import approx, plateau
from .store import StoreError, read_manifest, read_rows

#: The files of each kind of run: (rows, manifest, figure).
FILES = {"plateau": ("plateau.csv", "plateau.json", "plateau.png"),
         "approx": ("approx.csv", "approx.json", "approx.png")}
_APPROX_SETTINGS = ("kernel", "param_name", "params", "widths", "min_rate", "norm", "eps", "max_width")


def run_kind(folder) -> str:
    """`"plateau"` or `"approx"`: the kind of run whose files `folder` holds (`StoreError` if
    it holds neither, or both)."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise StoreError(f"{folder!r} is not a folder.")
    try:
        present = set(os.listdir(folder))
    except OSError as e:
        raise StoreError(f"{folder!r} cannot be read ({e.strerror}).") from e
    kinds = [k for k, names in FILES.items() if present & set(names[:2])]
    if len(kinds) != 1:
        raise StoreError(
            f"{folder!r} is not the folder of one run: expected plateau.csv and plateau.json (jaxmem plateau) "
            f"or approx.csv and approx.json (jaxmem approx); it holds {sorted(present) or 'nothing'}."
        )
    return kinds[0]


def read_run(folder):
    """`(kind, rows, manifest)` of the run in `folder`: rows as a list of dicts (numbers as
    `int` or `float`, other cells as `str`), the manifest as stored. Checked like a resumed run:
    a missing file, a damaged CSV or a manifest without settings is a `StoreError`."""
    folder = os.fspath(folder)
    kind = run_kind(folder)
    rows_name, manifest_name, _ = FILES[kind]
    for name in (rows_name, manifest_name):
        if not os.path.isfile(os.path.join(folder, name)):
            raise StoreError(f"{folder!r} has no {name}: not a complete run folder of jaxmem {kind}.")
    manifest = read_manifest(os.path.join(folder, manifest_name))
    settings = manifest.get("settings")
    if not isinstance(settings, dict):
        raise StoreError(f"{os.path.join(folder, manifest_name)} has no settings.")
    if kind == "approx":
        lacking = [k for k in _APPROX_SETTINGS if k not in settings]
        if lacking or settings["kernel"] not in approx.KERNELS:
            raise StoreError(f"{os.path.join(folder, manifest_name)} has incomplete settings "
                             f"(lacking {lacking or ['a known kernel']}).")
    columns, numeric = run_columns(kind, manifest)
    rows = read_rows(os.path.join(folder, rows_name), columns, numeric, drop_torn=True)  # a killed append: left out
    return kind, rows, manifest


def run_columns(kind, manifest):
    """The CSV columns of a run of `kind` with `manifest`, and those of them that hold numbers."""
    if kind == "plateau":
        return plateau.COLUMNS, plateau.NUMERIC
    k = manifest["settings"]["kernel"]
    return approx.columns(k), approx.numeric_columns(k)


def load_run(folder):
    """The rows and the manifest of a `jaxmem plateau` or `jaxmem approx` run (finished or
    partial), read from its folder without computing anything: returns `(rows, manifest)`.

    - `rows`: a `pandas.DataFrame` when pandas is installed (`pip install jaxmem[pandas]`),
      else a list of dicts, one per CSV row in the order the rows were written. Numeric columns
      are read as `int` or `float` (`inf` as infinity, `nan` as NaN); the other columns (such as
      `status`, `optimizer`, `key`) as strings.
    - `manifest`: the JSON manifest (`plateau.json` or `approx.json`) as a dict, as stored: a
      non-finite number in it is `None` (NaN), `"inf"` or `"-inf"`.

    The kind of run is recognised from the folder's files. A folder that holds neither kind, a
    damaged CSV (naming the row and column at fault) or a manifest without settings raises
    `StoreError`. The columns are described on the command-line pages.

    ```text
    import jaxmem
    jaxmem.run_plateau(jaxmem.PlateauSettings(lags=(8.0, 10.0), optimizers=("gd",)), "runs/gd")
    rows, manifest = jaxmem.load_run("runs/gd")
    rows[["lag", "tau_param", "tau_loss", "status"]]     # a DataFrame with pandas
    manifest["fits"][0]["slope"]                          # the fitted slope of log τ₀ against L
    ```
    """
    kind, rows, manifest = read_run(folder)
    try:
        import pandas as pd
    except ImportError:
        return rows, manifest
    columns, numeric = run_columns(kind, manifest)
    frame = pd.DataFrame(rows, columns=list(columns))
    if not rows:  # no rows yet: the numeric columns are still numeric
        frame = frame.astype({c: "float64" for c in numeric})
    return frame, manifest
