"""Arguments are checked at the API and on the command line: a wrong type is a `TypeError`, a
value out of range a `ValueError`, and the message names the argument, what was expected and
the value given. Nothing here compiles a solve: every check fires before one starts."""

import math

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmem
from jaxmem import internal
from jaxmem._errors import unchecked
from jaxmem._experiments.batching import problem

MODEL = jaxmem.canonical_model(4)
TARGET = jaxmem.plateau_target(8.0)
LR = r"learning rates must be finite and > 0; got "
MOMENTUM = r"momentum must satisfy 0 <= momentum < 1; got "


def _ours_or_annotation(message, name):
    """Under the suite's jaxtyping/beartype import hook, an annotated parameter given the wrong
    type is refused by its annotation before the function's own check runs."""
    return rf"{message}|parameter '{name}'"


# --- plateau_grid: sequences of numbers, integers and names ----------------------------------


@pytest.mark.parametrize(("kw", "error", "match"), [
    # a string is not split into its characters ("18" is not the lags 1 and 8)
    (dict(lags="18"), TypeError, r"lags must be a sequence of numbers \(not a string\); got '18'"),
    (dict(lags=8.0), TypeError, r"lags must be a sequence of numbers; got 8\.0"),
    (dict(lags=[8.0, "10"]), TypeError, r"lags must be a sequence of numbers; got \[8\.0, '10'\]"),
    (dict(lags=[8.0, True]), TypeError, r"lags must be a sequence of numbers.*True is not a number"),
    (dict(lags=[0.0]), ValueError, r"lags must be positive and finite.*got \[0\.0\]"),
    (dict(lags=[-8.0, 10.0]), ValueError, r"lags must be positive and finite.*got \[-8\.0, 10\.0\]"),
    (dict(lags=[math.nan]), ValueError, r"lags must be positive and finite.*got \[nan\]"),
    (dict(lags=[]), ValueError, r"lags must be positive and finite.*got \[\]"),
    (dict(widths=[2.5]), TypeError, r"widths must be a sequence of integers; got \[2\.5\]"),
    (dict(widths=["3"]), TypeError, r"widths must be a sequence of integers; got \['3'\]"),
    (dict(widths=[True]), TypeError, r"widths must be a sequence of integers; got \[True\]"),
    (dict(widths=[False]), TypeError, r"widths must be a sequence of integers; got \[False\]"),
    (dict(widths="10"), TypeError, r"widths must be a sequence of integers \(not a string\); got '10'"),
    (dict(widths=[0]), ValueError, r"widths must be positive integers; got \[0\]"),
    (dict(seeds=[1.5]), TypeError, r"seeds must be a sequence of integers; got \[1\.5\]"),
    (dict(seeds=[-1]), ValueError, r"seeds must be integers >= 0.*got \[-1\]"),
    (dict(seeds=()), ValueError, r"seeds must be integers >= 0 \(at least one\); got \[\]"),
    (dict(lrs=[0.0]), ValueError, LR + r"\[0\.0\]"),
    (dict(lrs=[1e-2, -0.01]), ValueError, LR + r"\[0\.01, -0\.01\]"),
    (dict(lrs=[math.inf]), ValueError, LR + r"\[inf\]"),
    (dict(lrs=["0.1"]), TypeError, r"learning rates must be a sequence of numbers"),
    (dict(momenta=[1.5]), ValueError, MOMENTUM + r"\[1\.5\]"),
    (dict(momenta=[-1.0]), ValueError, MOMENTUM + r"\[-1\.0\]"),
    (dict(momenta=[1.0]), ValueError, MOMENTUM + r"\[1\.0\]"),
    (dict(optimizers="flow"), TypeError, r"optimizers must be a sequence of names \(not a string\); got 'flow'"),
    (dict(optimizers=["sgd"]), ValueError, r"unknown optimizer\(s\) \['sgd'\]"),
    (dict(parameterizations="exp"), TypeError, r"parameterizations must be a sequence of names"),
])
def test_plateau_grid_bad_input(kw, error, match):
    kw = dict(dict(lags=[8.0], optimizers=["flow", "momentum"]), **kw)
    with pytest.raises(error, match=match):
        jaxmem.plateau_grid(kw.pop("lags"), **kw)


