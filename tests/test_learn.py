"""Training on data: the empirical loss against the exact white-noise loss, the escape of
gradient descent on data against gradient descent on the exact loss, the batched driver against
single runs, resumption, divergence and bad input."""

import json
import math

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
import scipy.integrate as si

import jaxmem
from jaxmem._experiments.training import TrainSettings

DT = 0.05


def _bump_sq_norm(width=0.5):
    # J at the canonical start: the model fits e^{-t/2} exactly, the error is the bump alone.
    return si.quad(lambda t: math.exp(-((t - 30.0) ** 2) / width**2), 0.0, 60.0, epsabs=1e-13, points=[30.0])[0]


def test_empirical_loss_at_canonical_start_estimates_exact_J():
    lag, n = 6.0, 96
    xs = jaxmem.white_noise(jr.key(3), n, int(30 / DT) + 1, DT)
    ys = jaxmem.linear_outputs(jaxmem.plateau_target(lag), xs, DT)
    model = jaxmem.canonical_model(4)
    burn = lag + 3.0
    emp = float(jaxmem.empirical_loss(model, xs, ys, DT, burn_in=burn))
    # Independent reference: scipy quadrature of the squared bump (0.886227 at every lag).
    J = _bump_sq_norm()
    assert abs(J - 0.886227) < 1e-6
    # Its Monte Carlo error from the per-path means (paths are independent).
    t = np.arange(xs.shape[1]) * DT
    preds = np.asarray(jax.vmap(lambda x: model.predict(x, DT))(xs))
    per_path = ((np.asarray(ys) - preds) ** 2)[:, t >= burn].mean(axis=1)
    se = per_path.std(ddof=1) / math.sqrt(n)
    assert abs(per_path.mean() - emp) < 1e-12
    assert abs(emp - J) < 4 * se, (emp, J, se)


def test_empirical_loss_bad_input():
    model = jaxmem.canonical_model(2)
    xs = jnp.zeros((4, 10))
    with pytest.raises(ValueError, match="same shape"):
        jaxmem.empirical_loss(model, xs, jnp.zeros((4, 11)), DT)
    with pytest.raises(ValueError, match="burn_in"):
        jaxmem.empirical_loss(model, xs, xs, DT, burn_in=5.0)
    with pytest.raises(ValueError, match="finite"):
        jaxmem.empirical_loss(model, xs.at[0, 0].set(jnp.nan), xs, DT)
    with pytest.raises(ValueError, match="dt"):
        jaxmem.empirical_loss(model, xs, xs, -1.0)


@pytest.mark.slow
def test_escape_of_gd_on_data_matches_exact_gd():
    """Full-batch GD on many white-noise paths from the canonical start leaves the plateau at
    about the iteration that GD on the exact loss does (τ₀′/η of the theory)."""
    lag, lr, width = 12.0, 0.2, 4
    exact = jaxmem.train(jaxmem.canonical_model(width), jaxmem.plateau_target(lag), "gd", lr=lr, max_steps=5000,
                         delta_param=0.05, delta_loss=0.05)
    n_t = int(32 / DT) + 1
    xs = jaxmem.white_noise(jr.key(11), 192, n_t, DT)
    ys = jaxmem.linear_outputs(jaxmem.plateau_target(lag), xs, DT)
    res = jaxmem.train_on_data(jaxmem.canonical_model(width), xs, ys, DT, "gd", lr=lr,
                               steps=int(exact.steps_loss) * 2, burn_in=lag + 2.0, records=5,
                               delta_param=0.05, delta_loss=0.05)
    kl = int(res.steps_loss)
    el = int(exact.steps_loss)
    assert el > 50  # a plateau, not an immediate escape
    assert abs(kl - el) <= 0.3 * el, (kl, el)


def _small(**over):
    base = dict(kernel="exp", params=(0.5, 1.0), widths=(2, 3), seeds=2, steps=30, batch_size=8, n_train=16,
                n_test=8, duration=6.0, dt=0.1, records=6, chunk=7, optimizer="adam", lrs=(1e-2,))
    base.update(over)
    return TrainSettings(**base)


