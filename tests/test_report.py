"""The run as data: strict-JSON manifests, `jaxmem report` (the table and figure of a finished
or partial run from its files, computing nothing), `jaxmem.load_run`, and file faults
(unusable --out, read-only folders, damaged cells, runs that fail before or during their work).

The runs are small gd plateau maps (`--train-max-steps 20000`, compiled in a few seconds) and
one small approximation map, shared by the tests as module-scoped fixtures.

Tests run as root, for whom `chmod` does not stop writes. A read-only folder is therefore
simulated by making `os.access` answer no for writes under it — what it answers on a read-only
file system, root included — and a folder that cannot be made is a real one under /proc.
"""

import contextlib
import csv
import io
import json
import math
import os
import shutil
import sys

import jax
import numpy as np
import pytest

import jaxmem
from jaxmem import StoreError
from jaxmem._experiments import approx as approx_module, plateau as plateau_module
from jaxmem._experiments.report import format_fits
from jaxmem._experiments.store import RowStore
from jaxmem.internal import main

from .helpers import deny_writes_under

GD = ["plateau", "--optimizer", "gd", "--train-max-steps", "20000", "--no-progress"]
APPROX = ["approx", "--omega", "1,2", "--widths", "1,2", "--starts", "2", "--eps", "0.1", "--max-width", "4",
          "--batch-size", "4", "--no-progress"]


def _main(argv):
    """`jaxmem ARGV` → (exit code, stdout, stderr), without a persistent compilation cache and
    with standard dtype promotion (as the command line runs)."""
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JAXMEM_NO_CACHE", "1")
        with jax.numpy_dtype_promotion("standard"), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


def _reject(token):
    raise ValueError(f"non-standard JSON token {token}")


def _strict(path):
    return json.loads(path.read_text(), parse_constant=_reject)


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


