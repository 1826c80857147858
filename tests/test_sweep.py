"""Sweeps at scale: one compilation per (optimiser, parameterisation) group, padded
widths and traced hyper-parameters that reproduce single runs, seeds, sharding over several
devices, and resumable, never-overwritten output folders (`run_plateau`, `RowStore`, CLI).

Cost: the discrete optimisers ("gd") compile in ~2 s and carry most checks; the gradient flow
compiles in ~20-50 s on a 2-core machine, so it is compiled once per module (fixture) and its
checks are marked slow.
"""

import csv
import dataclasses
import json
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import jaxmem
from jaxmem import PlateauSettings, RowStore, StoreError, internal, run_plateau
from jaxmem._experiments import sweep as _sweep

from .helpers import count_traces

# The gd grid: lags with a plateau of a few hundred to a few thousand steps at these rates.
GD_LAGS = (8.0, 9.5, 11.0)
GD_WIDTHS = (3, 5, 8)
GD_LRS = (0.01, 0.02, 0.05)
GD_MAX_STEPS = 50_000
RESULT_FIELDS = ("tau_param", "tau_loss", "steps", "status")


def _by_key(rows):
    return {r["key"]: r for r in rows}


def _results(row):
    return tuple(row[k] for k in RESULT_FIELDS)


@pytest.fixture(autouse=True)
def _no_persistent_cache(monkeypatch):
    # The CLI turns on JAX's persistent compilation cache in ~/.cache; not in tests.
    monkeypatch.setenv("JAXMEM_NO_CACHE", "1")


# ---------------------------------------------------------------------------------------------
# (a)-(c): one compilation per group; padded widths and traced learning rates = single runs
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gd_sweep():
    """A 3 lags × 3 widths × 3 lrs gd grid in batches of 4 (7 batches), its trace count."""
    grid = jaxmem.plateau_grid(GD_LAGS, widths=GD_WIDTHS, optimizers=("gd",), lrs=GD_LRS)
    # delta_param = 0.051: a static setting no other test uses, so this group traces afresh.
    with count_traces("advance_slots") as traces:
        rows = jaxmem.plateau_sweep(grid, batch_size=4, train_max_steps=GD_MAX_STEPS, delta_param=0.051,
                                    progress=False)
    return grid, rows, traces.n


def test_grid_is_complete(gd_sweep):
    grid, rows, _ = gd_sweep
    assert len(grid) == len(GD_LAGS) * len(GD_WIDTHS) * len(GD_LRS)
    assert sorted(r["key"] for r in rows) == sorted(jaxmem.config_key(c) for c in grid)
    assert all(r["status"] == "successful" for r in rows), [r for r in rows if r["status"] != "successful"]
    # Batches were several (4 configurations each), and the rows are ordered by lag.
    assert len({r["batch_wall_s"] for r in rows}) > 1


def test_gd_group_compiles_once(gd_sweep):
    *_, traces = gd_sweep
    assert traces == 1  # 27 configurations, 3 widths, 3 lags, 3 lrs, 7 batches: one trace


def test_gd_group_no_retrace_for_other_points(gd_sweep):
    """Other lags, widths (same largest), lrs and seeds, same batch shape: nothing compiles."""
    grid = jaxmem.plateau_grid((7.0, 8.5, 10.0, 12.0), widths=(2, 8), optimizers=("gd",), lrs=(0.03, 0.04),
                               seeds=(0, 5))
    with count_traces("advance_slots") as traces:
        rows = jaxmem.plateau_sweep(grid, batch_size=4, train_max_steps=GD_MAX_STEPS, delta_param=0.051,
                                    perturbation=0.0, progress=False)
    assert traces.n == 0
    assert len(rows) == len(grid) == 32


def test_discrete_optimisers_run_in_bounded_chunks(gd_sweep):
    """A compiled call advances a slot by at most `train_chunk_steps` iterations (so an
    interrupt is answered between short calls), and the chunking changes no number."""
    grid, rows, _ = gd_sweep
    stats = {}
    small = jaxmem.plateau_sweep(grid, batch_size=4, train_max_steps=GD_MAX_STEPS, delta_param=0.051,
                                 progress=False, train_chunk_steps=500, stats=stats)
    longest = max(r["steps"] for r in small)
    assert longest > 2 * 500
    assert stats["gd"] >= math.ceil(longest / 500)
    assert {r["key"]: _results(r) for r in small} == {r["key"]: _results(r) for r in rows}