def test_plateau_grid_keeps_each_value_once():
    grid = jaxmem.plateau_grid([20, 20.0, 8.0, 20.0], widths=[4, 4, 6], seeds=[0, 0], optimizers=["flow", "flow"],
                               parameterizations=["identity", "identity"])
    keys = [jaxmem.config_key(c) for c in grid]
    assert len(keys) == len(set(keys)) == 4
    assert [c["lag"] for c in grid if c["width"] == 4] == [20.0, 8.0]  # in the order first given
    # NumPy integers and numbers are numbers; NumPy arrays are sequences.
    grid = jaxmem.plateau_grid(np.array([8.0, 10.0]), widths=np.array([4]), seeds=range(2))
    assert [(c["lag"], c["width"], c["seed"]) for c in grid] == [(8.0, 4, 0), (8.0, 4, 1), (10.0, 4, 0), (10.0, 4, 1)]
    assert all(type(c["width"]) is int and type(c["seed"]) is int for c in grid)


# --- the plateau target ------------------------------------------------------------------------


@pytest.mark.parametrize("lag", [-8, 0, 0.0, -0.5, math.inf, math.nan])
def test_plateau_target_needs_a_positive_lag(lag):
    with pytest.raises(ValueError, match=rf"plateau_target lag must be finite and > 0 .*got {lag!r}"):
        jaxmem.plateau_target(lag)


def test_plateau_target_traced_lag():
    fn = lambda lag: jaxmem.plateau_target(lag).sq_norm()
    with pytest.raises(eqx.EquinoxRuntimeError, match="plateau_target lag must be finite and > 0"):
        jax.block_until_ready(eqx.filter_jit(fn)(jnp.asarray(-8.0)))
    # A sweep builds its targets under `unchecked()` (its grid was checked on the host): no
    # host callback is compiled in, which would keep the program out of the persistent cache.
    # (a new function object each time: JAX caches traces by function, whatever the context)
    assert "callback" in str(jax.make_jaxpr(lambda lag: fn(lag))(8.0))
    with unchecked():
        assert "callback" not in str(jax.make_jaxpr(lambda lag: fn(lag))(8.0))
    # ...and the sweep's problem enters `unchecked` itself.
    key = jax.random.key_data(jax.random.key(0))
    sweep_problem = lambda lag: problem(jaxmem.IdentityParameterization(), 4, 0.0, lag, jnp.asarray(4), key)
    assert "callback" not in str(jax.make_jaxpr(sweep_problem)(jnp.asarray(8.0)))


@pytest.mark.parametrize("width", [True, 2.0, "3"])
def test_canonical_model_width_type(width):
    with pytest.raises(TypeError, match=_ours_or_annotation(rf"width must be a positive integer; got {width!r}", "width")):
        jaxmem.canonical_model(width)


# --- hitting_times, HittingTimeSearch, gradient_flow --------------------------------------------


@pytest.mark.parametrize(("kw", "error", "match"), [
    (dict(rtol=-1.0), ValueError, r"rtol must satisfy 0 < rtol < 1; got -1\.0"),
    (dict(rtol=0.0), ValueError, r"rtol must satisfy 0 < rtol < 1; got 0\.0"),
    (dict(rtol=1.0), ValueError, r"rtol must satisfy 0 < rtol < 1; got 1\.0"),
    (dict(atol=0.0), ValueError, r"atol must be finite and > 0; got 0\.0"),
    (dict(atol=math.nan), ValueError, r"atol must be finite and > 0; got nan"),
    (dict(delta_param=0.0), ValueError, r"delta_param must be finite and > 0; got 0\.0"),
    (dict(delta_loss=math.inf), ValueError, r"delta_loss must be finite and > 0; got inf"),
    (dict(delta_loss=-0.05), ValueError, r"delta_loss must be finite and > 0; got -0\.05"),
    (dict(t1=-5.0), ValueError, r"t1 must be finite and > 0; got -5\.0"),
    (dict(t1=math.inf), ValueError, r"t1 must be finite and > 0; got inf"),
    (dict(horizon_factor=1.0), ValueError, r"horizon_factor must be finite and > 1; got 1\.0"),
    (dict(horizon_factor=math.inf), ValueError, r"horizon_factor must be finite and > 1; got inf"),
    (dict(max_steps=0), ValueError, r"max_steps must be a positive integer; got 0"),
    (dict(delta_param="0.05"), TypeError, r"delta_param must be a real number; got '0\.05'"),
    (dict(rtol=True), TypeError, _ours_or_annotation(r"rtol must be a real number; got True", "rtol")),
])
def test_hitting_times_bad_settings(kw, error, match):
    with pytest.raises(error, match=match):
        jaxmem.hitting_times(MODEL, TARGET, **kw)