class count_compiles:
    """Every XLA compilation in the block (JAX's monitoring events)."""

    def __enter__(self):
        self.n = 0
        jax.monitoring.register_event_duration_secs_listener(self._listen)
        return self

    def _listen(self, event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            self.n += 1

    def __exit__(self, *exc):
        jax.monitoring.unregister_event_duration_listener(self._listen)
        return False


def _no_work(monkeypatch):
    """The sweep and the fits fail the test if they are called."""
    def work(*args, **kwargs):
        raise AssertionError("work was started")

    monkeypatch.setattr(plateau_module, "plateau_sweep", work)
    monkeypatch.setattr(approx_module, "fit_rows", work)


def _plateau_table(stdout):
    """The slope table of a `jaxmem plateau` or `jaxmem report` output."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("optimizer "))
    end = start + 1
    while end < len(lines) and not lines[end].startswith(("wrote", "note:", "jaxmem")):
        end += 1
    return lines[start:end]


def _approx_table(stdout):
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(" relative L2 error"))
    end = next(i for i, line in enumerate(lines) if line.startswith(" width needed for"))
    return lines[start:end + 1]


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _write_rows(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


@pytest.fixture(scope="module")
def gd_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gd") / "run"
    rc, stdout, stderr = _main([*GD, "--lags", "6", "8", "--out", out])
    assert rc == 0, stderr
    return out, stdout


@pytest.fixture(scope="module")
def one_lag_run(tmp_path_factory, gd_run):
    out = tmp_path_factory.mktemp("gd1") / "run"
    rc, stdout, stderr = _main([*GD, "--lags", "8", "--out", out])
    assert rc == 0, stderr
    return out, stdout


@pytest.fixture(scope="module")
def approx_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("approx") / "run"
    rc, stdout, stderr = _main([*APPROX, "--out", out])
    assert rc == 0, stderr
    return out, stdout


# Strict JSON and the slope table.

def test_manifests_are_strict_json(gd_run, one_lag_run, approx_run):
    for out, name in ((gd_run[0], "plateau.json"), (one_lag_run[0], "plateau.json"), (approx_run[0], "approx.json")):
        text = (out / name).read_text()
        assert "NaN" not in text and "Infinity" not in text
        _strict(out / name)
    # One lag per series: no slope, intercept or R² — null, not NaN.
    fits = _strict(one_lag_run[0] / "plateau.json")["fits"]
    assert fits and all(f["slope"] is None and f["intercept"] is None and f["r2"] is None and f["n"] == 1
                        for f in fits)
    assert all(isinstance(f["slope"], float) for f in _strict(gd_run[0] / "plateau.json")["fits"])


def test_a_fit_without_two_points_prints_a_dash(one_lag_run):
    table = _plateau_table(one_lag_run[1])
    assert len(table) == 3 and "nan" not in "\n".join(table)
    for line in table[1:]:
        assert line.split()[5:8] == ["—", "—", "1"], line


def test_the_slope_table_is_unchanged_for_normal_fits():
    nan = float("nan")
    fits = [dict(optimizer="flow", parameterization="identity", width=10, lr=nan, quantity="tau_param",
                 slope=0.61234, r2=0.99912, n=4, theory_slope=0.5),
            dict(optimizer="gd", parameterization="exp", width=6, lr=0.02, quantity="tau_loss",
                 slope=-1.5, r2=0.5, n=12, theory_slope=0.5),
            dict(optimizer="adam", parameterization="identity", width=10, lr=0.01, quantity="tau_loss",
                 slope=nan, r2=nan, n=0, theory_slope=0.5)]
    assert format_fits(fits).splitlines() == [
        "optimizer param.      m      lr quantity     slope      R²   n  (theory: slope >= w_l0)",
        "flow      identity   10       - tau_param   0.6123  0.9991   4  w_l0 = 0.5",
        "gd        exp         6    0.02 tau_loss   -1.5000  0.5000  12  w_l0 = 0.5",
        "adam      identity   10    0.01 tau_loss         —       —   0  w_l0 = 0.5",
    ]


# jaxmem report.

def test_report_prints_the_runs_table_and_computes_nothing(gd_run, tmp_path):
    out = _copy(gd_run[0], tmp_path / "copy")
    (out / "plateau.png").unlink()
    with count_compiles() as c:
        rc, stdout, stderr = _main(["report", out])
    assert rc == 0 and stderr == ""
    assert c.n == 0
    assert _plateau_table(stdout) == _plateau_table(gd_run[1])
    assert stdout.splitlines()[0] == f"jaxmem report: plateau run in {out}: 2 of 2 configurations"
    assert (out / "plateau.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"wrote {out / 'plateau.png'}" in stdout


def test_report_of_a_partial_run(gd_run, tmp_path):
    out = _copy(gd_run[0], tmp_path / "copy")
    rows = _rows(out / "plateau.csv")
    _write_rows(out / "plateau.csv", rows[:1])
    rc, stdout, _ = _main(["report", out])
    assert rc == 0 and "1 of 2 configurations" in stdout and "—" in stdout


def test_report_on_a_read_only_folder(gd_run, tmp_path, monkeypatch):
    out = _copy(gd_run[0], tmp_path / "copy")
    before = _snapshot(out)
    deny_writes_under(monkeypatch, out)
    rc, stdout, stderr = _main(["report", out])
    assert rc == 0 and _plateau_table(stdout) == _plateau_table(gd_run[1])
    assert stderr.strip() == (f"jaxmem report: the figure was not drawn: {out / 'plateau.png'} cannot be written "
                              "(the folder is not writable); --figure PATH writes it elsewhere.")
    assert _snapshot(out) == before
    # --figure writes it elsewhere.
    rc, stdout, _ = _main(["report", out, "--figure", tmp_path / "fig.png"])
    assert rc == 0 and (tmp_path / "fig.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert _snapshot(out) == before


def test_report_of_an_approx_run(approx_run, tmp_path):
    out = _copy(approx_run[0], tmp_path / "copy")
    (out / "approx.png").unlink()
    with count_compiles() as c:
        rc, stdout, stderr = _main(["report", out])
    assert rc == 0 and stderr == "" and c.n == 0
    assert _approx_table(stdout) == _approx_table(approx_run[1])
    assert stdout.splitlines()[0].startswith(f"jaxmem report: approx run in {out}: 8 of 8 map rows, ")
    assert (out / "approx.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_of_a_partial_approx_run(approx_run, tmp_path):
    # Interrupted in the map: no width search yet, nor a width_needed in the manifest.
    out = _copy(approx_run[0], tmp_path / "copy")
    rows = [r for r in _rows(out / "approx.csv") if r["part"] == "map"][:5]
    _write_rows(out / "approx.csv", rows)
    manifest = json.loads((out / "approx.json").read_text())
    (out / "approx.json").write_text(json.dumps({"settings": manifest["settings"]}))
    rc, stdout, _ = _main(["report", out])
    assert rc == 0 and "5 of 8 map rows, 0 width-search rows" in stdout
    table = [line for line in stdout.splitlines() if ">= 0.5" in line or " free " in line]
    assert sum(line.count("—") for line in table) == 3 and "width needed" not in stdout


def test_report_of_a_run_without_rows_and_a_figure_path_that_fails(gd_run, tmp_path):
    out = _copy(gd_run[0], tmp_path / "copy")
    (out / "plateau.png").unlink()
    (out / "plateau.csv").write_text(",".join(plateau_module.COLUMNS) + "\n")
    rc, stdout, stderr = _main(["report", out])
    assert rc == 0 and stderr == "" and stdout.splitlines() == [
        f"jaxmem report: plateau run in {out}: 0 of 2 configurations", "no rows yet: no table, no figure."]
    assert not (out / "plateau.png").exists()
    # An explicit --figure that cannot be written is an error, in one line, after the table.
    rc, stdout, stderr = _main(["report", gd_run[0], "--figure", "/proc/nope/fig.png"])
    assert rc == 2 and "slope" in stdout
    assert stderr.startswith("jaxmem report: error: [Errno 2] No such file or directory") and len(
        stderr.splitlines()) == 1


def test_report_refuses_a_folder_of_no_run(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    rc, _, stderr = _main(["report", tmp_path])
    assert rc == 2 and stderr.startswith("jaxmem report: error:") and len(stderr.splitlines()) == 1


# load_run.

def test_load_run_with_pandas(gd_run, approx_run):
    pd = pytest.importorskip("pandas")
    rows, manifest = jaxmem.load_run(gd_run[0])
    assert isinstance(rows, pd.DataFrame) and len(rows) == 2
    assert list(rows.columns) == list(plateau_module.COLUMNS)
    for c in ("lag", "omega", "tau_param", "tau_loss", "lr", "momentum", "wall_s"):
        assert rows[c].dtype == np.float64, c
    for c in ("width", "seed", "steps"):
        assert rows[c].dtype == np.int64, c
    assert all(isinstance(s, str) for s in rows["status"]) and set(rows["status"]) == {"successful"}
    assert sorted(rows["lag"]) == [6.0, 8.0]
    assert manifest["settings"]["lags"] == [6.0, 8.0] and len(manifest["fits"]) == 2
    rows, manifest = jaxmem.load_run(approx_run[0])
    assert rows["omega"].dtype == np.float64 and rows["relative_error"].dtype == np.float64
    assert manifest["width_needed"].keys() == {"1.0", "2.0"}


def test_load_run_reads_inf_and_without_pandas_gives_dicts(gd_run, tmp_path, monkeypatch):
    out = _copy(gd_run[0], tmp_path / "copy")
    rows = _rows(out / "plateau.csv")
    rows[1].update(tau_loss="inf", status="loss_not_reached")
    _write_rows(out / "plateau.csv", rows)
    monkeypatch.setitem(sys.modules, "pandas", None)  # `import pandas` raises ImportError
    got, manifest = jaxmem.load_run(out)
    assert isinstance(got, list) and len(got) == 2 and got[1]["tau_loss"] == math.inf
    assert got[1]["status"] == "loss_not_reached" and type(got[0]["width"]) is int
    assert type(got[0]["tau_param"]) is float and got[0]["key"] == rows[0]["key"]
    assert "settings" in manifest


def test_a_damaged_cell_is_named_everywhere(gd_run, tmp_path):
    out = _copy(gd_run[0], tmp_path / "copy")
    rows = _rows(out / "plateau.csv")
    rows[1]["tau_param"] = "abc"
    _write_rows(out / "plateau.csv", rows)
    before = _snapshot(out)
    message = f"{out / 'plateau.csv'}, row 3, column tau_param: 'abc' is not a number; nothing was changed."
    rc, _, stderr = _main([*GD, "--lags", "6", "8", "--out", out])
    assert rc == 2 and stderr == f"jaxmem plateau: error: {message}\n"
    rc, _, stderr = _main(["report", out])
    assert rc == 2 and stderr == f"jaxmem report: error: {message}\n"
    with pytest.raises(StoreError, match="row 3, column tau_param: 'abc' is not a number"):
        jaxmem.load_run(out)
    assert _snapshot(out) == before


# File faults.

@pytest.mark.parametrize("command", ["plateau", "approx"])
@pytest.mark.parametrize("where, message", [
    ("afile", "exists and is not a folder"),
    ("afile/sub", "is not a folder"),
    ("/proc/nope", "'/proc/nope' cannot be made"),
    ("read-only", "the folder is not writable"),
])
def test_an_unusable_out_is_one_line_before_any_work(tmp_path, monkeypatch, command, where, message):
    (tmp_path / "afile").write_text("x")
    if where == "read-only":
        (tmp_path / "read-only").mkdir()
        deny_writes_under(monkeypatch, tmp_path / "read-only")
    out = where if where.startswith("/") else tmp_path / where
    argv = [*GD, "--lags", "8"] if command == "plateau" else APPROX
    _no_work(monkeypatch)
    rc, stdout, stderr = _main([*argv, "--out", out])
    assert rc == 2
    assert len(stderr.splitlines()) == 1 and stderr.startswith(f"jaxmem {command}: error:") and message in stderr
    assert "resuming" not in stdout and "[approx] powerlaw: fitting" not in stdout
    assert (tmp_path / "afile").read_text() == "x"
    assert not os.path.exists("/proc/nope") and sorted(p.name for p in tmp_path.iterdir()) in (
        ["afile"], ["afile", "read-only"])
    if where == "read-only":
        assert list((tmp_path / "read-only").iterdir()) == []


def test_the_same_command_redisplays_a_read_only_finished_run(gd_run, tmp_path, monkeypatch):
    out = _copy(gd_run[0], tmp_path / "copy")
    before = _snapshot(out)
    deny_writes_under(monkeypatch, out)
    with count_compiles() as c:
        rc, stdout, stderr = _main([*GD, "--lags", "6", "8", "--out", out])
    assert rc == 0 and stderr == "" and c.n == 0
    assert _plateau_table(stdout) == _plateau_table(gd_run[1])
    assert f"note: {out} cannot be written (the folder is not writable)" in stdout
    assert _snapshot(out) == before


def test_the_same_approx_command_redisplays_a_read_only_finished_run(approx_run, tmp_path, monkeypatch):
    out = _copy(approx_run[0], tmp_path / "copy")
    before = _snapshot(out)
    deny_writes_under(monkeypatch, out)
    rc, stdout, stderr = _main([*APPROX, "--out", out])
    assert rc == 0 and stderr == ""
    assert _approx_table(stdout) == _approx_table(approx_run[1])
    assert "cannot be written" in stdout and "[approx] wrote" not in stdout
    assert _snapshot(out) == before


def test_a_read_only_run_with_work_left_is_refused_first(gd_run, tmp_path, monkeypatch):
    out = _copy(gd_run[0], tmp_path / "copy")
    _write_rows(out / "plateau.csv", _rows(out / "plateau.csv")[:1])
    before = _snapshot(out)
    deny_writes_under(monkeypatch, out)
    _no_work(monkeypatch)
    rc, stdout, stderr = _main([*GD, "--lags", "6", "8", "--out", out])
    assert rc == 2 and "resuming" not in stdout
    assert stderr == (f"jaxmem plateau: error: cannot write to output folder {str(out)!r}: the folder is not "
                      "writable (nothing was computed or changed).\n")
    assert _snapshot(out) == before


def test_a_folder_of_another_run_is_refused_before_resuming(gd_run, tmp_path):
    # The settings of `--lags 8`, but rows of L = 6 as well: refused, without a "resuming" line.
    out = _copy(gd_run[0], tmp_path / "copy")
    manifest = json.loads((out / "plateau.json").read_text())
    manifest["settings"]["lags"] = [8.0]
    (out / "plateau.json").write_text(json.dumps(manifest))
    before = _snapshot(out)
    rc, stdout, stderr = _main([*GD, "--lags", "8", "--out", out])
    assert rc == 2 and "outside this grid" in stderr and "resuming" not in stdout
    assert _snapshot(out) == before


def test_refused_by_validation_creates_nothing(tmp_path):
    out = tmp_path / "X"
    rc, stdout, stderr = _main(["approx", "--omega", "1000", "--out", out, "--no-progress"])
    assert rc == 2 and stderr == ("jaxmem approx: error: omega 1000 is not a valid parameter of --kernel powerlaw "
                                  "(PowerLaw omega must be in (0, 60]; got 1000.0).\n")
    assert stdout == "" and not out.exists()


@pytest.mark.parametrize("command", ["plateau", "approx"])
def test_a_run_that_fails_before_its_first_row_leaves_nothing(tmp_path, monkeypatch, command):
    def fail(*args, **kwargs):
        raise RuntimeError("out of memory")

    if command == "plateau":
        monkeypatch.setattr(plateau_module, "plateau_sweep", fail)
        argv = [*GD, "--lags", "8"]
    else:
        monkeypatch.setattr(approx_module, "fit_rows", fail)
        argv = APPROX
    out = tmp_path / "X"
    with pytest.raises(RuntimeError, match="out of memory"):
        _main([*argv, "--out", out])
    assert not out.exists()
    # ... so that the same folder takes another command afterwards.
    RowStore(str(out), {"other": 1}, ("key",)).require_writable()


def test_a_run_that_fails_midway_resumes(gd_run, tmp_path, monkeypatch):
    out = tmp_path / "run"
    orig = RowStore.append

    def append_one_then_fail(self, rows):
        orig(self, rows[:1])  # the first row is written, then the disk fills up
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(RowStore, "append", append_one_then_fail)
    rc, _, stderr = _main([*GD, "--lags", "6", "8", "--out", out])
    assert rc == 2 and stderr.startswith("jaxmem plateau: error: [Errno 28] No space left on device")
    assert len(_rows(out / "plateau.csv")) == 1 and "timings" not in _strict(out / "plateau.json")
    monkeypatch.setattr(RowStore, "append", orig)
    rc, stdout, _ = _main([*GD, "--lags", "6", "8", "--out", out])
    assert rc == 0 and f"resuming: 1 of 2 configurations already in {out}" in stdout
    rows = _rows(out / "plateau.csv")
    assert len(rows) == 2 and len({r["key"] for r in rows}) == 2
    assert _plateau_table(stdout) == _plateau_table(gd_run[1])
    assert _strict(out / "plateau.json")["timings"]["new_rows"] == 1


def test_report_compiles_nothing_in_a_fresh_process(gd_run, approx_run, tmp_path):
    # In this test process the runs above compiled already; a fresh one compiles from scratch.
    import subprocess

    code = (
        "import jax, sys\n"
        "n = []\n"
        "jax.monitoring.register_event_duration_secs_listener(\n"
        "    lambda e, d, **k: n.append(e) if e == '/jax/core/compile/backend_compile_duration' else None)\n"
        "from jaxmem.internal import main\n"
        "assert main(['report', sys.argv[1]]) == 0 and main(['report', sys.argv[2]]) == 0\n"
        "print('compilations', len(n))\n"
    )
    plateau_copy, approx_copy = _copy(gd_run[0], tmp_path / "p"), _copy(approx_run[0], tmp_path / "a")
    env = dict(os.environ, JAXMEM_NO_CACHE="1", JAX_PLATFORMS="cpu")
    done = subprocess.run([sys.executable, "-c", code, str(plateau_copy), str(approx_copy)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "compilations 0"
    assert _plateau_table(done.stdout) == _plateau_table(gd_run[1])
