"""Results that are never lost: rows appended as they finish, a manifest, safe resumption."""

import csv
import io
import json
import math
import os

import numpy as np


class StoreError(ValueError):
    """The output folder does not belong to this command (or is damaged, or cannot be written):
    nothing is touched."""


class RowStore:
    """An output folder holding `rows_name` (CSV, one row per finished configuration) and
    `manifest_name` (JSON: settings, versions, ...), resumable.

    - Nothing is created before the first row: the folder, the manifest and the CSV header are
      written by the first `append` (or `update_manifest`), so a run that fails before its first
      row leaves nothing behind.
    - An existing folder resumes only if its manifest's `settings` equal `settings`;
      otherwise — or if it holds files this command does not write, or a CSV that does not
      parse — it raises `StoreError` and changes nothing.
    - `numeric`: the columns that hold numbers. Their cells are read as `int` or `float`
      (`nan`, `inf` included) and a cell that is not a number is a `StoreError` naming the
      file, the row and the column; the other columns are read as strings. Without `numeric`
      every cell that looks like a number is read as one.
    - `writable` tells (leaving nothing behind) whether the files can be written, and
      `require_writable()` raises a `StoreError` saying why not: a driver calls it before any
      work, and a finished run in a folder that cannot be written can still be re-displayed.
    - `append(rows)` writes and fsyncs rows at once, so an interruption loses at most the batch
      in flight.
    - The manifest is strict JSON: a non-finite float is written as `null` (NaN), `"inf"` or
      `"-inf"`.
    - `read_only=True` (the other processes of a multi-process run) reads what is there and
      never creates or writes anything.
    """

    def __init__(self, out_dir, settings: dict, columns, *, rows_name="rows.csv",
                 manifest_name="manifest.json", other_outputs=(), read_only=False, numeric=None):
        self.dir = os.fspath(out_dir)
        self.settings = json.loads(_dumps(settings))
        self.columns = tuple(columns)
        self.numeric = None if numeric is None else frozenset(numeric)
        self.rows_path = os.path.join(self.dir, rows_name)
        self.manifest_path = os.path.join(self.dir, manifest_name)
        # The manifest's temporary file is ours too: a run killed while replacing the manifest
        # leaves it behind (the next write replaces it).
        allowed = {rows_name, manifest_name, manifest_name + ".tmp", *other_outputs}
        self.done_rows = []
        self.read_only = bool(read_only)
        self._created = False
        self._pending_header = False  # the manifest is there, the CSV is not (a run killed then)
        self.torn_at = None  # the byte length of the CSV's complete rows, when its last is torn
        if os.path.exists(self.dir) and not os.path.isdir(self.dir):
            raise StoreError(f"output path {self.dir!r} exists and is not a folder.")
        if os.path.isdir(self.dir):
            try:
                present = set(os.listdir(self.dir))
            except OSError as e:
                raise StoreError(f"output folder {self.dir!r} cannot be read ({e.strerror}).") from e
            foreign = sorted(present - allowed)
            if foreign:
                shown = f"{foreign}" if len(foreign) <= 5 else f"{foreign[:5]}, ... {len(foreign)} in all"
                raise StoreError(
                    f"output folder {self.dir!r} holds files this command does not write ({shown}); "
                    "choose an empty or new folder (nothing was changed)."
                )
            if rows_name in present or manifest_name in present:
                self._resume(rows_name, manifest_name, present)
                self._created = True
        self.unwritable = "opened read-only" if self.read_only else _why_unwritable(
            self.dir, [self.rows_path, self.manifest_path])

    @property
    def writable(self) -> bool:
        """Whether the folder's files can be written (checked when the store was opened)."""
        return self.unwritable is None

    def require_writable(self):
        """Raise `StoreError` (before any work) if the files cannot be written."""
        if self.unwritable is not None:
            raise StoreError(f"cannot write to output folder {self.dir!r}: {self.unwritable} "
                             "(nothing was computed or changed).")

    def _resume(self, rows_name, manifest_name, present):
        if manifest_name in present and rows_name not in present:
            # Killed between writing the manifest and the CSV header: nothing was finished.
            if read_manifest(self.manifest_path).get("settings") == self.settings:
                self._pending_header = True
                return
        if manifest_name not in present or rows_name not in present:
            raise StoreError(
                f"output folder {self.dir!r} has {rows_name if rows_name in present else manifest_name} "
                f"without its {manifest_name if rows_name in present else rows_name}: not a run of "
                "this command, or a damaged one (nothing was changed)."
            )
        manifest = read_manifest(self.manifest_path)
        old = manifest.get("settings")
        if old != self.settings:
            diff = sorted(k for k in set(self.settings) | set(old or {})
                          if (old or {}).get(k) != self.settings.get(k))
            raise StoreError(
                f"output folder {self.dir!r} holds a run with other settings (differs in {diff}); "
                "use another --out, or the same command to resume it (nothing was changed)."
            )
        self.done_rows, size = read_rows(self.rows_path, self.columns, self.numeric, drop_torn=True, with_size=True)
        if size != os.path.getsize(self.rows_path):
            self.torn_at = size  # dropped at the first append, before any new row

    def _create(self, manifest):
        """The folder, its manifest and the CSV header, at the first write."""
        os.makedirs(self.dir, exist_ok=True)
        self._write_manifest(manifest)
        with open(self.rows_path, "w", newline="") as f:
            csv.DictWriter(f, fieldnames=self.columns).writeheader()
        self._created = True

    def _write_manifest(self, manifest):
        tmp = self.manifest_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(_dumps(manifest, indent=2))
        os.replace(tmp, self.manifest_path)

    def update_manifest(self, **extra):
        """Add sections (fits, timings, versions) to the manifest; settings never change."""
        if self.read_only:
            raise StoreError(f"{self.manifest_path} was opened read-only.")
        if self._created:
            manifest = read_manifest(self.manifest_path)
        else:
            manifest = {}
        manifest.update(json.loads(_dumps(extra)))
        manifest["settings"] = self.settings
        if self._created:
            self._write_manifest(manifest)
        else:
            self._create(manifest)

    def append(self, rows):
        if self.read_only:
            raise StoreError(f"{self.rows_path} was opened read-only; rows are written by another process.")
        if not self._created:
            self._create({"settings": self.settings})
        elif self._pending_header:
            with open(self.rows_path, "w", newline="") as f:
                csv.DictWriter(f, fieldnames=self.columns).writeheader()
            self._pending_header = False
        if self.torn_at is not None:  # the row an earlier run was killed writing
            os.truncate(self.rows_path, self.torn_at)
            self.torn_at = None
        # Formatted first and written with one call, so that a Ctrl-C (delivered between
        # Python bytecodes) cannot leave a partial row behind.
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.columns)
        for r in rows:
            writer.writerow({k: r.get(k) for k in self.columns})
        with open(self.rows_path, "a", newline="") as f:
            f.write(buf.getvalue())
            f.flush()
            os.fsync(f.fileno())
        self.done_rows.extend(rows)