@pytest.mark.parametrize("width", [3, 5, 8])
def test_padded_width_and_traced_lr_equal_single_runs(gd_sweep, width):
    """A row of width m (padded to 8 with a mask; 8 = unpadded) and learning rate η equals
    `jaxmem.train` on `canonical_model(m)`: identical iteration counts and times."""
    _, rows, _ = gd_sweep
    mine = [r for r in rows if r["width"] == width]
    assert len(mine) == len(GD_LAGS) * len(GD_LRS)
    for r in mine:
        res = jaxmem.train(jaxmem.canonical_model(width), jaxmem.plateau_target(r["lag"]), "gd", lr=r["lr"],
                           max_steps=GD_MAX_STEPS, delta_param=0.051, delta_loss=0.05)
        assert bool(res.reached_param) and bool(res.reached_loss)
        assert r["tau_param"] == float(res.tau_param)
        assert r["tau_loss"] == float(res.tau_loss)
        assert r["steps"] == int(res.steps)


def test_lrs_give_different_times(gd_sweep):
    """Three learning rates in one compiled program: the lr really is per-configuration data."""
    _, rows, _ = gd_sweep
    for lag in GD_LAGS:
        steps = {r["lr"]: r["steps"] for r in rows if r["lag"] == lag and r["width"] == 5}
        assert len(set(steps.values())) == 3
        # τ = kη agrees across rates to first order (the flow limit): within 10%.
        taus = [r["tau_loss"] for r in rows if r["lag"] == lag and r["width"] == 5]
        assert max(taus) / min(taus) < 1.1


def test_widths_matter(gd_sweep):
    """The mask is not a no-op: different widths give different trajectories."""
    _, rows, _ = gd_sweep
    steps = {r["width"]: r["steps"] for r in rows if r["lag"] == 11.0 and r["lr"] == 0.01}
    assert len(set(steps.values())) == 3


# ---------------------------------------------------------------------------------------------
# (d) seeds
# ---------------------------------------------------------------------------------------------


def test_initial_params_seeds_and_mask():
    dt = jnp.float64
    a0, w0, mask = internal.canonical_params(jnp.int32(4), 6, dtype=dt, key=jr.key(0), perturbation=0.0)
    np.testing.assert_array_equal(np.asarray(mask), [1, 1, 1, 1, 0, 0])
    np.testing.assert_array_equal(np.asarray(a0), [1, 0, 0, 0, 0, 0])
    np.testing.assert_allclose(np.asarray(w0[:4]), np.geomspace(0.5, 4.0, 4), rtol=1e-15)
    p = [internal.canonical_params(jnp.int32(4), 6, dtype=dt, key=jr.key(s), perturbation=0.1) for s in (0, 0, 1)]
    for x, y in zip(p[0], p[1]):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert not np.array_equal(np.asarray(p[0][0]), np.asarray(p[2][0]))
    assert not np.array_equal(np.asarray(p[0][1]), np.asarray(p[2][1]))
    # Padded modes are untouched by the perturbation: a = 0, w = 1 (inactive).
    for a, w, _ in p:
        np.testing.assert_array_equal(np.asarray(a[4:]), 0.0)
        np.testing.assert_array_equal(np.asarray(w[4:]), 1.0)
        assert np.all(np.asarray(w[:4]) > 0)


def test_seeds_with_perturbation():
    """Seeds differ when perturbation > 0; the same seed gives the same row in another batch
    position, and with perturbation 0 every seed is the canonical run."""
    lags, seeds = (10.0, 12.0), (0, 1, 2, 3)
    grid = jaxmem.plateau_grid(lags, widths=(4, 8), seeds=seeds, optimizers=("gd",), lrs=(0.01,))
    kw = dict(batch_size=4, train_max_steps=GD_MAX_STEPS, delta_param=0.052, progress=False)
    pert = _by_key(jaxmem.plateau_sweep(grid, perturbation=0.1, **kw))
    again = _by_key(jaxmem.plateau_sweep(grid[::-1], perturbation=0.1, order="given", **kw))
    plain = _by_key(jaxmem.plateau_sweep(grid, perturbation=0.0, **kw))
    for key in pert:
        assert _results(pert[key]) == _results(again[key])
    for lag in lags:
        for m in (4, 8):
            rows = [r for r in pert.values() if r["lag"] == lag and r["width"] == m]
            assert len({r["steps"] for r in rows}) == len(seeds), rows
            canon = [r for r in plain.values() if r["lag"] == lag and r["width"] == m]
            assert len({_results(r) for r in canon}) == 1


# ---------------------------------------------------------------------------------------------
# (e) sharding over 4 (forced host) devices, in a subprocess
# ---------------------------------------------------------------------------------------------

SHARD_GRID = dict(lags=[8.0, 9.0, 10.0, 11.0, 12.0], widths=[3, 6], seeds=[0, 1], lrs=[0.01, 0.03])
SHARD_SWEEP = dict(batch_size=6, train_max_steps=GD_MAX_STEPS, perturbation=0.05, progress=False)

