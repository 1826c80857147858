"""`jaxmem memory`: the learnability report from data and from a model file (decay class, strict
files, a linear model's memory against its exact kernel in NumPy, the plateau block), and clear
errors on bad input."""

import csv
import glob
import json
import math

import jax.random as jr
import numpy as np
import pytest

import jaxmem
from jaxmem._cli import main

SMALL = ["--n-boot", "30", "--max-width", "4", "--starts", "2", "--plateau-width", "3",
         "--parameterizations", "identity", "best", "--no-progress"]
STATUSES = {"successful", "param_not_reached", "loss_not_reached", "not_reached"}


def _strict_json(path):
    def refuse(token):
        raise AssertionError(f"non-strict JSON token {token} in {path}")

    with open(path) as f:
        return json.load(f, parse_constant=refuse)


def _csv(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and list(rows[0]) == ["t", "rho", "lo", "hi"]
    out = {k: np.array([float(r[k]) for r in rows]) for k in rows[0]}
    assert all(np.all(np.isfinite(v)) for v in out.values())
    return out


def _paths(path, kernel, n_paths=16, n_t=601, dt=0.1, seed=0):
    xs = jaxmem.white_noise(jr.key(seed), n_paths, n_t, dt)
    ys = jaxmem.linear_outputs(kernel, xs, dt)
    np.savez(path, ts=np.arange(n_t) * dt, xs=np.asarray(xs), ys=np.asarray(ys))
    return path


def _check_plateau(report, names=("identity", "best")):
    p = report["plateau"]
    assert [r["parameterization"] for r in p["rows"]] == list(names)
    for r in p["rows"]:
        assert r["status"] in STATUSES
        # a threshold not reached comes with "inf", a reached one with a number
        assert (r["tau0_prime"] == "inf") == (r["status"] in ("loss_not_reached", "not_reached"))
        assert (r["tau0"] == "inf") == (r["status"] in ("param_not_reached", "not_reached"))
    # the start: canonical rates, coefficients its L2 projection; loss0 is the flow's own J at the start
    assert np.allclose(p["rates"], np.geomspace(0.5, 4.0, 3))
    assert all(math.isclose(r["loss0"], p["loss0"], rel_tol=1e-6, abs_tol=1e-12) for r in p["rows"])


@pytest.mark.parametrize("kind", ["powerlaw", "exp"])
def test_report_from_data(tmp_path, capsys, kind):
    kernel = jaxmem.PowerLaw(0.5) if kind == "powerlaw" else jaxmem.Damped(jaxmem.PowerLaw(1.0), 0.5)
    data = _paths(tmp_path / "d.npz", kernel)
    out = tmp_path / "out"
    assert main(["memory", "--data", str(data), "--out", str(out), *SMALL]) == 0
    report = _strict_json(out / "memory.json")
    table = _csv(out / "memory.csv")
    assert (out / "memory.png").stat().st_size > 0
    d = report["decay"]
    assert d["class"] == ("power-law" if kind == "powerlaw" else "exponential")
    if kind == "powerlaw":
        assert 0.2 < d["omega"] < 0.8
        assert d["omega_interval"][0] <= d["omega"] <= d["omega_interval"][1]
        assert "not stably approximable" in report["verdict"]
    else:
        assert 0.4 < d["rate"] < 0.8                   # e^{-t/2}(1+t)^-2: slope 1/2 + 2/(1+t) on the tail
        assert d["rate_interval"][0] <= d["rate"] <= d["rate_interval"][1]
        assert report["width_needed"]["width"] is not None
    # the estimate against the true kernel (scipy-free: the kernel's own closed form at the grid)
    truth = np.asarray(kernel(table["t"]))
    assert np.sqrt(np.mean((table["rho"] - truth) ** 2)) < 0.05 * np.max(np.abs(truth))
    assert np.all(table["lo"] <= table["hi"])
    w = report["width_needed"]
    assert w["eps"] == 0.05 and w["min_rate"] == 0.5 and len(w["relative_error"]) == 4
    assert all(a >= b for a, b in zip(w["relative_error"], w["relative_error"][1:]))
    _check_plateau(report)
    assert report["verdict"] in capsys.readouterr().out


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("train")
    jaxmem.run_train(jaxmem.TrainSettings(kernel="exp", params=(0.5,), widths=(2,), seeds=1, steps=5, batch_size=4,
                                          n_train=8, n_test=4, duration=6.0, dt=0.1, records=3), d, progress=False,
                     log=lambda *a, **k: None)
    (path,) = glob.glob(str(d / "models" / "*.eqx"))
    return path


@pytest.mark.slow
def test_report_from_linear_model_matches_exact_kernel(tmp_path, model_file):
    out = tmp_path / "out"
    argv = [*SMALL[: SMALL.index("--parameterizations")], "--parameterizations", "identity", "--no-progress"]
    assert main(["memory", "--model", model_file, "--out", str(out), "--duration", "20", *argv]) == 0
    model, header = jaxmem.load_model(model_file)
    assert isinstance(model, jaxmem.DiagonalRNN)
    a = np.asarray(model.a) * np.asarray(model.mask)
    w = np.asarray(model.rates)
    table = _csv(out / "memory.csv")
    exact = np.array([sum(ai * math.exp(-wi * t) for ai, wi in zip(a, w) if ai != 0.0) for t in table["t"]])
    np.testing.assert_allclose(table["rho"], exact, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(table["lo"], table["rho"])
    assert table["t"][-1] == pytest.approx(20.0)
    report = _strict_json(out / "memory.json")
    assert report["memory"]["source"] == "model" and "exact" in report["memory"]["kind"]
    # a finite sum of exponentials: exponential memory with the slowest active rate
    assert report["decay"]["class"] == "exponential"
    assert report["decay"]["rate"] == pytest.approx(min(w[a != 0]), rel=0.05)
    _check_plateau(report, ("identity",))


def _bad(tmp_path, name, **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


@pytest.mark.parametrize("case, message", [
    ("lengths", "same shape"),
    ("grid", "uniform grid"),
    ("nan", "ys[1, 7] = nan"),
    ("missing", "no array 'ys'"),
    ("one_path", "at least 2 paths"),
    ("horizon", "horizon 100"),
])
def test_bad_data_exit_2_naming_the_value(tmp_path, capsys, case, message):
    rng = np.random.default_rng(0)
    ts = np.arange(50) * 0.1
    xs, ys = rng.standard_normal((3, 50)), rng.standard_normal((3, 50))
    extra = []
    if case == "lengths":
        path = _bad(tmp_path, "d.npz", ts=ts, xs=xs, ys=ys[:2])
    elif case == "grid":
        path = _bad(tmp_path, "d.npz", ts=ts ** 1.1, xs=xs, ys=ys)
    elif case == "nan":
        ys[1, 7] = np.nan
        path = _bad(tmp_path, "d.npz", ts=ts, xs=xs, ys=ys)
    elif case == "missing":
        path = _bad(tmp_path, "d.npz", ts=ts, xs=xs)
    elif case == "one_path":
        path = _bad(tmp_path, "d.npz", ts=ts, xs=xs[:1], ys=ys[:1])
    else:
        path, extra = _bad(tmp_path, "d.npz", ts=ts, xs=xs, ys=ys), ["--horizon", "100"]
    assert main(["memory", "--data", path, "--out", str(tmp_path / "o"), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("jaxmem memory: error:") and message in err
    assert not (tmp_path / "o").exists()


def test_not_a_model_file_exit_2(tmp_path, capsys):
    path = tmp_path / "m.eqx"
    path.write_bytes(b"not a model\n")
    assert main(["memory", "--model", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "is not a model file" in err and "m.eqx" in err


def test_settings_refuse_bad_values():
    with pytest.raises(ValueError, match="exactly one"):
        jaxmem.MemorySettings()
    with pytest.raises(ValueError, match="eps must be a finite number > 0; got -1.0"):
        jaxmem.MemorySettings(data="d.npz", eps=-1.0)
    with pytest.raises(ValueError, match="unknown parameterization 'tanh'"):
        jaxmem.MemorySettings(data="d.npz", parameterizations=("tanh",))