def test_batched_driver_matches_single_runs(tmp_path):
    """One vmapped program over (parameter, width, seed) gives the curves of single runs."""
    s = _small()
    jaxmem.run_train(s, tmp_path / "run", progress=False, log=lambda *a: None)
    rows = json.loads((tmp_path / "run" / "train.json").read_text())["configs"]
    assert len(rows) == 2 * 2 * 2
    from jaxmem._experiments.learn_batch import FamilyRun, build_model, memory_horizon

    fam = FamilyRun(s, tmp_path / "unused", log=lambda *a: None)
    xs, ys, _, _ = fam.data()
    base = jr.key(s.seed + 1)
    for c in (s.configs()[0], s.configs()[5]):
        p = s.params.index(c["param"])
        model = build_model(s, c["width"], max(s.widths), jr.fold_in(base, c["seed"]))
        burn = memory_horizon(fam.targets[p], s.duration)
        single = jaxmem.train_on_data(model, xs[p], ys[p], s.dt, "adam", lr=c["lr"], steps=s.steps,
                                      batch_size=s.batch_size, burn_in=burn,
                                      key=jr.fold_in(jr.fold_in(base, c["seed"]), 1), records=s.records)
        summary = next(r for r in rows if all(r[k] == c[k] for k in ("param", "width", "seed")))
        np.testing.assert_allclose(summary["train_loss"], float(single.train_loss[-1]), rtol=1e-9)


def test_resume_after_interrupt_gives_the_same_rows(tmp_path):
    s = _small(params=(0.5,), widths=(2,), seeds=1, steps=40, chunk=5)
    whole = tmp_path / "whole"
    jaxmem.run_train(s, whole, progress=False, log=lambda *a: None)
    part = tmp_path / "part"
    calls = {"n": 0}

    from jaxmem._experiments import store as store_mod

    real_append = store_mod.RowStore.append

    def append(self, rows):
        calls["n"] += 1
        real_append(self, rows)
        if calls["n"] == 3:
            raise KeyboardInterrupt

    store_mod.RowStore.append = append
    try:
        with pytest.raises(KeyboardInterrupt):
            jaxmem.run_train(s, part, progress=False, log=lambda *a: None)
    finally:
        store_mod.RowStore.append = real_append
    n_before = len((part / "train.csv").read_text().splitlines())
    jaxmem.run_train(s, part, progress=False, log=lambda *a: None)
    a = (whole / "train.csv").read_text().splitlines()
    b = (part / "train.csv").read_text().splitlines()
    assert 1 < n_before < len(b)
    assert a == b


def test_divergence_is_a_status_not_a_crash(tmp_path):
    s = _small(params=(0.5,), widths=(2,), seeds=1, optimizer="gd", lrs=(1e4,), steps=20)
    summaries = jaxmem.run_train(s, tmp_path / "d", progress=False, log=lambda *a: None)
    assert summaries[0]["status"] == "diverged"
    import pandas as pd

    rows = pd.read_csv(tmp_path / "d" / "train.csv")
    assert rows["status"].iloc[-1] == "diverged"
    assert np.isfinite(rows["train_loss"].iloc[0])  # the rows before divergence are kept
    json.loads((tmp_path / "d" / "train.json").read_text())  # strict JSON


def test_settings_refuse_bad_values():
    with pytest.raises(ValueError, match="kernel"):
        TrainSettings(kernel="nope")
    with pytest.raises(ValueError, match="batch_size"):
        TrainSettings(batch_size=10, n_train=4)
    with pytest.raises(ValueError, match="canonical"):
        TrainSettings(model="tanh", init="canonical")
    with pytest.raises(ValueError, match="learning rates"):
        TrainSettings(lrs=(0.0,))
    with pytest.raises(ValueError, match="burn_in"):
        TrainSettings(burn_in=100.0, duration=10.0)


