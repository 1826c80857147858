"""Fixed, graded Gauss-Legendre rules on [0, inf): jit-able quadrature for the fallbacks."""

import functools

import jax.numpy as jnp
import numpy as np


@functools.cache
def gauss_legendre(n: int):
    """Gauss-Legendre nodes and weights on [-1, 1] (numpy, float64): the one table of the
    package's fixed rules."""
    return np.polynomial.legendre.leggauss(n)


@functools.cache
def _reference_rule(n: int = 20):
    """Nodes and weights on [0, 1] (graded towards 0) plus a tail [1, inf) via t = 1/u.

    Returned as numpy arrays `(x, wx)`; a rule with horizon H is `(H*x, H*wx)`. The
    geometric panels near 0 resolve `e^{-wt}` for rates up to ~1e5/H; the uniform panels of
    width 1/50 resolve features of width >~ H/200; the tail map integrates power laws
    `t^{-p}`, p >= 1.5, and anything that decays faster.
    """
    g, gw = gauss_legendre(n)
    breaks = np.concatenate([[0.0], np.geomspace(1e-6, 1e-2, 5), np.linspace(0.02, 1.0, 50)])
    xs, ws = [], []
    for lo, hi in zip(breaks[:-1], breaks[1:]):
        xs.append(lo + (hi - lo) * (g + 1) / 2)
        ws.append((hi - lo) / 2 * gw)
    # Tail: int_1^inf f(t) dt = int_0^1 f(1/u) / u^2 du, with panels graded towards u = 0.
    tail_breaks = np.array([0.0, 1e-4, 1e-3, 1e-2, 0.1, 0.4, 1.0])
    for lo, hi in zip(tail_breaks[:-1], tail_breaks[1:]):
        u = lo + (hi - lo) * (g + 1) / 2
        wu = (hi - lo) / 2 * gw
        xs.append(1.0 / u)
        ws.append(wu / u**2)
    return np.concatenate(xs), np.concatenate(ws)


def half_line_rule(horizon, n: int = 20):
    """Nodes and weights of a rule for `int_0^inf f(t) dt` scaled to `horizon` (traceable)."""
    x, wx = _reference_rule(n)
    horizon = jnp.asarray(horizon)
    return horizon * jnp.asarray(x), horizon * jnp.asarray(wx)


def integrate(f, horizon, n: int = 20):
    """`int_0^inf f(t) dt` by the graded rule; `f` maps an array of times to values."""
    t, w = half_line_rule(horizon, n)
    return jnp.sum(w * f(t))