_SHARD_SCRIPT = """
import json, sys
import jax
jax.config.update("jax_enable_x64", True)
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec
import jaxmem
from jaxmem._experiments import sweep as _sweep

traces = []
jax.monitoring.register_event_duration_secs_listener(
    lambda event, d, **kw: traces.append(1) if event == "/jax/core/compile/jaxpr_trace_duration"
    and kw.get("fun_name") == "advance_slots" else None)
grid_kw, sweep_kw = json.loads(sys.argv[1]), json.loads(sys.argv[2])
lags = grid_kw.pop("lags")
grid = jaxmem.plateau_grid(lags, optimizers=(grid_kw.pop("optimizer", "gd"),), **grid_kw)
seen = []
orig = _sweep.advance_slots
def spy(fn, mesh, slots, refill, *xs):
    seen.append(len(refill.sharding.device_set))
    return orig(fn, mesh, slots, refill, *xs)
_sweep.advance_slots = spy
rows = jaxmem.plateau_sweep(grid, **sweep_kw)
json.dump(dict(devices=len(jax.devices()), platform=jax.devices()[0].platform,
               input_devices=seen, traces=len(traces), rows=rows), sys.stdout)
"""


def test_sharded_run_equals_one_device(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=4",
               JAXMEM_NO_CACHE="1")
    proc = subprocess.run(
        [sys.executable, "-c", _SHARD_SCRIPT, json.dumps(SHARD_GRID), json.dumps(SHARD_SWEEP)],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    sharded = json.loads(proc.stdout)
    assert sharded["devices"] == 4 and sharded["platform"] == "cpu"
    # Every batch's inputs were laid out over all 4 devices (batch 6 rounded up to 8).
    assert sharded["input_devices"] and set(sharded["input_devices"]) == {4}
    assert sharded["traces"] == 1

    kw = dict(SHARD_GRID)
    grid = jaxmem.plateau_grid(kw.pop("lags"), optimizers=("gd",), **kw)
    assert len(jax.devices()) == 1
    one = _by_key(jaxmem.plateau_sweep(grid, **SHARD_SWEEP))
    many = _by_key(sharded["rows"])
    assert set(one) == set(many) and len(one) == len(grid) == 40
    for key in one:
        assert _results(one[key]) == _results(many[key]), key


def test_flow_on_several_cpu_devices_runs_on_one_with_a_warning():
    # Concurrent XLA:CPU devices hang on the flow's program (benchmarks/RESULTS.md); the sweep
    # must run flow batches on one device instead of hanging, and say so.
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=2",
               JAXMEM_NO_CACHE="1")
    grid_kw = dict(lags=[8.0, 9.0, 10.0], widths=[4], optimizer="flow")
    proc = subprocess.run(
        [sys.executable, "-c", _SHARD_SCRIPT, json.dumps(grid_kw), json.dumps(dict(batch_size=4, progress=False))],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert out["devices"] == 2 and set(out["input_devices"]) == {1}
    assert "flow batches run on one of them" in proc.stderr
    assert [r["status"] for r in out["rows"]] == ["successful"] * 3


# ---------------------------------------------------------------------------------------------
# (f), (g) resumption, refusal to overwrite, interruption
# ---------------------------------------------------------------------------------------------


def _settings(**kw):
    base = dict(lags=(8.0, 9.0, 10.0, 11.0), widths=(4, 6), seeds=(0,), optimizers=("gd",), lrs=(0.02,),
                train_max_steps=GD_MAX_STEPS, batch_size=2, preset="test")
    base.update(kw)
    return PlateauSettings(**base)


def _snapshot(folder):
    return {name: (folder / name).read_bytes() for name in sorted(os.listdir(folder))}


def _csv_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _manifest(folder):
    return json.loads((folder / "plateau.json").read_text())


@pytest.fixture
def count_batches(monkeypatch):
    calls = []
    orig = _sweep.advance_slots

    def spy(fn, mesh, slots, refill, active, *xs):
        calls.append(int(np.asarray(active).sum()))  # the slots that hold a configuration
        return orig(fn, mesh, slots, refill, active, *xs)

    monkeypatch.setattr(_sweep, "advance_slots", spy)
    return calls


def test_resume_computes_nothing_twice(tmp_path, count_batches):
    out = tmp_path / "run"
    first = run_plateau(_settings(), out, progress=False, log=None)
    assert len(first) == 8 and len(count_batches) >= 4  # 8 rows in 2 slots
    assert sorted(os.listdir(out)) == ["plateau.csv", "plateau.json", "plateau.png"]
    m = _manifest(out)
    assert m["timings"]["new_rows"] == 8 and m["timings"]["resumed_rows"] == 0
    assert m["settings"] == json.loads(json.dumps(dataclasses.asdict(_settings())))
    csv_bytes = (out / "plateau.csv").read_bytes()

    # The same command again: nothing computed, nothing appended.
    count_batches.clear()
    again = run_plateau(_settings(), out, progress=False, log=None)
    assert count_batches == []
    assert _manifest(out)["timings"]["new_rows"] == 0
    assert _manifest(out)["timings"]["resumed_rows"] == 8
    assert (out / "plateau.csv").read_bytes() == csv_bytes
    assert {r["key"]: _results(r) for r in again} == {r["key"]: _results(r) for r in first}

    # Lose the last three rows: exactly those are recomputed, to the same values.
    lines = csv_bytes.decode().splitlines(keepends=True)
    lost = [r["key"] for r in _csv_rows(out / "plateau.csv")[-3:]]
    (out / "plateau.csv").write_text("".join(lines[:-3]))
    count_batches.clear()
    third = run_plateau(_settings(), out, progress=False, log=None)
    assert _manifest(out)["timings"]["new_rows"] == 3
    assert len(count_batches) >= 2 and max(count_batches) <= 2  # 3 rows in 2 slots
    rows = _csv_rows(out / "plateau.csv")
    assert len(rows) == 8 and len({r["key"] for r in rows}) == 8
    assert [r["key"] for r in rows[-3:]] != [] and set(r["key"] for r in rows[-3:]) == set(lost)
    assert {r["key"]: _results(r) for r in third} == {r["key"]: _results(r) for r in first}


@pytest.mark.parametrize("change", [dict(lags=(8.0, 9.0, 10.0, 12.0)), dict(lrs=(0.03,)), dict(batch_size=4)])
def test_other_settings_refused_files_unchanged(tmp_path, change, count_batches):
    out = tmp_path / "run"
    run_plateau(_settings(lags=(8.0, 9.0, 10.0)), out, progress=False, log=None)
    before = _snapshot(out)
    count_batches.clear()
    with pytest.raises(StoreError, match="other settings"):
        run_plateau(_settings(**{"lags": (8.0, 9.0, 10.0), **change}), out, progress=False, log=None)
    assert _snapshot(out) == before
    assert count_batches == []


def test_foreign_file_refused(tmp_path, count_batches):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match="does not write"):
        run_plateau(_settings(), out, progress=False, log=None)
    assert _snapshot(out) == {"notes.txt": b"mine"}
    # ... also next to a finished run.
    out2 = tmp_path / "run2"
    run_plateau(_settings(lags=(8.0, 9.0)), out2, progress=False, log=None)
    (out2 / "extra.csv").write_text("x\n")
    before = _snapshot(out2)
    count_batches.clear()
    with pytest.raises(StoreError, match="extra.csv"):
        run_plateau(_settings(lags=(8.0, 9.0)), out2, progress=False, log=None)
    assert _snapshot(out2) == before and count_batches == []