@pytest.mark.parametrize(("kw", "error", "match"), [
    (dict(stepsize_controller=diffrax.PIDController(rtol=-1.0, atol=1e-10)), ValueError,
     r"stepsize_controller\.rtol must satisfy 0 < stepsize_controller\.rtol < 1; got -1\.0"),
    (dict(stepsize_controller=diffrax.PIDController(rtol=1e-8, atol=-1e-10)), ValueError,
     r"stepsize_controller\.atol must be finite and > 0; got -1e-10"),
    (dict(delta_loss=0.0), ValueError, r"delta_loss must be finite and > 0; got 0\.0"),
    (dict(horizon=math.nan), ValueError, r"horizon must be finite and > 0; got nan"),
    (dict(horizon_factor=0.5), ValueError, r"horizon_factor must be finite and > 1; got 0\.5"),
    (dict(max_steps=0), ValueError, r"max_steps must be a positive integer; got 0"),
    (dict(max_steps=True), TypeError, r"max_steps must be a positive integer; got True"),
    (dict(max_steps=100.0), TypeError, r"max_steps must be a positive integer; got 100\.0"),
    (dict(root_finder="bisection"), TypeError, r"root_finder must be an optimistix root finder.*'bisection'"),
    (dict(solver=diffrax.Euler()), TypeError, r"solver must be an adaptive diffrax solver"),
])
def test_hitting_time_search_bad_fields(kw, error, match):
    with pytest.raises(error, match=match):
        jaxmem.HittingTimeSearch(**kw)


def test_hitting_times_checks_the_model():
    # A model made from its stored parameter v bypasses the constructor's check of the rates.
    bad = jaxmem.DiagonalRNN(jnp.ones(2), v=jnp.array([0.5, -1.0]))
    for run in (lambda: jaxmem.hitting_times(bad, TARGET), lambda: jaxmem.gradient_flow(bad, TARGET, 10.0),
                lambda: jaxmem.train(bad, TARGET, "gd")):
        with pytest.raises(ValueError, match=r"DiagonalRNN rates must be > 0; got \[ 0\.5 -1\. \]"):
            run()


@pytest.mark.parametrize(("kw", "error", "match"), [
    (dict(rtol=2.0), ValueError, r"rtol must satisfy 0 < rtol < 1; got 2\.0"),
    (dict(atol=-1.0), ValueError, r"atol must be finite and > 0; got -1\.0"),
    (dict(max_steps=0), ValueError, r"max_steps must be a positive integer; got 0"),
    (dict(t1=math.nan), ValueError, r"t1 must be finite and > 0; got nan"),
    (dict(saveat=jnp.array([0.0, 2.0, 1.0])), ValueError,
     r"saveat must be finite, non-decreasing times in \[0, t1\]; got \[0\. 2\. 1\.\]"),
    (dict(saveat=jnp.array([0.0, 20.0])), ValueError, r"saveat .* in \[0, t1\]; got \[ 0\. 20\.\] with t1 = 10\.0"),
    (dict(solver=diffrax.Euler()), TypeError, r"solver must be an adaptive diffrax solver"),
])
def test_gradient_flow_bad_settings(kw, error, match):
    kw = dict(dict(t1=10.0), **kw)
    with pytest.raises(error, match=match):
        jaxmem.gradient_flow(MODEL, TARGET, kw.pop("t1"), **kw)


# --- train ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("optimizer", "kw", "error", "match"), [
    ("gd", dict(lr=0.0), ValueError, LR + r"0\.0"),
    ("gd", dict(lr=-0.01), ValueError, LR + r"-0\.01"),
    ("adam", dict(lr=math.nan), ValueError, LR + "nan"),
    ("gd", dict(lr=jnp.array([0.1, -0.1])), ValueError, LR + r"\[ 0\.1 -0\.1\]"),
    ("momentum", dict(momentum=1.5), ValueError, MOMENTUM + r"1\.5"),
    ("momentum", dict(momentum=-1.0), ValueError, MOMENTUM + r"-1\.0"),
    ("momentum", dict(momentum=1.0), ValueError, MOMENTUM + r"1\.0"),
    ("momentum", dict(momentum=math.nan), ValueError, MOMENTUM + "nan"),
    ("gd", dict(delta_param=math.nan), ValueError, r"delta_param must be finite and > 0; got nan"),
    ("gd", dict(delta_loss=0.0), ValueError, r"delta_loss must be finite and > 0; got 0\.0"),
    ("gd", dict(max_steps=0), ValueError, r"max_steps must be a positive integer; got 0"),
    # (under the suite's jaxtyping/beartype hook the annotation may refuse it first)
    ("gd", dict(max_steps=True), TypeError, r"max_steps"),
])
def test_train_bad_settings(optimizer, kw, error, match):
    with pytest.raises(error, match=match):
        jaxmem.train(MODEL, TARGET, optimizer, **kw)


