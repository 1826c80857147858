"""`RowStore` on its own (no computation): nothing created before the first row, a strict-JSON
manifest, damaged cells named by file, row and column, and output folders that cannot be
written, found before any work.

Tests run as root, for whom `chmod` does not stop writes: a folder that cannot be written is
either a real one (a path under /proc, where even root cannot make a folder) or one for which
`os.access` is made to answer no (what it answers on a read-only file system, for root too).
"""

import json
import math
import os

import numpy as np
import pytest

from jaxmem import RowStore, StoreError
from jaxmem._experiments import store as store_module

from .helpers import deny_writes_under

COLUMNS = ("key", "lag", "tau_param", "status")
NUMERIC = ("lag", "tau_param")


def _reject(token):
    raise ValueError(f"non-standard JSON token {token}")


def _strict(path):
    """The JSON at `path`, parsed by a reader that rejects NaN and Infinity."""
    return json.loads(path.read_text(), parse_constant=_reject)


def _store(path, **kw):
    return RowStore(str(path), {"a": 1}, COLUMNS, rows_name="r.csv", manifest_name="m.json",
                    numeric=NUMERIC, **kw)


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_nothing_is_created_before_the_first_row(tmp_path):
    out = tmp_path / "a" / "b"
    s = _store(out)
    assert s.writable and s.done_rows == []
    assert not (tmp_path / "a").exists()  # the writability probe left nothing behind
    s.append([{"key": "k1", "lag": 8.0, "tau_param": 1.5, "status": "successful"}])
    assert sorted(p.name for p in out.iterdir()) == ["m.json", "r.csv"]
    assert _strict(out / "m.json") == {"settings": {"a": 1}}
    assert _store(out).done_rows == [{"key": "k1", "lag": 8.0, "tau_param": 1.5, "status": "successful"}]


def test_an_empty_folder_stays_empty_until_the_first_row(tmp_path):
    _store(tmp_path)
    assert list(tmp_path.iterdir()) == []
    s = _store(tmp_path)
    s.update_manifest(timings={"this_run_s": 1.0})  # a manifest without rows creates the files too
    assert _strict(tmp_path / "m.json") == {"timings": {"this_run_s": 1.0}, "settings": {"a": 1}}
    assert (tmp_path / "r.csv").read_text().strip() == ",".join(COLUMNS)


