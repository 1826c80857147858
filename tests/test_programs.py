"""The sweep's exported programs (`jaxmem._experiments.programs`): read back from disk they give
the same hitting times, bit for bit, as the programs traced in the process; a changed key or a
damaged file makes a new export (the fallback is always to trace again)."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmem
from jaxmem import _distributed
from jaxmem._experiments import programs, sweep
from jaxmem._experiments.batching import FlowSlots, TrainSlots, mesh
from jaxmem._parameterization import get_parameterization

pytestmark = pytest.mark.skipif(not programs.serialization_available(), reason="jax.export needs flatbuffers")

IDENTITY = get_parameterization("identity")
DTYPE = jnp.float64


def _gd(max_width=3, **kw):
    args = dict(max_steps=2000, chunk_steps=sweep.TRAIN_CHUNK_STEPS, perturbation=0.0, delta_param=0.051, delta_loss=0.05)
    args.update(kw)
    return TrainSlots("gd", IDENTITY, max_width, args["max_steps"], args["chunk_steps"], args["perturbation"],
                      args["delta_param"], args["delta_loss"])


def _flow(rtol=1e-8, max_width=4):
    return FlowSlots(IDENTITY, max_width, 8192, 64, 0.0, 0.05, 0.05, rtol, 1e-10)


def _filler(optimizer):
    return jaxmem.plateau_grid([8.0], widths=[3], optimizers=[optimizer])[0]


def _program(fn, kind, folder):
    return programs.slots_program(fn, mesh(jax.devices()[:1]), 2, DTYPE, _filler(kind), str(folder))


@pytest.fixture
def origins(monkeypatch):
    """The origin of every program a sweep builds ("loaded", "exported", "rebuilt", "traced")."""
    seen = []
    orig = sweep.slots_program

    def spy(*args, **kwargs):
        program = orig(*args, **kwargs)
        seen.append(program.origin)
        return program

    monkeypatch.setattr(sweep, "slots_program", spy)
    return seen


def _taus(rows):
    return {r["key"]: (r["tau_param"], r["tau_loss"], r["steps"], r["status"]) for r in rows}


@pytest.mark.slow
def test_loaded_flow_program_gives_bit_identical_hitting_times(tmp_path, monkeypatch, origins):
    grid = jaxmem.plateau_grid([6.0, 8.0], widths=[3, 4], optimizers=["flow"])
    kw = dict(batch_size=2, progress=False)
    # Exported and stored first (traced and lowered, not compiled), so that the sweep below
    # runs the program read back from the file.
    first = programs.slots_program(_flow(), mesh(jax.devices()[:1]), 2, DTYPE, grid[0], str(tmp_path))
    assert first.origin == "exported" and os.path.exists(first.path)
    monkeypatch.setattr(_distributed, "_PROGRAM_DIR", str(tmp_path))
    loaded = _taus(jaxmem.plateau_sweep(grid, **kw))
    monkeypatch.setattr(_distributed, "_PROGRAM_DIR", None)
    traced = _taus(jaxmem.plateau_sweep(grid, **kw))
    assert origins == ["loaded", "traced"]
    assert loaded == traced  # bit for bit: floats compared with ==
    assert all(status == "successful" and np.isfinite(tp) for tp, _, _, status in loaded.values())


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A folder with the exports of two gd programs (widths 3 and 4), and their files."""
    folder = tmp_path_factory.mktemp("programs")
    a, b = _program(_gd(max_width=3), "gd", folder), _program(_gd(max_width=4), "gd", folder)
    assert a.origin == b.origin == "exported"
    return folder, a, b