# --- the settings of the command line ----------------------------------------------------------


@pytest.mark.parametrize(("kw", "error", "match"), [
    (dict(batch_size=0), ValueError, r"batch_size must be a positive integer; got 0"),
    (dict(batch_size=2.5), TypeError, _ours_or_annotation(r"batch_size must be a positive integer; got 2\.5", "batch_size")),
    (dict(rtol=1.0), ValueError, r"rtol must satisfy 0 < rtol < 1; got 1\.0"),
    (dict(atol=0.0), ValueError, r"atol must be finite and > 0; got 0\.0"),
    (dict(momentum=1.5), ValueError, MOMENTUM + r"1\.5"),
    (dict(momentum=-0.1), ValueError, MOMENTUM + r"-0\.1"),
    (dict(train_max_steps=0), ValueError, r"train_max_steps must be a positive integer; got 0"),
    (dict(train_max_steps=1e5), TypeError,
     _ours_or_annotation(r"train_max_steps must be a positive integer; got 100000\.0", "train_max_steps")),
    (dict(lrs=(-0.01,)), ValueError, LR + r"\[-0\.01\]"),
    (dict(lrs=(0.0,)), ValueError, LR + r"\[0\.0\]"),
    (dict(delta_loss=math.inf), ValueError, r"delta_loss must be finite and > 0; got inf"),
    (dict(perturbation=-1.0), ValueError, r"perturbation must be finite and >= 0; got -1\.0"),
    (dict(seeds=()), ValueError, r"seeds must be integers >= 0 \(at least one\); got \[\]"),
    (dict(lags="18"), TypeError, _ours_or_annotation(r"lags must be a sequence of numbers \(not a string\)", "lags")),
    (dict(widths=(4.5,)), TypeError, r"widths must be a sequence of integers; got \[4\.5\]"),
])
def test_plateau_settings_bad_values(kw, error, match):
    with pytest.raises(error, match=match):
        jaxmem.PlateauSettings(**kw)


def test_plateau_settings_keep_each_value_once():
    s = jaxmem.PlateauSettings(lags=(20, 20.0, 8.0), widths=(4, 4), lrs=(0.01, 0.01, 0.02), optimizers=("flow", "gd", "flow"))
    assert s.lags == (20.0, 8.0) and s.widths == (4,) and s.lrs == (0.01, 0.02) and s.optimizers == ("flow", "gd")
    keys = [jaxmem.config_key(c) for c in s.grid()]
    assert len(keys) == len(set(keys)) == 2 + 2 * 2


@pytest.mark.parametrize(("kw", "error", "match"), [
    (dict(seed=-1), ValueError, r"seed must be an integer >= 0; got -1"),
    (dict(seed=1.5), TypeError, _ours_or_annotation(r"seed must be an integer >= 0; got 1\.5", "seed")),
    (dict(starts=True), TypeError, r"starts must be a positive integer; got True"),
    (dict(batch_size=0), ValueError, r"batch_size must be a positive integer; got 0"),
    (dict(params="0.5"), TypeError,
     _ours_or_annotation(r"memory parameters must be a sequence of numbers \(not a string\); got '0\.5'", "params")),
    (dict(widths=(2.5,)), TypeError, r"widths must be a sequence of integers; got \[2\.5\]"),
    (dict(eps="0.1"), TypeError, _ours_or_annotation(r"eps must be a real number; got '0\.1'", "eps")),
])
def test_approx_settings_bad_values(kw, error, match):
    with pytest.raises(error, match=match):
        jaxmem.ApproxSettings(**kw)


