"""`jaxmem approx` through the resumable row store: rows saved batch by batch, resumption that
recomputes nothing, interrupts that keep finished batches, folders that are never overwritten,
and one compilation per program whatever the number of batches.

One small run (2 ω × 3 widths × 2 rate modes = 12 map rows in batches of 5, plus the width
search) is a module-scoped fixture; the other tests reuse its compiled programs.
"""

import argparse
import contextlib
import csv
import io
import json
import shutil

import jax.random as jr
import numpy as np
import pytest

import jaxmem
from jaxmem import StoreError
from jaxmem._approx import _maps
from jaxmem._cli import approx as cli_approx
from jaxmem._experiments.approx import kernel_fn
from jaxmem.internal import main

from .helpers import count_traces

ARGV = ["approx", "--omega", "1,2", "--widths", "1,2,3", "--starts", "2", "--batch-size", "5",
        "--eps", "0.1", "--max-width", "4"]
N_MAP = 2 * 3 * 2
FLOATS = ("omega", "width", "min_rate", "error", "relative_error")


class CountingFit:
    """Stands in for `_maps._fit_pairs` (one call per batch); raises KeyboardInterrupt at
    call `fail_at`, as a Ctrl-C during that batch would."""

    def __init__(self, fail_at=None):
        self.calls, self.fail_at, self.fit = 0, fail_at, _maps._fit_pairs

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self.fail_at:
            raise KeyboardInterrupt
        return self.fit(*args, **kwargs)


def _run(out, extra=(), fail_at=None):
    """`jaxmem approx` through `main`; returns (exit code, fit calls, stdout, stderr)."""
    fit = CountingFit(fail_at)
    stdout, stderr = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JAXMEM_NO_CACHE", "1")
        mp.setattr(_maps, "_fit_pairs", fit)
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            rc = main([*ARGV, *extra, "--out", str(out)])
    return rc, fit.calls, stdout.getvalue(), stderr.getvalue()


def _rows(path):
    with open(path / "approx.csv", newline="") as f:
        return list(csv.DictReader(f))


def _table(stdout):
    return [line for line in stdout.splitlines() if not line.startswith("[approx]")]


def _assert_rows_close(rows, ref):
    assert [r["key"] for r in rows] == [r["key"] for r in ref]
    for r, q in zip(rows, ref):
        np.testing.assert_allclose([float(r[c]) for c in FLOATS], [float(q[c]) for c in FLOATS], rtol=1e-9)
        assert r["status"] == q["status"] and r["part"] == q["part"] and r["rates_mode"] == q["rates_mode"]


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("approx") / "run"
    _maps._fit_pairs.clear_cache()  # count this run's traces from scratch
    with count_traces("_fit_pairs") as traces:
        rc, calls, stdout, stderr = _run(out)
    return dict(out=out, rc=rc, calls=calls, stdout=stdout, stderr=stderr, traces=traces.n, rows=_rows(out))


