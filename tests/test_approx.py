"""Best approximation (`best_approximation`, `width_needed`): checked against mpmath and scipy, never against itself."""

import argparse

import jax
import jax.numpy as jnp
import mpmath as mp
import numpy as np
import pytest
import scipy.integrate as si

jax.config.update("jax_enable_x64", True)

import jaxmem
from jaxmem import best_approximation, width_needed
from jaxmem._cli import approx as cli_approx
from jaxmem.internal import named_rates


def _mp_best(omega, rates):
    """Best L² error and coefficients of (1+t)^-(1+omega) on fixed rates, with 50 digits."""
    mp.mp.dps = 50
    w = [mp.mpf(x) for x in rates]
    om = mp.mpf(omega)
    G = mp.matrix([[1 / (wi + wj) for wj in w] for wi in w])
    b = mp.matrix([mp.e**wi * mp.expint(1 + om, wi) for wi in w])
    a = mp.lu_solve(G, b)
    c = 1 / (1 + 2 * om)
    J = c - (b.T * a)[0]
    return float(mp.sqrt(J / c)), np.array([float(x) for x in a])


@pytest.mark.parametrize("rates", [[0.5, 1.0, 2.0], [0.3, 0.7, 1.5, 3.0, 6.0]])
def test_fixed_rates_match_mpmath(rates):
    fit = best_approximation(jaxmem.PowerLaw(1.0), len(rates), rates=jnp.asarray(rates))
    rel, a = _mp_best(1.0, rates)
    assert fit.result == jaxmem.RESULTS.successful and fit.rates_mode == "fixed"
    np.testing.assert_allclose(float(fit.relative_error), rel, rtol=1e-8)
    np.testing.assert_allclose(np.asarray(fit.model.coeffs), a, rtol=1e-6)


def test_fixed_error_non_increasing_in_width():
    target = jaxmem.PowerLaw(0.5)
    errs = [float(best_approximation(target, m, rates="universal", scale=0.5).relative_error) for m in (1, 2, 4, 8)]
    assert all(e2 <= e1 * (1 + 1e-9) for e1, e2 in zip(errs, errs[1:])), errs


def test_free_never_worse_than_fixed_grid():
    target = jaxmem.PowerLaw(1.0)
    fixed = best_approximation(target, 3, rates="universal")
    free = best_approximation(target, 3, n_starts=3, key=jax.random.key(1))
    assert float(free.relative_error) <= float(fixed.relative_error) * (1 + 1e-8)
    assert np.all(np.asarray(free.model.rates) > 0)


def test_min_rate_is_respected():
    fit = best_approximation(jaxmem.PowerLaw(1.0), 3, min_rate=0.5, n_starts=2)
    assert np.all(np.asarray(fit.model.rates) >= 0.5)


@pytest.mark.parametrize("norm", ["L2", "L1"])
def test_errors_match_scipy_quadrature(norm):
    target = jaxmem.PowerLaw(0.5)
    rates = [0.2, 1.0, 3.0]
    fit = best_approximation(target, 3, rates=jnp.asarray(rates), norm=norm)
    a = np.asarray(fit.model.coeffs)
    resid = lambda t: (1 + t) ** -1.5 - np.sum(a * np.exp(-np.asarray(rates) * t))
    p = 2 if norm == "L2" else 1
    f = lambda t: abs(resid(t)) ** p
    val = sum(si.quad(f, lo, hi, limit=400, epsabs=0, epsrel=1e-12)[0] for lo, hi in [(0, 1), (1, 30), (30, np.inf)])
    ref = val**0.5 if p == 2 else val
    np.testing.assert_allclose(float(fit.error), ref, rtol=1e-9 if p == 2 else 1e-6)
    np.testing.assert_allclose(float(fit.relative_error), ref / (0.5**0.5 if p == 2 else 2.0), rtol=1e-6)


def test_named_rates():
    np.testing.assert_allclose(np.asarray(named_rates("jackson", 3, alpha=1.0, beta=1.0)), [0.5, 1.0, 1.5])
    np.testing.assert_allclose(np.asarray(named_rates("universal", 3, scale=2.0)), [2.0, 4.0, 6.0])


def test_bad_input():
    k = jaxmem.PowerLaw(1.0)
    with pytest.raises(ValueError, match="width"):
        best_approximation(k, 0)
    with pytest.raises(ValueError, match="min_rate < max_rate"):
        best_approximation(k, 2, min_rate=2.0, max_rate=1.0)
    with pytest.raises(ValueError, match="unknown rates name"):
        best_approximation(k, 2, rates="chebyshev")
    with pytest.raises(ValueError, match="norm"):
        best_approximation(k, 2, norm="Linf")
    with pytest.raises(ValueError, match="eps"):
        width_needed(k, 0.0)
    with pytest.raises(ValueError, match="jackson"):
        best_approximation(k, 2, rates="jackson")
    parser = argparse.ArgumentParser()
    cli_approx.add_parser(parser.add_subparsers())
    with pytest.raises(SystemExit):
        parser.parse_args(["approx", "--kernel", "gauss"])


@pytest.mark.slow
def test_cli_end_to_end(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    cli_approx.add_parser(parser.add_subparsers())
    args = parser.parse_args(["approx", "--omega", "1,2", "--widths", "1,2", "--starts", "2",
                              "--eps", "0.2", "--max-width", "4", "--out", str(tmp_path)])
    assert args.func(args) == 0
    for name in ("approx.csv", "approx.json", "approx.png"):
        assert (tmp_path / name).stat().st_size > 0
    lines = (tmp_path / "approx.csv").read_text().splitlines()
    assert lines[0].startswith("kernel,omega,width,norm,min_rate,rates_mode,error")
    parts = [line.split(",")[lines[0].split(",").index("part")] for line in lines[1:]]
    assert parts.count("map") == 2 * 2 * 2  # params x widths x (floor, free)
    assert set(parts) == {"map", "search"}  # the width search's fits are rows too
    assert "width needed" in capsys.readouterr().out