def json_safe(obj):
    """`obj` with every non-finite float replaced for strict JSON: NaN → None (`null`),
    ∞ → `"inf"`, −∞ → `"-inf"`; numpy scalars and arrays become Python numbers and lists,
    tuples become lists."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    return obj


def _dumps(obj, indent=None):
    # allow_nan=False: a non-finite float that escaped `json_safe` is an error, never `NaN`.
    return json.dumps(json_safe(obj), indent=indent, default=str, allow_nan=False)


def read_manifest(path) -> dict:
    """The manifest at `path` (a JSON object), or `StoreError`."""
    try:
        with open(path) as f:
            manifest = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise StoreError(f"{path} is not a readable manifest ({e}); nothing was changed.") from e
    if not isinstance(manifest, dict):
        raise StoreError(f"{path} is not a readable manifest (not a JSON object); nothing was changed.")
    return manifest


def read_rows(path, columns=None, numeric=None, *, drop_torn=False, with_size=False):
    """The rows of the CSV at `path` as dicts, checked: the header must be `columns` (when
    given), no row may have missing or extra cells, and every cell of a `numeric` column must
    be a number. Raises `StoreError` naming what is wrong. A last row cut short (an append
    killed half-way: the file does not end in a newline) is an error, or with `drop_torn`
    is left out. `with_size`: also return the byte length of the complete rows."""
    numeric = None if numeric is None else frozenset(numeric)
    try:
        with open(path, "rb") as f:
            data = f.read()
        if not data:
            raise StoreError(f"{path} is empty (no header); nothing was changed.")
        size = len(data)
        if not data.endswith(b"\n"):  # an append cut short (the process killed mid-row)
            if not drop_torn:
                raise StoreError(f"{path} is damaged (its last row is incomplete); nothing was changed.")
            size = data.rfind(b"\n") + 1
            if size == 0:
                raise StoreError(f"{path} is damaged (its header is incomplete); nothing was changed.")
        text = data[:size].decode()
        with io.StringIO(text, newline="") as f:
            reader = csv.DictReader(f)
            fields = tuple(reader.fieldnames or ())
            if columns is not None and fields != tuple(columns):
                raise StoreError(f"{path} has columns {list(fields)}, expected {list(columns)}.")
            rows = []
            for raw in reader:
                if None in raw or any(raw.get(c) is None for c in fields):
                    raise StoreError(f"{path}, row {reader.line_num}: missing or extra cells "
                                     f"({len(raw) - (None in raw)} of {len(fields)}); nothing was changed.")
                rows.append(_parse_row(raw, numeric, path, reader.line_num))
    except StoreError:
        raise
    except (OSError, UnicodeDecodeError, csv.Error, ValueError, TypeError) as e:
        raise StoreError(f"{path} is damaged ({e}); nothing was changed.") from e
    return (rows, size) if with_size else rows


def _parse_row(raw, numeric, path, line):
    if numeric is None:
        return {k: _parse_value(v) for k, v in raw.items()}
    out = {}
    for k, v in raw.items():
        if k in numeric:
            try:
                out[k] = _parse_number(v)
            except ValueError:
                raise StoreError(f"{path}, row {line}, column {k}: {v!r} is not a number; "
                                 "nothing was changed.") from None
        else:
            out[k] = v
    return out


def _parse_number(v):
    s = v.strip()
    if "_" in s:  # float() reads "1_000"; a CSV never holds it
        raise ValueError(v)
    if s.lstrip("+-").isdigit():
        return int(s)
    return float(s)  # "nan", "inf", "-inf" included; anything else is a ValueError


def _parse_value(v):
    if v in ("True", "False"):
        return v == "True"
    try:
        return _parse_number(v)
    except ValueError:
        return v


def _why_unwritable(folder, files):
    """None if the run's files can be written in `folder` (made if missing), else why not.
    Nothing is left behind: a missing folder is probed by making (and removing) its first
    missing level."""
    folder = os.path.abspath(folder)
    if os.path.isdir(folder):
        if not os.access(folder, os.W_OK | os.X_OK):
            return "the folder is not writable"
        for f in files:
            if os.path.exists(f) and not os.access(f, os.W_OK):
                return f"{os.path.basename(f)} is not writable"
        return None
    missing, parent = folder, os.path.dirname(folder)
    while parent != missing and not os.path.lexists(parent):
        missing, parent = parent, os.path.dirname(parent)
    if not os.path.isdir(parent):
        return f"{parent!r} is not a folder"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"a folder cannot be made in {parent!r} (not writable)"
    try:
        os.mkdir(missing)
    except OSError as e:
        return f"{missing!r} cannot be made ({e.strerror})"
    os.rmdir(missing)
    return None