@pytest.mark.parametrize(
    "damage", ["garbage", "wrong_header", "empty_csv", "foreign_row", "manifest"]
)
def test_corrupt_folder_refused(tmp_path, damage, count_batches):
    out = tmp_path / "run"
    run_plateau(_settings(lags=(8.0, 9.0)), out, progress=False, log=None)
    csv_path, man = out / "plateau.csv", out / "plateau.json"
    text = csv_path.read_text()
    if damage == "empty_csv":
        csv_path.write_text("")
    elif damage == "foreign_row":  # well-formed, but of a configuration outside the grid
        csv_path.write_text(text.replace("|L=9.0|", "|L=99.0|"))
    elif damage == "garbage":
        csv_path.write_bytes(text.encode() + b"\x00\xff,,,\n1,2\n")
    elif damage == "wrong_header":
        csv_path.write_text(text.replace("tau_loss", "tau_lost", 1))
    elif damage == "manifest":
        man.write_text(man.read_text()[:30])
    before = _snapshot(out)
    count_batches.clear()
    with pytest.raises(StoreError):
        run_plateau(_settings(lags=(8.0, 9.0)), out, progress=False, log=None)
    assert _snapshot(out) == before and count_batches == []


@pytest.mark.parametrize("damage", ["torn_row", "no_csv"])
def test_a_run_killed_while_writing_resumes(tmp_path, damage, count_batches):
    """What a SIGKILL can leave: the last row cut in the middle (a write killed half-way), or
    the manifest without the CSV (killed while creating the files). The same command drops the
    torn row, recomputes what is missing, and leaves no torn or duplicate row."""
    out = tmp_path / "run"
    reference = run_plateau(_settings(lags=(8.0, 9.0)), out, progress=False, log=None)
    csv_path = out / "plateau.csv"
    text = csv_path.read_text()
    if damage == "torn_row":
        csv_path.write_text(text[: len(text) - 40])
    else:
        csv_path.unlink()
    count_batches.clear()
    again = run_plateau(_settings(lags=(8.0, 9.0)), out, progress=False, log=None)
    assert count_batches  # something was recomputed
    rows = _csv_rows(csv_path)
    assert len(rows) == len(reference) and len({r["key"] for r in rows}) == len(rows)
    assert csv_path.read_text().endswith("\n") and csv_path.read_text().count("\n") == len(rows) + 1
    assert {r["key"]: _results(r) for r in again} == {r["key"]: _results(r) for r in reference}


