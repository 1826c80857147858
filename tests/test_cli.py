"""`jaxmem plateau` end to end through the CLI (files, columns, manifest, figure),
the four parameterisations side by side, and bad input.

Each flow configuration compiles once (~25 s on 2 CPU cores), so the runs are module-scoped
fixtures shared by the tests, and the four-parameterisation run is marked slow.
"""

import argparse
import csv
import json
import math
import os

import jax
import numpy as np
import pytest

from jaxmem.internal import main

from .flow_reference import reference_flow

REQUIRED = ("lag", "omega", "width", "optimizer", "lr", "parameterization", "tau_param", "tau_loss",
            "steps", "status")


def _main(argv):
    # No persistent compilation cache from the tests (it would change JAX's global config for
    # the rest of the session and write to the home folder). Standard dtype promotion: optax's
    # Adam does `b1**count` (float ** int32), which the suite's strict promotion rejects.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JAXMEM_NO_CACHE", "1")
        with jax.numpy_dtype_promotion("standard"):
            return main(argv)


def _read_csv(path):
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("quick")
    rc = _main(["plateau", "--preset", "quick", "--out", str(out), "--no-progress"])
    return rc, out


def test_quick_preset_end_to_end(quick_run):
    rc, out = quick_run
    assert rc == 0
    for name in ("plateau.csv", "plateau.json", "plateau.png"):
        assert (out / name).is_file(), name
    png = (out / "plateau.png").read_bytes()
    assert len(png) > 1000 and png[:8] == b"\x89PNG\r\n\x1a\n"

    fields, rows = _read_csv(out / "plateau.csv")
    assert set(REQUIRED) <= set(fields)
    lags = (6.0, 8.0, 10.0, 12.0)
    assert len(rows) == len(lags) * 3  # flow, gd, adam
    assert {r["optimizer"] for r in rows} == {"flow", "gd", "adam"}
    for r in rows:
        assert float(r["lag"]) in lags
        assert math.isclose(float(r["omega"]), 1.0 / float(r["lag"]), rel_tol=1e-12)
        assert int(r["width"]) == 10 and r["parameterization"] == "identity"
        assert r["status"] == "successful", r
        assert 0 < float(r["tau_param"]) <= float(r["tau_loss"]) < math.inf
        assert int(r["steps"]) > 0
        if r["optimizer"] == "flow":
            assert math.isnan(float(r["lr"]))
        else:
            assert float(r["lr"]) == 1e-2
    # The plateau lengthens with the lag in every series (Adam's τ₀ at L = 6..10 is a few
    # whole steps, so only non-decreasing there).
    for opt in ("flow", "gd", "adam"):
        taus = [float(r["tau_param"]) for r in sorted(rows, key=lambda r: float(r["lag"])) if r["optimizer"] == opt]
        assert np.all(np.diff(taus) >= 0) and taus[-1] > taus[0], opt

    manifest = json.loads((out / "plateau.json").read_text())
    for key in ("settings", "versions", "device", "solver", "timings"):
        assert key in manifest, key
    assert manifest["settings"]["preset"] == "quick"
    assert list(manifest["settings"]["lags"]) == list(lags)
    assert manifest["versions"]["jax"] == jax.__version__
    assert "Rodas4" in manifest["solver"]["solver"] and manifest["solver"]["dtype"] == "float64"
    assert manifest["timings"]["this_run_s"] > 0
    assert {f["optimizer"] for f in manifest["fits"]} == {"flow", "gd", "adam"}


def test_quick_preset_flow_rows_match_independent_reference(quick_run):
    # The CLI's flow numbers against the numpy/scipy Radau reference at L = 8 (δ = 0.05).
    _, out = quick_run
    _, rows = _read_csv(out / "plateau.csv")
    row = next(r for r in rows if r["optimizer"] == "flow" and float(r["lag"]) == 8.0)
    ref = reference_flow(8.0, t_end=1.0, delta_losses=(0.05,))
    np.testing.assert_allclose(float(row["tau_param"]), ref["tau_param"], rtol=1e-5)
    np.testing.assert_allclose(float(row["tau_loss"]), ref["tau_loss"][0.05], rtol=1e-5)
    # GD at η = 1e-2 is within O(η) of the flow (explicit Euler, τ = kη).
    gd = next(r for r in rows if r["optimizer"] == "gd" and float(r["lag"]) == 8.0)
    assert abs(float(gd["tau_loss"]) - ref["tau_loss"][0.05]) / ref["tau_loss"][0.05] < 0.05