def test_manifest_is_strict_json(tmp_path):
    s = _store(tmp_path / "run")
    s.append([{"key": "k1", "lag": 8.0, "tau_param": math.inf, "status": "param_not_reached"}])
    nan, inf = float("nan"), float("inf")
    s.update_manifest(fits=[dict(lr=nan, slope=np.float64(nan), r2=inf, intercept=-inf, n=np.int64(1),
                                 w=np.float32(0.5))],
                      grid=np.array([1.0, np.nan, np.inf]), pair=(nan, 2))
    text = (tmp_path / "run" / "m.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    m = _strict(tmp_path / "run" / "m.json")
    assert m["fits"] == [dict(lr=None, slope=None, r2="inf", intercept="-inf", n=1, w=0.5)]
    assert m["grid"] == [1.0, None, "inf"] and m["pair"] == [None, 2]
    assert m["settings"] == {"a": 1}
    # ... and it resumes: the settings read back equal the settings given.
    assert _store(tmp_path / "run").done_rows[0]["tau_param"] == math.inf


def test_non_finite_settings_resume(tmp_path):
    settings = {"max_rate": math.inf, "eps": math.nan, "lags": (8.0, 10.0)}
    s = RowStore(str(tmp_path), settings, ("key",))
    s.append([{"key": "k"}])
    assert _strict(tmp_path / "manifest.json")["settings"] == {"max_rate": "inf", "eps": None, "lags": [8.0, 10.0]}
    assert RowStore(str(tmp_path), settings, ("key",)).done_rows == [{"key": "k"}]


def test_an_old_manifest_with_nan_still_resumes_and_is_rewritten_strictly(tmp_path):
    # Written by jaxmem before manifests were strict JSON.
    (tmp_path / "m.json").write_text('{"settings": {"a": 1}, "fits": [{"lr": NaN, "slope": NaN}]}')
    (tmp_path / "r.csv").write_text(",".join(COLUMNS) + "\n")
    s = _store(tmp_path)
    s.update_manifest(timings={})
    assert _strict(tmp_path / "m.json")["fits"] == [{"lr": None, "slope": None}]


def test_cells_are_read_by_column(tmp_path):
    (tmp_path / "m.json").write_text('{"settings": {"a": 1}}')
    (tmp_path / "r.csv").write_text(
        "key,lag,tau_param,status\n"
        "123,8,inf,True\n"
        "k2,-8.5, nan ,successful\n"
        "k3,1e3,-inf,param_not_reached\n"
    )
    rows = _store(tmp_path).done_rows
    assert rows[0] == {"key": "123", "lag": 8, "tau_param": math.inf, "status": "True"}  # strings stay strings
    assert type(rows[0]["lag"]) is int and rows[1]["lag"] == -8.5 and math.isnan(rows[1]["tau_param"])
    assert rows[2]["lag"] == 1000.0 and rows[2]["tau_param"] == -math.inf


@pytest.mark.parametrize("cell", ["abc", "", "1_000", "True"])
def test_a_damaged_cell_is_named_and_nothing_changes(tmp_path, cell):
    (tmp_path / "m.json").write_text('{"settings": {"a": 1}}')
    (tmp_path / "r.csv").write_text(f"key,lag,tau_param,status\nk1,8.0,1.5,successful\nk2,10.0,{cell},successful\n")
    before = _snapshot(tmp_path)
    with pytest.raises(StoreError) as info:
        _store(tmp_path)
    assert str(info.value) == (f"{tmp_path / 'r.csv'}, row 3, column tau_param: {cell!r} is not a number; "
                               "nothing was changed.")
    assert _snapshot(tmp_path) == before


def test_a_row_with_missing_cells_is_named(tmp_path):
    (tmp_path / "m.json").write_text('{"settings": {"a": 1}}')
    (tmp_path / "r.csv").write_text("key,lag,tau_param,status\nk1,8.0,1.5,successful\nk2,10.0\n")
    with pytest.raises(StoreError, match=r"r\.csv, row 3: missing or extra cells"):
        _store(tmp_path)


def test_an_existing_file_is_refused(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(StoreError, match="exists and is not a folder"):
        _store(tmp_path / "afile")
    assert (tmp_path / "afile").read_text() == "x"


@pytest.mark.parametrize("where, why", [
    ("afile/sub", "is not a folder"),  # a missing folder under a file
    ("/proc/nope", r"'/proc/nope' cannot be made"),  # even root cannot make a folder there
    ("/proc/nope/deeper", r"'/proc/nope' cannot be made"),
])
def test_a_folder_that_cannot_be_made_is_found_before_any_work(tmp_path, where, why):
    (tmp_path / "afile").write_text("x")
    path = where if where.startswith("/") else str(tmp_path / where)
    s = RowStore(path, {"a": 1}, COLUMNS)  # opening is fine: nothing is written yet ...
    assert not s.writable
    with pytest.raises(StoreError, match=f"cannot write to output folder .*{why}"):
        s.require_writable()  # ... and a driver asks before any work
    assert not os.path.exists(path) and (tmp_path / "afile").read_text() == "x"


def test_a_read_only_folder_is_found_before_any_work(tmp_path, monkeypatch):
    s = _store(tmp_path / "run")
    s.append([{"key": "k1", "lag": 8.0, "tau_param": 1.5, "status": "successful"}])
    before = _snapshot(tmp_path / "run")
    deny_writes_under(monkeypatch, tmp_path / "run")
    ro = _store(tmp_path / "run")
    assert ro.done_rows and not ro.writable  # a finished run can still be read
    with pytest.raises(StoreError, match="the folder is not writable"):
        ro.require_writable()
    assert _snapshot(tmp_path / "run") == before


def test_a_read_only_rows_file_is_found(tmp_path, monkeypatch):
    s = _store(tmp_path)
    s.append([{"key": "k1", "lag": 8.0, "tau_param": 1.5, "status": "successful"}])
    deny_writes_under(monkeypatch, tmp_path / "r.csv")
    assert _store(tmp_path).unwritable == "r.csv is not writable"


def test_a_missing_folder_in_a_read_only_parent(tmp_path, monkeypatch):
    deny_writes_under(monkeypatch, tmp_path)
    s = _store(tmp_path / "new")
    assert "not writable" in s.unwritable and not (tmp_path / "new").exists()


def test_json_safe_leaves_finite_values_alone():
    obj = {"a": [1, 2.5, "inf", None, True], "b": {"c": (1.0, -0.0)}}
    assert store_module.json_safe(obj) == {"a": [1, 2.5, "inf", None, True], "b": {"c": [1.0, -0.0]}}


def test_a_killed_manifest_replacement_does_not_block_resuming(tmp_path):
    # A run killed while replacing its manifest leaves `m.json.tmp`: ours, not a foreign file.
    s = _store(tmp_path / "run")
    s.append([dict(key="a", lag=8.0, tau_param=1.5, status="successful")])
    (tmp_path / "run" / "m.json.tmp").write_text("{")
    again = _store(tmp_path / "run")
    assert [r["key"] for r in again.done_rows] == ["a"]
    again.update_manifest(note="x")
    assert _strict(tmp_path / "run" / "m.json")["note"] == "x"


def test_a_torn_last_row_is_dropped_at_the_next_append(tmp_path):
    s = _store(tmp_path / "run")
    s.append([dict(key="a", lag=8.0, tau_param=1.5, status="successful")])
    path = tmp_path / "run" / "r.csv"
    path.write_bytes(path.read_bytes() + b"b,9.0,2.")  # an append killed half-way
    again = _store(tmp_path / "run")
    assert [r["key"] for r in again.done_rows] == ["a"]
    assert path.read_bytes().endswith(b"2.")  # nothing changes before there is a row to write
    again.append([dict(key="b", lag=9.0, tau_param=2.5, status="successful")])
    assert path.read_text().splitlines()[1:] == ["a,8.0,1.5,successful", "b,9.0,2.5,successful"]
    # A reader that does not write (another process, `load_run`) leaves the torn row out too.
    reader = _store(tmp_path / "run", read_only=True)
    assert [r["key"] for r in reader.done_rows] == ["a", "b"]