def test_fresh_paths_learn_exponential_memory(tmp_path):
    """Fresh white-noise paths every iteration, exact outputs by the kernel's filter: the model
    learns, and the test loss falls well below its start."""
    s = _small(params=(0.5,), widths=(2,), seeds=1, steps=60, paths="fresh", n_train=8, batch_size=16,
               duration=8.0, records=4)
    jaxmem.run_train(s, tmp_path / "f", progress=False, log=lambda *a: None)
    import pandas as pd

    rows = pd.read_csv(tmp_path / "f" / "train.csv")
    assert rows["test_loss"].iloc[-1] < 0.2 * rows["test_loss"].iloc[0]
    with pytest.raises(ValueError, match="fresh"):
        TrainSettings(kernel="lorenz96", paths="fresh")


def test_cli_train_refuses_bad_options(tmp_path, capsys):
    from jaxmem.internal import main

    out = str(tmp_path / "cli")
    assert main(["train", "--kernel", "exp", "--omega", "0.5", "--out", out]) == 2
    assert "--omega does not go with --kernel exp" in capsys.readouterr().err
    assert main(["train", "--preset", "figure1", "--kernel", "airy", "--out", out]) == 2
    assert main(["train", "--kernel", "exp", "--lr", "0", "--out", out]) == 2
    assert main(["train", "--model", "tanh", "--init", "canonical", "--out", out]) == 2
    assert not (tmp_path / "cli").exists()


def test_cli_train_writes_its_files(tmp_path):
    from jaxmem.internal import main

    out = tmp_path / "run"
    args = ["train", "--kernel", "plateau", "--lag", "6", "--init", "canonical", "--widths", "3", "--seeds", "1",
            "--steps", "12", "--n-train", "8", "--batch-size", "4", "--n-test", "4", "--duration", "10", "--dt", "0.1",
            "--records", "4", "--optimizer", "gd", "--lr", "0.1", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    manifest = json.loads((out / "train.json").read_text())
    assert manifest["configs"][0]["param"] == 6.0 and "versions" in manifest
    assert (out / "train.png").stat().st_size > 0
    import pandas as pd

    rows = pd.read_csv(out / "train.csv")
    assert list(rows.columns) == ["kernel", "param_name", "param", "model", "time", "init", "width", "seed",
                                  "optimizer", "lr", "step", "train_loss", "test_loss", "status"]
    assert rows["step"].max() == 12
    assert main(args) == 0  # everything stored: nothing recomputed
    assert len(pd.read_csv(out / "train.csv")) == len(rows)


def test_trained_models_are_saved_and_load_back(tmp_path):
    s = _small(params=(0.5,), widths=(2, 3), seeds=1, steps=10, model="tanh", time="discrete")
    jaxmem.run_train(s, tmp_path / "m", progress=False, log=lambda *a: None)
    files = sorted((tmp_path / "m" / "models").glob("*.eqx"))
    assert len(files) == 2
    model, header = jaxmem.load_model(files[0])
    assert header["model_class"] == "DiscreteRNN" and header["config"]["width"] == 2
    # the loaded model predicts what the stored curve measured: its test loss at the last step
    from jaxmem._experiments.learn_batch import FamilyRun, memory_horizon

    fam = FamilyRun(s, tmp_path / "unused", log=lambda *a: None)
    _, _, xt, yt = fam.data()
    burn = memory_horizon(fam.targets[0], s.duration)
    test = float(jaxmem.empirical_loss(model, xt[0], yt[0], s.dt, burn_in=burn))
    import pandas as pd

    rows = pd.read_csv(tmp_path / "m" / "train.csv")
    last = rows[(rows["width"] == 2) & (rows["step"] == s.steps)]
    np.testing.assert_allclose(test, last["test_loss"].iloc[0], rtol=1e-10)
    bad = tmp_path / "bad.eqx"
    bad.write_text("not a model\n")
    with pytest.raises(ValueError, match="not a model file"):
        jaxmem.load_model(bad)