def test_program_is_rebuilt_when_a_key_field_changes(stored, monkeypatch):
    folder, a, b = stored
    assert _program(_gd(max_width=3), "gd", folder).origin == "loaded"
    # Another width: another key, another file (the fixture's second export).
    assert b.path != a.path
    assert [tuple(x.shape) for x in b.slot_avals] != [tuple(x.shape) for x in a.slot_avals]
    # An edit of jaxmem's source: a new export.
    monkeypatch.setattr(programs, "source_hash", lambda: "edited")
    edited = _program(_gd(max_width=3), "gd", folder)
    assert edited.origin == "exported" and edited.path not in (a.path, b.path)
    monkeypatch.undo()
    assert _program(_gd(max_width=3), "gd", folder).origin == "loaded"
    # The keys (no export: the key alone) of other static settings: the flow's tolerance, an
    # iteration cap.
    avals = programs._avals(_flow(), 2, DTYPE, _filler("flow"))[1]
    k1 = programs.program_key(_flow(1e-8), 2, DTYPE, avals)
    k2 = programs.program_key(_flow(1e-7), 2, DTYPE, avals)
    assert k1 != k2 and programs.key_file(folder, k1) != programs.key_file(folder, k2)
    gd_avals = programs._avals(_gd(), 2, DTYPE, _filler("gd"))[1]
    assert (programs.program_key(_gd(max_steps=3000), 2, DTYPE, gd_avals)
            != programs.program_key(_gd(), 2, DTYPE, gd_avals))
    assert {"jaxmem", "source", "jax", "jaxlib", "platform", "batch", "dtype", "inputs"} <= set(k1)
    assert not [f for f in os.listdir(folder) if not f.endswith(".jaxexport")]  # no temporary file left


@pytest.mark.parametrize("damage", ["truncate", "flip", "other-key"])
def test_damaged_file_is_rebuilt(stored, damage):
    folder, a, b = stored
    data = open(a.path, "rb").read()
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":
        data = data[:-100] + bytes([data[-100] ^ 0xFF]) + data[-99:]
    else:  # a valid file of another program under this program's name
        data = open(b.path, "rb").read()
    with open(a.path, "wb") as f:
        f.write(data)
    again = _program(_gd(max_width=3), "gd", folder)
    assert again.origin == "rebuilt" and again.path == a.path
    assert _program(_gd(max_width=3), "gd", folder).origin == "loaded"  # replaced by a good file


def test_rebuilt_program_runs_like_the_traced_one(tmp_path, monkeypatch, origins):
    grid = jaxmem.plateau_grid([6.0, 8.0], widths=[3], optimizers=["gd"])
    kw = dict(batch_size=2, train_max_steps=2000, delta_param=0.051, progress=False)
    with open(programs.key_file(tmp_path, programs.program_key(
            _gd(), 2, DTYPE, programs._avals(_gd(), 2, DTYPE, grid[0])[1])), "wb") as f:
        f.write(b"jaxmem-program\n{}\n")  # a damaged file where the sweep's program belongs
    monkeypatch.setattr(_distributed, "_PROGRAM_DIR", str(tmp_path))
    with jax.numpy_dtype_promotion("standard"):
        rebuilt = _taus(jaxmem.plateau_sweep(grid, **kw))
        monkeypatch.setattr(_distributed, "_PROGRAM_DIR", None)
        traced = _taus(jaxmem.plateau_sweep(grid, **kw))
    assert origins == ["rebuilt", "traced"]
    assert rebuilt == traced and len(rebuilt) == 2


def test_unwritable_folder_only_loses_the_cache(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    p = _program(_gd(), "gd", blocker / "programs")  # cannot be created: traced and exported in memory
    assert p.origin == "exported" and not os.path.exists(p.path)


def test_cache_dirs(monkeypatch, tmp_path):
    monkeypatch.delenv("JAXMEM_NO_CACHE", raising=False)
    monkeypatch.setenv("JAXMEM_CACHE_DIR", str(tmp_path))
    assert _distributed.cache_dirs() == (str(tmp_path), os.path.join(str(tmp_path), "programs"))
    assert _distributed.cache_dirs(tmp_path / "x")[1] == os.path.join(str(tmp_path / "x"), "programs")
    monkeypatch.setenv("JAXMEM_NO_CACHE", "1")
    assert _distributed.cache_dirs() == (None, None)