def test_run_writes_rows_manifest_figure_and_progress(reference):
    assert reference["rc"] == 0
    out, rows = reference["out"], reference["rows"]
    assert sorted(p.name for p in out.iterdir()) == ["approx.csv", "approx.json", "approx.png"]
    assert (out / "approx.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    maps = [r for r in rows if r["part"] == "map"]
    assert len(maps) == N_MAP and len({r["key"] for r in rows}) == len(rows)
    assert {r["rates_mode"] for r in maps} == {"floor", "free"}
    assert all(r["status"] == "successful" and 0 < float(r["relative_error"]) < 1 for r in rows)
    search = [r for r in rows if r["part"] == "search"]
    assert search and all(r["rates_mode"] == "floor" and float(r["min_rate"]) == 0.5 for r in search)
    manifest = json.loads((out / "approx.json").read_text())
    assert manifest["settings"]["params"] == [1.0, 2.0] and manifest["settings"]["widths"] == [1, 2, 3]
    assert manifest["batch_size"] == 5 and manifest["timings"]["new_rows"] == len(rows)
    assert "jax" in manifest["versions"]
    assert "width needed for 0.1" in reference["stdout"]
    # A bar per batch with an estimate of the time left: 3 map batches (5, 5, 2 rows).
    assert "approx map" in reference["stderr"] and "3/3" in reference["stderr"] and "left" in reference["stderr"]


def test_rows_are_the_library_calls(reference):
    # The batched CLI rows are error_map's and width_needed's numbers (same keys per pair).
    rows = {r["key"]: r for r in reference["rows"]}
    kw = dict(n_starts=2, key=jr.key(0))
    for mode, lo in (("floor", 0.5), ("free", None)):
        ref = jaxmem.error_map(kernel_fn("powerlaw"), [1.0, 2.0], [1, 2, 3], min_rate=lo, batch_size=5, **kw)
        got = [[float(rows[f"map|{mode}|omega={p!r}|m={m}"]["relative_error"]) for m in (1, 2, 3)] for p in (1.0, 2.0)]
        np.testing.assert_allclose(got, ref["relative_error"], rtol=1e-9)
    needed = jaxmem.width_needed((kernel_fn("powerlaw"), [1.0, 2.0]), 0.1, min_rate=0.5, max_width=4, **kw)
    assert json.loads((reference["out"] / "approx.json").read_text())["width_needed"] == {
        "1.0": int(needed[0]), "2.0": int(needed[1])}


def test_rerun_recomputes_nothing(reference, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(reference["out"], out)
    before = _snapshot(out)
    rc, calls, stdout, _ = _run(out)
    assert rc == 0 and calls == 0
    after = _snapshot(out)
    # Rows untouched; table and figure redrawn from them, identical.
    assert after["approx.csv"] == before["approx.csv"] and after["approx.png"] == before["approx.png"]
    assert _table(stdout) == _table(reference["stdout"])
    manifest = json.loads(after["approx.json"])
    assert manifest["timings"]["new_rows"] == 0 and manifest["timings"]["resumed_rows"] == len(reference["rows"])
    # --batch-size only cuts the work: another one resumes the same folder.
    rc, calls, _, _ = _run(out, ["--batch-size", "3"])
    assert rc == 0 and calls == 0 and _snapshot(out)["approx.csv"] == before["approx.csv"]


@pytest.mark.parametrize("fail_at, kept", [(2, 5), (5, N_MAP + 2)])  # in the map; in the width search
def test_interrupt_keeps_finished_batches_and_resume_completes(reference, tmp_path, fail_at, kept):
    out = tmp_path / "run"
    rc, calls, _, _ = _run(out, fail_at=fail_at)
    assert rc == 130 and calls == fail_at
    partial = _rows(out)
    assert len(partial) == kept
    _assert_rows_close(partial, reference["rows"][:kept])
    rc, calls, stdout, _ = _run(out)
    assert rc == 0 and calls == reference["calls"] - (fail_at - 1)  # nothing finished is recomputed
    _assert_rows_close(_rows(out), reference["rows"])
    assert _table(stdout) == _table(reference["stdout"])


@pytest.mark.parametrize("damage, message", [
    (["--starts", "3"], r"differs in \['starts'\]"),
    (["--omega", "1,2,4"], r"differs in \['params'\]"),
    (["--kernel", "bump"], r"differs in \['kernel'\]"),
    ("foreign", "does not write"),
    ("manifest", "not a readable manifest"),
])
def test_mismatch_or_damage_raises_and_changes_nothing(reference, tmp_path, damage, message):
    out = tmp_path / "run"
    shutil.copytree(reference["out"], out)
    argv = ARGV + (damage if isinstance(damage, list) else [])
    if damage == "foreign":
        (out / "notes.txt").write_text("mine")
    elif damage == "manifest":
        (out / "approx.json").write_text("{not json")
    before = _snapshot(out)
    parser = argparse.ArgumentParser()
    cli_approx.add_parser(parser.add_subparsers())
    args = parser.parse_args([*argv, "--out", str(out), "--no-progress"])
    fit = CountingFit()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_maps, "_fit_pairs", fit)
        with pytest.raises(StoreError, match=message):
            args.func(args)
    assert fit.calls == 0 and _snapshot(out) == before


def test_cli_reports_store_error(reference, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(reference["out"], out)
    before = _snapshot(out)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JAXMEM_NO_CACHE", "1")
        assert main([*ARGV, "--norm", "L1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "jaxmem approx: error" in err and "norm" in err and "nothing was changed" in err
    assert _snapshot(out) == before


def test_compilations_do_not_grow_with_batches(reference):
    # 3 map batches (the last padded from 2 to 5 rows) and 3 bisection steps: one program for
    # the map, one for the width search.
    assert reference["calls"] >= 6
    assert reference["traces"] == 2


def test_bad_batch_size_leaves_no_folder(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*ARGV, "--batch-size", "0", "--out", str(out)]) == 2
    assert "--batch-size must be a positive integer" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("argv, params, widths", [
    (["--omega", "1,2"], [1.0, 2.0], [1, 2, 3, 4, 6, 8, 12, 16]),
    (["--omega", "0.5", "1", "0.5", "--widths", "4", "2,1"], [0.5, 1.0], [1, 2, 4]),
    (["--kernel", "exp", "--beta", "0.5:2:0.5", "--widths", "1:3:1"], [0.5, 1.0, 1.5, 2.0], [1, 2, 3]),
])
def test_grids_are_lists_or_ranges(argv, params, widths):
    parser = argparse.ArgumentParser()
    cli_approx.add_parser(parser.add_subparsers())
    settings = cli_approx.settings_from_args(parser.parse_args(["approx", *argv]))
    assert list(settings.params) == params and list(settings.widths) == widths