def test_prints_fitted_slopes(tmp_path, capsys):
    # A one-lag-per-series run is cheap once the quick run has compiled; the slope table is
    # printed whatever the number of rows (NaN slopes with fewer than two points).
    rc = _main(["plateau", "--preset", "quick", "--optimizer", "gd", "--lags", "6", "8",
                "--out", str(tmp_path), "--no-progress"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "slope" in text and "w_l0" in text and "wrote" in text


@pytest.mark.slow
def test_four_parameterizations_side_by_side(tmp_path):
    params = ("identity", "exp", "softplus", "best")
    rc = _main(["plateau", "--parameterization", *params, "--optimizer", "flow", "--lags", "8", "10", "12",
                "--out", str(tmp_path), "--no-progress"])
    assert rc == 0
    _, rows = _read_csv(tmp_path / "plateau.csv")
    assert len(rows) == 12
    for p in params:
        rs = [r for r in rows if r["parameterization"] == p]
        assert sorted(float(r["lag"]) for r in rs) == [8.0, 10.0, 12.0], p
        assert all(r["optimizer"] == "flow" for r in rs)
        assert all(0 < float(r["tau_param"]) < math.inf for r in rs), p
    # Identity is the plain flow: its τ₀ at L = 8 is the reference's.
    ident = next(r for r in rows if r["parameterization"] == "identity" and float(r["lag"]) == 8.0)
    ref = reference_flow(8.0, t_end=1.0, delta_losses=())
    np.testing.assert_allclose(float(ident["tau_param"]), ref["tau_param"], rtol=1e-5)
    # A reparameterisation changes the flow, hence the times.
    t8 = {r["parameterization"]: float(r["tau_param"]) for r in rows if float(r["lag"]) == 8.0}
    assert len({round(v, 6) for v in t8.values()}) == 4


@pytest.mark.parametrize("argv, message", [
    (["--lags", "-8", "10"], "lags must be positive"),
    (["--lags", "0"], "lags must be positive"),
    (["--omegas", "0"], "omegas must be finite and > 0"),
    (["--delta-loss", "0"], "delta_loss must be finite and > 0"),
    (["--delta-param", "-0.05"], "delta_param must be finite and > 0"),
    (["--lr", "0"], "learning rates must be finite and > 0"),
    (["--width", "0"], "widths must be positive integers"),
])
def test_bad_values_exit_nonzero_with_message(tmp_path, capsys, argv, message):
    rc = _main(["plateau", "--out", str(tmp_path / "o"), "--no-progress", *argv])
    assert rc != 0
    err = capsys.readouterr().err
    assert message in err and "error" in err
    assert not os.path.exists(tmp_path / "o" / "plateau.csv")


@pytest.mark.parametrize("argv, message", [
    (["--optimizer", "sgd"], "invalid choice: 'sgd'"),
    (["--parameterization", "tanh"], "invalid choice: 'tanh'"),
    (["--preset", "huge"], "invalid choice: 'huge'"),
    (["--lags", "eight"], "not a number"),
    (["--lags", "8:40:0"], "STEP > 0"),
    (["--omegas", "nan"], "not a finite number: 'nan'"),
    (["--widths", "inf"], "not a finite number: 'inf'"),
])
def test_bad_choices_exit_nonzero_with_message(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as info:
        _main(["plateau", "--out", str(tmp_path / "o"), *argv])
    assert info.value.code != 0
    assert message in capsys.readouterr().err


def test_number_lists_and_ranges():
    from jaxmem._cli._args import floats, ints

    assert floats("8:11:2") == [8.0, 10.0]  # never beyond STOP
    assert floats("8:12:2") == [8.0, 10.0, 12.0] and floats("0.1:0.3:0.1")[-1] == pytest.approx(0.3)
    assert floats("1, 2 3") == [1.0, 2.0, 3.0] and ints("1:4:1") == [1, 2, 3, 4]
    for bad, message in [("inf", "finite"), ("nan", "finite"), ("8:4:1", "START <= STOP"), ("1:1e9:1", "at most"),
                         ("x", "not a number"), ("8:9:0", "STEP > 0")]:
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            floats(bad)
    with pytest.raises(argparse.ArgumentTypeError, match="integers"):
        ints("2.5")
