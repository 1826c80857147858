"""Results that are never lost: rows appended as they finish, a manifest, safe resumption."""

import csv
import io
import json
import os


class StoreError(ValueError):
    """The output folder does not belong to this command (or is damaged): nothing is touched."""


class RowStore:
    """An output folder holding `rows_name` (CSV, one row per finished configuration) and
    `manifest_name` (JSON: settings, versions, ...), resumable.

    - A new or empty folder is initialised with the manifest and the CSV header.
    - An existing folder resumes only if its manifest's `settings` equal `settings`;
      otherwise — or if it holds files this command does not write, or a CSV that does not
      parse — it raises `StoreError` and changes nothing.
    - `append(rows)` writes and fsyncs rows at once, so an interruption loses at most the batch
      in flight.
    - `read_only=True` (the other processes of a multi-process run) reads what is there and
      never creates or writes anything.
    """

    def __init__(self, out_dir, settings: dict, columns, *, rows_name="rows.csv",
                 manifest_name="manifest.json", other_outputs=(), read_only=False):
        self.dir = out_dir
        self.settings = json.loads(json.dumps(settings, default=str))
        self.columns = tuple(columns)
        self.rows_path = os.path.join(out_dir, rows_name)
        self.manifest_path = os.path.join(out_dir, manifest_name)
        allowed = {rows_name, manifest_name, *other_outputs}
        self.done_rows = []
        self.read_only = bool(read_only)
        if os.path.exists(out_dir) and not os.path.isdir(out_dir):
            raise StoreError(f"output path {out_dir!r} exists and is not a folder.")
        if self.read_only and not os.path.isdir(out_dir):
            return  # nothing finished yet (read_only: the folder is another process's to create)
        os.makedirs(out_dir, exist_ok=True)
        present = set(os.listdir(out_dir))
        foreign = sorted(present - allowed)
        if foreign:
            raise StoreError(
                f"output folder {out_dir!r} holds files this command does not write ({foreign}); "
                "choose an empty or new folder (nothing was changed)."
            )
        if rows_name in present or manifest_name in present:
            self._resume(rows_name, manifest_name, present)
        elif not self.read_only:
            self._write_manifest({"settings": self.settings})
            with open(self.rows_path, "w", newline="") as f:
                csv.DictWriter(f, fieldnames=self.columns).writeheader()

    def _resume(self, rows_name, manifest_name, present):
        if manifest_name not in present or rows_name not in present:
            raise StoreError(
                f"output folder {self.dir!r} has {rows_name if rows_name in present else manifest_name} "
                f"without its {manifest_name if rows_name in present else rows_name}: not a run of "
                "this command, or a damaged one (nothing was changed)."
            )
        try:
            with open(self.manifest_path) as f:
                manifest = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise StoreError(f"{self.manifest_path} is not a readable manifest ({e}); nothing was changed.") from e
        old = manifest.get("settings") if isinstance(manifest, dict) else None
        if old != self.settings:
            diff = sorted(k for k in set(self.settings) | set(old or {})
                          if (old or {}).get(k) != self.settings.get(k))
            raise StoreError(
                f"output folder {self.dir!r} holds a run with other settings (differs in {diff}); "
                "use another --out, or the same command to resume it (nothing was changed)."
            )
        try:
            with open(self.rows_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                if f.tell() == 0:
                    raise StoreError(f"{self.rows_path} is empty (no header); nothing was changed.")
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":  # a write cut short (killed mid-row): the last row is partial
                    raise StoreError(f"{self.rows_path} is damaged (its last row is incomplete); nothing was changed.")
            with open(self.rows_path, newline="") as f:
                reader = csv.DictReader(f)
                if tuple(reader.fieldnames or ()) != self.columns:
                    raise StoreError(f"{self.rows_path} has columns {reader.fieldnames}, expected {list(self.columns)}.")
                rows = [_parse_row(r, self.columns) for r in reader]
        except (csv.Error, ValueError, TypeError) as e:
            if isinstance(e, StoreError):
                raise
            raise StoreError(f"{self.rows_path} is damaged ({e}); nothing was changed.") from e
        self.done_rows = rows

    def _write_manifest(self, manifest):
        tmp = self.manifest_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(manifest, f, indent=2, default=str)
        os.replace(tmp, self.manifest_path)

    def update_manifest(self, **extra):
        """Add sections (fits, timings, versions) to the manifest; settings never change."""
        if self.read_only:
            raise StoreError(f"{self.manifest_path} was opened read-only.")
        with open(self.manifest_path) as f:
            manifest = json.load(f)
        manifest.update(json.loads(json.dumps(extra, default=str)))
        manifest["settings"] = self.settings
        self._write_manifest(manifest)

    def append(self, rows):
        if self.read_only:
            raise StoreError(f"{self.rows_path} was opened read-only; rows are written by another process.")
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


def _parse_row(raw, columns):
    if None in raw or any(raw.get(c) is None for c in columns):
        raise ValueError(f"a row with missing or extra fields: {raw}")
    out = {}
    for k, v in raw.items():
        out[k] = _parse_value(v)
    return out


def _parse_value(v):
    if v in ("True", "False"):
        return v == "True"
    try:
        if v.strip().lstrip("-").isdigit():
            return int(v)
        return float(v)
    except ValueError:
        return v