@pytest.mark.parametrize(("argv", "message"), [
    (["--lr", "0"], "learning rates must be finite and > 0; got [0.0]."),
    (["--lr", "-0.01"], "learning rates must be finite and > 0; got [-0.01]."),
    (["--lr", "0.01", "nan"], "learning rates must be finite and > 0; got [0.01, nan]."),
    (["--momentum", "1.5"], "momentum must satisfy 0 <= momentum < 1; got 1.5."),
    (["--momentum", "-1"], "momentum must satisfy 0 <= momentum < 1; got -1.0."),
    (["--batch-size", "0"], "batch_size must be a positive integer; got 0."),
    (["--rtol", "-1"], "rtol must satisfy 0 < rtol < 1; got -1.0."),
    (["--atol", "0"], "atol must be finite and > 0; got 0.0."),
    (["--train-max-steps", "0"], "train_max_steps must be a positive integer; got 0."),
    (["--delta-loss", "inf"], "delta_loss must be finite and > 0; got inf."),
    (["--lags", "8", "-1"], "lags must be positive and finite (omega = 1/lag > 0); got [8.0, -1.0]."),
])
def test_cli_plateau_bad_values_one_line(tmp_path, capsys, argv, message):
    out = tmp_path / "o"
    assert internal.main(["plateau", "--optimizer", "momentum", "--out", str(out), "--no-progress", *argv]) == 2
    err = capsys.readouterr().err
    assert err == f"jaxmem plateau: error: {message}\n"
    assert not out.exists()


# --- the Monte Carlo loss and the models' simulation -------------------------------------------

_MC = (jaxmem.DiagonalRNN(jnp.ones(1), jnp.ones(1)), jaxmem.ExpSum([1.0], [0.5]), jax.random.key(0))


@pytest.mark.parametrize(("ts", "match"), [
    (jnp.linspace(40.0, 0.0, 201), r"ts must be strictly increasing; ts\[1\] = 39\.8 follows ts\[0\] = 40"),
    (jnp.array([0.0, 1.0, jnp.nan, 3.0, 4.0]), r"ts must be finite; ts\[2\] = nan"),
    (jnp.array([0.0, 1.0, 1.0, 2.0, 3.0]), r"ts must be strictly increasing; ts\[2\] = 1 follows ts\[1\] = 1"),
    (jnp.array([0.0, 1.0, 2.0, 4.0, 5.0]), r"ts must be a uniform grid \(dt = ts\[1\] - ts\[0\] = 1 .*from 1 to 2"),
    (jnp.ones((4, 2)), r"ts must be a 1-D grid of at least 4 times; got shape \(4, 2\)"),
])
def test_monte_carlo_grid(ts, match):
    with pytest.raises(ValueError, match=match):
        jaxmem.monte_carlo_loss(*_MC, 4, ts)


def test_monte_carlo_n_paths():
    with pytest.raises(TypeError, match=r"n_paths must be a positive integer; got True"):
        jaxmem.monte_carlo_loss(*_MC, True, jnp.linspace(0.0, 1.0, 10))


def test_model_simulation_arguments():
    model = _MC[0]
    with pytest.raises(ValueError, match=r"ts must be finite and strictly increasing; got \[0\. 2\. 1\.\]"):
        model(jnp.array([0.0, 2.0, 1.0]), jnp.ones(3))
    with pytest.raises(ValueError, match=r"max_steps must be at least len\(ts\) - 1 = 99 .*got 10"):
        model(jnp.linspace(0.0, 1.0, 100), jnp.ones(100), max_steps=10)
    with pytest.raises(ValueError, match=r"rtol must satisfy 0 < rtol < 1; got 0\.0"):
        model(jnp.linspace(0.0, 1.0, 10), jnp.ones(10), rtol=0.0)


def test_model_initialisers():
    key = jax.random.key(0)
    with pytest.raises(TypeError, match=r"width must be a positive integer; got True"):
        jaxmem.DiagonalRNN.init(key, True)
    with pytest.raises(ValueError, match=r"need finite rates 0 < min_rate < max_rate; got 0\.0, 4\.0"):
        jaxmem.DiagonalRNN.init(key, 3, min_rate=0.0)
    with pytest.raises(ValueError, match=r"need finite rates 0 < min_rate < max_rate; got 0\.5, inf"):
        jaxmem.DiagonalRNN.init(key, 3, max_rate=math.inf)
    with pytest.raises(ValueError, match=r"margin must be finite and > 0; got 0\.0"):
        jaxmem.LinearRNN.init(key, 3, margin=0.0)
    with pytest.raises(ValueError, match=r"inputs must be a positive integer; got 0"):
        jaxmem.LinearRNN.init(key, 3, 0)


def test_kernel_arguments():
    with pytest.raises(ValueError, match=r"scale factor must be finite; got inf"):
        jnp.inf * jaxmem.PowerLaw(1.0)
    with pytest.raises(TypeError, match=r"Airy shift and scale must be concrete Python numbers; got '3'"):
        jaxmem.Airy("3")
