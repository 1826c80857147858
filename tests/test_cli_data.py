"""`jaxmem data`: the .npz file (arrays, shapes, strict-JSON metadata), outputs against scipy
quadrature, reproducible inputs, a file that is never overwritten without --force, and options
refused with exit code 2."""

import argparse
import json

import jax.random as jr
import numpy as np
import pytest
from scipy.integrate import quad

import jaxmem
from jaxmem._cli import data as cli_data
from jaxmem.internal import main

ARGV = ["data", "--kernel", "powerlaw", "--omega", "1", "--n", "3", "--duration", "4", "--dt", "0.1",
        "--seed", "7", "--no-progress"]


def test_writes_the_arrays_and_their_metadata(tmp_path, capsys):
    out = tmp_path / "sub" / "d.npz"
    assert main([*ARGV, "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    with np.load(out, allow_pickle=False) as f:
        assert sorted(f.files) == ["meta", "ts", "xs", "ys"]
        ts, xs, ys, meta = f["ts"], f["xs"], f["ys"], json.loads(str(f["meta"]))
    assert ts.shape == (41,) and xs.shape == ys.shape == (3, 41)
    assert ts.dtype == xs.dtype == ys.dtype == np.float64
    np.testing.assert_allclose(ts, np.arange(41) * 0.1, rtol=0, atol=1e-15)
    # the inputs are white noise from jax.random.key(seed)
    np.testing.assert_array_equal(xs, jaxmem.white_noise(jr.key(7), 3, 41, 0.1))
    # the outputs are ∫_0^{t_j} (1+s)^-2 x̃(t_j - s) ds
    j = 40
    f = lambda s: (1 + s) ** -2.0 * np.interp(ts[j] - s, ts, xs[1])  # noqa: E731
    ref = sum(quad(f, i * 0.1, (i + 1) * 0.1, epsabs=1e-14, epsrel=1e-13)[0] for i in range(j))
    assert abs(ys[1, j] - ref) < 1e-9 * np.abs(ys).max() and np.all(ys[:, 0] == 0)
    assert meta["target"]["kind"] == "powerlaw" and meta["target"]["params"] == {"omega": 1.0}
    assert meta["input"] == {"kind": "white", "params": {}, "description": meta["input"]["description"],
                             "key": "jax.random.key(7)"}
    assert meta["settings"]["n_t"] == 41 and meta["settings"]["seed"] == 7
    assert "linear_outputs" in meta["output_rule"] and meta["versions"]["jaxmem"]
    assert set(meta["arrays"]) == {"ts", "xs", "ys"}
    # load_data reads it back
    loaded = jaxmem.load_data(out)
    np.testing.assert_array_equal(loaded["ys"], ys)
    assert loaded["meta"] == meta


def test_an_existing_file_is_kept_unless_forced(tmp_path, capsys):
    out = tmp_path / "d.npz"
    out.write_bytes(b"precious")
    assert main([*ARGV, "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err and out.read_bytes() == b"precious"
    argv = ["data", "--kernel", "plateau", "--lag", "2", "--input", "ou", "--input-rate", "2", "--n", "2",
            "--duration", "1", "--no-progress", "--out", str(out), "--force"]
    assert main(argv) == 0
    data = jaxmem.load_data(out)
    assert data["xs"].shape == (2, 11) and data["meta"]["input"]["params"] == {"rate": 2.0}
    assert data["meta"]["target"]["params"] == {"lag": 2.0}
    assert [p.name for p in tmp_path.iterdir()] == ["d.npz"]  # no temporary file left


@pytest.mark.parametrize("argv, words", [
    (["--kernel", "exp", "--omega", "1"], "--omega goes with --kernel powerlaw or bump"),
    (["--kernel", "lorenz96", "--forcing", "0.95"], "0 <= F < 8/9"),
    (["--kernel", "lorenz96", "--dim", "3"], "dim must be an integer >= 4"),
    (["--kernel", "powerlaw", "--omega", "-1"], "omega = -1"),
    (["--n", "0"], "n_paths must be a positive integer; got 0"),
    (["--dt", "-0.1"], "dt must be finite and > 0; got -0.1"),
    (["--duration", "0.05", "--dt", "0.1"], "duration must be at least dt"),
    (["--input-rate", "2"], "--input-rate goes with --input ou"),
    (["--input", "smooth", "--input-scale", "0"], "scale must be finite and > 0"),
    (["--seed", "-1"], "seed must be an integer >= 0"),
])
def test_bad_options_exit_with_2(tmp_path, capsys, argv, words):
    out = tmp_path / "d.npz"
    assert main(["data", *argv, "--out", str(out), "--no-progress"]) == 2
    assert words in capsys.readouterr().err
    assert not out.exists()


def test_unknown_choices_and_file_names_exit_with_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["data", "--kernel", "gauss"])
    assert e.value.code == 2
    assert main(["data", "--out", str(tmp_path / "d.csv"), "--no-progress"]) == 2
    assert "must end in .npz" in capsys.readouterr().err


def test_every_target_parses():
    parser = argparse.ArgumentParser()
    cli_data.add_parser(parser.add_subparsers())
    for argv, kind, params in [
        (["--kernel", "exp", "--beta", "2"], "exp", {"beta": 2.0}),
        (["--kernel", "bump"], "bump", {"omega": 0.1}),
        (["--kernel", "airy", "--scale", "0.5"], "airy", {"scale": 0.5}),
        (["--target", "lorenz96", "--dim", "6", "--forcing", "0.2"], "lorenz96", {"dim": 6, "forcing": 0.2}),
    ]:
        s = cli_data.settings_from_args(parser.parse_args(["data", *argv]))
        assert s.target == kind and s.target_params == params and s.n_t == 1001


def test_forcing_outside_fading_memory_needs_allow_unstable(tmp_path, capsys):
    from jaxmem.internal import main

    out = tmp_path / "l96.npz"
    args = ["data", "--kernel", "lorenz96", "--forcing", "0.95", "--n", "2", "--duration", "1", "--out", str(out),
            "--no-progress"]
    assert main(args) == 2
    assert "0.95" in capsys.readouterr().err and not out.exists()
    assert main([*args, "--allow-unstable"]) == 0 and out.exists()
    assert main(["data", "--kernel", "exp", "--allow-unstable", "--out", str(tmp_path / "e.npz")]) == 2