def test_output_path_is_a_file(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(StoreError, match="not a folder"):
        RowStore(str(path), {"a": 1}, ("x",))
    assert path.read_text() == "x"


def test_interrupt_keeps_finished_batches(tmp_path, monkeypatch):
    out = tmp_path / "run"
    orig = RowStore.append
    seen = []

    def append_then_interrupt(self, rows):
        orig(self, rows)
        seen.append(len(rows))
        raise KeyboardInterrupt  # Ctrl-C right after the first batch was written

    monkeypatch.setattr(RowStore, "append", append_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_plateau(_settings(), out, progress=False, log=None)
    assert seen == [2]
    on_disk = _csv_rows(out / "plateau.csv")
    assert len(on_disk) == 2
    assert all(r["status"] == "successful" for r in on_disk)
    assert "timings" not in _manifest(out)  # the run never finished
    monkeypatch.setattr(RowStore, "append", orig)

    rows = run_plateau(_settings(), out, progress=False, log=None)
    assert _manifest(out)["timings"]["new_rows"] == 6
    assert len(rows) == 8
    final = _csv_rows(out / "plateau.csv")
    assert len(final) == 8 and len({r["key"] for r in final}) == 8
    assert final[:2] == on_disk
    reference = run_plateau(_settings(), None, progress=False, log=None)
    assert {r["key"]: _results(r) for r in rows} == {r["key"]: _results(r) for r in reference}


def test_interrupt_in_cli_exits_130(tmp_path, monkeypatch, capsys):
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    from jaxmem._cli import plateau as cli_plateau

    monkeypatch.setattr(cli_plateau, "run_plateau", interrupted)
    code = internal.main(["plateau", "--optimizer", "gd", "--lags", "8", "--out", str(tmp_path / "o"), "--no-progress"])
    assert code == 130
    assert "interrupted" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# (h) the CLI
# ---------------------------------------------------------------------------------------------


def test_cli_plateau_grid(tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["plateau", "--optimizer", "gd", "--lags", "6:10:2", "--width", "4", "8", "--seeds", "2",
            "--lr", "0.01", "0.02", "--out", str(out), "--no-progress"]
    assert internal.main(argv) == 0
    rows = _csv_rows(out / "plateau.csv")
    combos = {(float(r["lag"]), int(r["width"]), int(r["seed"]), float(r["lr"])) for r in rows}
    expected = {(L, m, s, lr) for L in (6.0, 8.0, 10.0) for m in (4, 8) for s in (0, 1) for lr in (0.01, 0.02)}
    assert combos == expected and len(rows) == 24
    assert {r["optimizer"] for r in rows} == {"gd"}
    assert all(r["status"] == "successful" for r in rows)
    m = _manifest(out)
    assert m["settings"]["perturbation"] == 0.01  # the default with --seeds > 1
    assert m["timings"]["new_rows"] == 24
    assert (out / "plateau.png").exists()
    capsys.readouterr()
    # Resuming from the CLI: nothing new.
    assert internal.main(argv) == 0
    assert "resuming: 24 of 24" in capsys.readouterr().out
    assert _manifest(out)["timings"]["new_rows"] == 0
    assert len(_csv_rows(out / "plateau.csv")) == 24


@pytest.mark.parametrize(
    "args, message",
    [
        (["--lags", "0", "8"], "lags must be positive"),
        (["--lags", "8", "-2.5"], "lags must be positive"),
        (["--lags", "8", "--width", "0"], "widths must be positive"),
        (["--lags", "8", "--width", "4", "0"], "widths must be positive"),
        (["--omegas", "0"], "omegas must be finite and > 0"),
        (["--lags", "8", "--seeds", "0"], "--seeds must be >= 1"),
        (["--lags", "8", "--lr", "0"], "learning rates must be finite and > 0"),
    ],
)
def test_cli_invalid_grid(tmp_path, capsys, args, message):
    out = tmp_path / "cli"
    code = internal.main(["plateau", "--optimizer", "gd", *args, "--out", str(out), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert "error" in err and message in err
    assert not out.exists()  # nothing was created


def test_cli_bad_range_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        internal.main(["plateau", "--optimizer", "gd", "--lags", "8:4:-1", "--out", str(tmp_path / "o")])
    assert e.value.code == 2
    assert "STEP > 0" in capsys.readouterr().err


def test_cli_wrong_folder_exits_2(tmp_path, capsys):
    out = tmp_path / "cli"
    base = ["plateau", "--optimizer", "gd", "--width", "4", "--out", str(out), "--no-progress"]
    assert internal.main([*base, "--lags", "8", "9"]) == 0
    before = _snapshot(out)
    capsys.readouterr()
    assert internal.main([*base, "--lags", "8", "10"]) == 2
    assert "other settings" in capsys.readouterr().err
    assert _snapshot(out) == before


# ---------------------------------------------------------------------------------------------
# The gradient flow group (compiles in ~20-50 s on 2 cores: once for the module)
# ---------------------------------------------------------------------------------------------

FLOW_LAGS = (9.0, 11.0)
FLOW_WIDTHS = (3, 6)


@pytest.fixture(scope="module")
def flow_sweep():
    grid = jaxmem.plateau_grid(FLOW_LAGS, widths=FLOW_WIDTHS, optimizers=("flow",))
    with count_traces("advance_slots") as first:
        rows = jaxmem.plateau_sweep(grid, batch_size=2, progress=False)  # 64 steps per call
    # Other lags and widths (same largest width), same batch shape: no new compilation.
    grid2 = jaxmem.plateau_grid((8.0, 10.0, 12.5), widths=(4, 6), optimizers=("flow",))
    with count_traces("advance_slots") as second:
        rows2 = jaxmem.plateau_sweep(grid2, batch_size=2, progress=False)
    return rows, first.n, rows2, second.n


@pytest.mark.slow
def test_flow_group_compiles_once(flow_sweep):
    rows, first, rows2, second = flow_sweep
    assert first == 1 and second == 0
    assert len(rows) == 4 and len(rows2) == 6
    assert all(r["status"] == "successful" for r in rows + rows2), [(r["lag"], r["width"], r["status"]) for r in rows + rows2]
    # Plateaus lengthen with the lag, for every width.
    for rs in (rows, rows2):
        for m in {r["width"] for r in rs}:
            taus = [r["tau_loss"] for r in sorted(rs, key=lambda r: r["lag"]) if r["width"] == m]
            assert all(np.diff(taus) > 0)


@pytest.mark.slow
def test_flow_padded_row_matches_hitting_times(flow_sweep):
    """The width-3 row (padded to 6) against `jaxmem.hitting_times` on the unpadded
    `canonical_model(3)`. Not bit-identical: the vmapped batch solves its stage equations with
    batched linear algebra, whose rounding differs from the unbatched solve, and the adaptive
    step sequence then differs by a few steps (the width-6 rows, unpadded, differ likewise):
    the times agree to ~1e-7, the accuracy of the flow at rtol = 1e-8 (tests/test_flow.py:
    ~1e-7 against scipy's Radau)."""
    rows = flow_sweep[0]
    model = jaxmem.canonical_model(3)
    for r in (r for r in rows if r["width"] == 3):
        h = jaxmem.hitting_times(model, jaxmem.plateau_target(r["lag"]))
        assert bool(h.result == jaxmem.RESULTS.successful) and bool(h.reached_param) and bool(h.reached_loss)
        np.testing.assert_allclose(r["tau_param"], float(h.tau_param), rtol=1e-6)
        np.testing.assert_allclose(r["tau_loss"], float(h.tau_loss), rtol=1e-6)
        assert math.isfinite(r["tau_loss"])


@pytest.mark.slow
def test_flow_continuous_batching_matches_single_problems(flow_sweep):
    """Every flow row — problems run 64 steps per call in 2 slots, each slot refilled as its
    problem finishes, so that problems are split over several calls and share calls with
    problems at other stages — against `jaxmem.hitting_times` on the same padded, masked model
    run alone. The split does not change the step sequence (the step size and controller state
    are carried over): the same steps, and times equal up to the rounding of batched against
    unbatched LU, within the event bisection's bracket (1e-9 + 1e-10·τ)."""
    rows = flow_sweep[0] + flow_sweep[2]
    assert max(r["steps"] for r in rows) > 2 * 64  # some problems span several calls
    for r in rows:
        a, w, mask = internal.canonical_params(jnp.asarray(r["width"], jnp.int32), 6, dtype=jnp.float64,
                                               key=jr.key(r["seed"]), perturbation=0.0)
        h = jaxmem.hitting_times(jaxmem.DiagonalRNN(a, w, mask=mask), jaxmem.plateau_target(r["lag"]))
        assert int(h.steps) == r["steps"], r["key"]
        np.testing.assert_allclose(r["tau_param"], float(h.tau_param), rtol=1e-9, atol=2e-9)
        np.testing.assert_allclose(r["tau_loss"], float(h.tau_loss), rtol=1e-9, atol=2e-9)


@pytest.mark.slow
def test_long_lag_solver_in_a_sweep_matches_single_problems():
    """`solver="kvaerno5"` in a sweep: 2 slots, 64 steps per call, short and long lags sharing
    calls and refilled slots, against `jaxmem.hitting_times` with `long_lag_solver()` run
    alone. Each member keeps its own first-same-as-last stage across calls, so its steps do not
    depend on its batch (before, a member re-evaluated its first stage whenever any member of the
    batch started afresh, and L = 56 took 3,700 steps in a 25-lag sweep against 1,066 alone)."""
    lags = (8.0, 12.0, 40.0, 44.0)
    rows = jaxmem.plateau_sweep(jaxmem.plateau_grid(lags, optimizers=("flow",)), delta_loss=0.01, batch_size=2,
                                solver="kvaerno5", progress=False)
    search = jaxmem.HittingTimeSearch(solver=jaxmem.long_lag_solver(), delta_loss=0.01)
    for r in rows:
        h = jaxmem.hitting_times(jaxmem.canonical_model(), jaxmem.plateau_target(r["lag"]), search=search)
        assert r["status"] == "successful" and bool(h.result == jaxmem.RESULTS.successful)
        np.testing.assert_allclose(r["tau_param"], float(h.tau_param), rtol=1e-7)
        np.testing.assert_allclose(r["tau_loss"], float(h.tau_loss), rtol=1e-7)
        assert abs(r["steps"] - int(h.steps)) <= 0.05 * int(h.steps), (r["lag"], r["steps"], int(h.steps))


def test_chunk_steps_validated():
    grid = jaxmem.plateau_grid([8.0], widths=[4], optimizers=("flow",))
    with pytest.raises(ValueError, match="chunk_steps must be a positive integer; got 0"):
        jaxmem.plateau_sweep(grid, chunk_steps=0, progress=False)


# ---------------------------------------------------------------------------------------------
# Several processes on one host (jax.distributed, gloo): `jaxmem plateau --processes 2`
# ---------------------------------------------------------------------------------------------


def _cli_run(args, env_extra=None, timeout=600):
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAXMEM_NO_CACHE="1", **(env_extra or {}))
    env.pop("XLA_FLAGS", None)
    return subprocess.run([sys.executable, "-m", "jaxmem", "plateau", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


@pytest.mark.slow
def test_two_processes_equal_one(tmp_path):
    """The same flow grid by two processes joined by jax.distributed (each runs its own share
    of the queue in its own slot, exchanging finished rows after every call here, with shares
    of unequal length; process 0 writes) and by one: the same rows. A rerun of the
    two-process command resumes (both processes skip the finished rows) and computes
    nothing."""
    grid = ["--optimizer", "flow", "--lags", "8", "9", "10", "11", "12", "--width", "4", "--batch-size", "2",
            "--delta-loss", "0.05", "--no-progress"]
    two = _cli_run([*grid, "--processes", "2", "--out", str(tmp_path / "two")], env_extra={"JAXMEM_EXCHANGE_S": "0"})
    assert two.returncode == 0, two.stderr[-3000:]
    assert "devices 2" in two.stdout  # process 0's view: one device per process
    one = _cli_run([*grid, "--out", str(tmp_path / "one")])
    assert one.returncode == 0, one.stderr[-3000:]
    rows_two = _by_key(_csv_rows(tmp_path / "two" / "plateau.csv"))
    rows_one = _by_key(_csv_rows(tmp_path / "one" / "plateau.csv"))
    assert set(rows_two) == set(rows_one) and len(rows_one) == 5
    for key, r in rows_one.items():
        assert r["status"] == rows_two[key]["status"] == "successful"
        np.testing.assert_allclose(float(rows_two[key]["tau_param"]), float(r["tau_param"]), rtol=1e-9)
        np.testing.assert_allclose(float(rows_two[key]["tau_loss"]), float(r["tau_loss"]), rtol=1e-9)
    before = _snapshot(tmp_path / "two")
    again = _cli_run([*grid, "--processes", "2", "--out", str(tmp_path / "two")])
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming: 5 of 5" in again.stdout
    assert _snapshot(tmp_path / "two")["plateau.csv"] == before["plateau.csv"]


def test_two_processes_refused_folder_stops_both(tmp_path):
    # Process 0 refuses a foreign folder before the others may read it: the launcher stops
    # them and returns process 0's status (no hang at the barrier).
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    proc = _cli_run(["--optimizer", "gd", "--lags", "8", "--processes", "2", "--out", str(out)], timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "does not write" in proc.stderr
    assert (out / "notes.txt").read_text() == "mine" and sorted(os.listdir(out)) == ["notes.txt"]


def test_processes_validated(tmp_path, capsys):
    assert internal.main(["plateau", "--lags", "8", "--processes", "0", "--out", str(tmp_path / "x")]) == 2
    assert "--processes must be >= 1; got 0" in capsys.readouterr().err


def test_read_only_store_never_writes(tmp_path):
    # What the other processes of a multi-process run open: nothing is created or written.
    cols = ("key", "x")
    missing = tmp_path / "missing"
    ro = RowStore(str(missing), {"a": 1}, cols, read_only=True)
    assert ro.done_rows == [] and not missing.exists()
    rw = RowStore(str(tmp_path / "run"), {"a": 1}, cols)
    rw.append([{"key": "k1", "x": 1.5}])
    before = _snapshot(tmp_path / "run")
    ro = RowStore(str(tmp_path / "run"), {"a": 1}, cols, read_only=True)
    assert ro.done_rows == [{"key": "k1", "x": 1.5}]
    with pytest.raises(StoreError, match="read-only"):
        ro.append([{"key": "k2", "x": 2.0}])
    with pytest.raises(StoreError, match="other settings"):
        RowStore(str(tmp_path / "run"), {"a": 2}, cols, read_only=True)
    assert _snapshot(tmp_path / "run") == before


def test_cpu_groups_split_the_cpus():
    from jaxmem.internal import cpu_groups

    cpus = sorted(os.sched_getaffinity(0))
    assert cpu_groups(1) == [cpus]
    assert cpu_groups(len(cpus) + 1) is None
    groups = cpu_groups(len(cpus))
    assert sorted(c for g in groups for c in g) == cpus and all(len(g) == 1 for g in groups)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs to tell pinned from not")
def test_pin_threads_pins_every_thread():
    # In a child process: threads started before and after the call all end up on one CPU.
    code = (
        "import os, threading, time\n"
        "from jaxmem.internal import pin_threads\n"
        "ev = threading.Event(); t = threading.Thread(target=ev.wait); t.start()\n"
        "cpu = min(os.sched_getaffinity(0)); pin_threads([cpu])\n"
        "u = threading.Thread(target=ev.wait); u.start()\n"
        "masks = {tid: os.sched_getaffinity(int(tid)) for tid in os.listdir('/proc/self/task')}\n"
        "ev.set(); t.join(); u.join()\n"
        "assert len(masks) >= 3 and all(m == {cpu} for m in masks.values()), masks\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_failed_rows_are_counted_and_left_out_of_the_fits():
    def row(lag, tau, status, optimizer="gd"):
        return dict(optimizer=optimizer, parameterization="identity", width=10, lr=0.01, momentum=float("nan"),
                    lag=lag, seed=0, tau_param=tau, tau_loss=tau, status=status)

    good = [row(8.0, 1.0, "successful"), row(10.0, math.e, "successful")]
    bad = [row(12.0, 1.0, "diverged"), row(14.0, 5.0, "max_steps_reached")]
    fits = internal.summarize(good + bad)
    assert [f["n"] for f in fits] == [2, 2]
    np.testing.assert_allclose([f["slope"] for f in fits], 0.5)  # log τ rises by 1 over 2 lags
    from jaxmem._experiments.report import failures_note

    note = failures_note(good + bad)
    assert "2 of 4 configurations failed" in note and "diverged: 1" in note and "max_steps_reached: 1" in note
    assert failures_note(good) is None


@pytest.mark.parametrize("kw, message", [
    (dict(batch_size=0), "batch_size must be a positive integer"),
    (dict(train_max_steps=2.5), "train_max_steps must be a positive integer"),
    (dict(delta_loss=-0.1), "delta_loss must be finite and > 0"),
    (dict(rtol=2.0), "rtol"),
    (dict(perturbation=-1.0), "perturbation"),
    (dict(solver="radau"), "unknown flow solver 'radau'"),
])
def test_plateau_sweep_refuses_bad_settings(kw, message):
    grid = jaxmem.plateau_grid([8.0], optimizers=("gd",))
    with pytest.raises((ValueError, TypeError), match=message):
        jaxmem.plateau_sweep(grid, progress=False, **kw)


def test_launch_local_stops_when_a_later_process_fails(tmp_path):
    # Process 1 fails at once while process 0 would run for ten minutes: the launcher must
    # notice the failure of any process, stop the others and return its exit status.
    code = (
        "import subprocess, sys\n"
        "from jaxmem.internal import launch_local\n"
        "child = ('import os, sys, time\\n'\n"
        "         'sys.exit(3) if os.environ[\"JAX_PROCESS_ID\"] == \"1\" else time.sleep(600)')\n"
        "print(launch_local([sys.executable, '-c', child], 2))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "3", proc.stderr[-2000:]
