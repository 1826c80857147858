"""Shared test utilities: `tree_allclose`, independent quadrature references, and the
registries of kernels and models that the contract tests parametrize over."""

import math
import warnings
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.tree_util as jtu
import numpy as np
import scipy.integrate as si
import scipy.special as sps

import jaxmem


def tree_allclose(x, y, *, rtol=1e-10, atol=1e-12):
    """Whether two PyTrees have the same structure and allclose array leaves."""
    if jtu.tree_structure(x) != jtu.tree_structure(y):
        return False
    for a, b in zip(jtu.tree_leaves(x), jtu.tree_leaves(y)):
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape or not np.allclose(a, b, rtol=rtol, atol=atol):
            return False
    return True


# --- Independent references ------------------------------------------------------------------


def quad_half_line(f, breakpoints=(), *, epsrel=1e-13):
    r"""$\int_0^\infty f(t)\,dt$ by `scipy.integrate.quad`, split at `breakpoints` (> 0), the
    last piece on $[\max(\text{breakpoints}), \infty)$."""
    edges = [0.0, *sorted({float(p) for p in breakpoints if p > 0})]
    total = 0.0
    with warnings.catch_warnings():
        # epsrel=1e-13 is at quad's floor: "roundoff error detected" there means ~1e-14
        warnings.simplefilter("ignore", si.IntegrationWarning)
        for lo, hi in zip(edges[:-1], edges[1:]):
            total += si.quad(f, lo, hi, epsabs=0.0, epsrel=epsrel, limit=1000)[0]
        total += si.quad(f, edges[-1], np.inf, epsabs=0.0, epsrel=epsrel, limit=1000)[0]
    return total


def log_bump_moment(lag, width, w, n):
    r"""$\log\int_0^\infty t^n e^{-wt}e^{-(t-L)^2/(2\sigma^2)}\,dt$ by `scipy.integrate.quad`.

    The integrand is a Gaussian centred at $\mu = L - \sigma^2 w$ (times $t^n$); it is
    rescaled by its largest value on $t \geq 0$ before integrating, so values far below the
    float64 range (e^{-8000}) are still resolved, and integrated on panels that follow its
    scale ($\sigma$, or $\sigma^2/|\mu|$ when the peak is cut off at $t = 0$).
    """
    L, s = float(lag), float(width)
    mu = L - s * s * w
    if mu > 0:
        lo, hi = max(0.0, mu - 40 * s), mu + 40 * s
        pts = [mu + k * s for k in range(-39, 40) if lo < mu + k * s < hi]
    else:
        h = s / max(1.0, -mu / s)
        lo, hi = 0.0, min(40 * s, 60 * h)
        pts = [k * h for k in range(1, 60) if k * h < hi]
    hi = hi + 10 * s * n

    def expo(t):
        e = -w * t - (t - L) ** 2 / (2 * s * s)
        if n:
            e += n * math.log(t) if t > 0 else -math.inf
        return e

    t_star = max(mu, 0.0)
    if n:
        # the maximiser of t e^{-(t-mu)^2/(2 s^2)}
        t_star = 0.5 * (mu + math.sqrt(mu * mu + 4 * s * s))
    m = expo(max(t_star, lo, 1e-300))
    val = si.quad(lambda t: math.exp(expo(t) - m), lo, hi, points=pts, epsabs=0.0, epsrel=1e-13, limit=2000)[
        0
    ]
    return math.log(val) + m


def central_difference(f, x, eps=1e-6):
    """Central finite differences of a scalar function of a float64 numpy vector."""
    x = np.asarray(x, dtype=np.float64)
    out = np.zeros_like(x)
    for i in range(x.size):
        e = np.zeros_like(x)
        e[i] = eps * max(1.0, abs(x[i]))
        out[i] = (f(x + e) - f(x - e)) / (2 * e[i])
    return out


# --- Registries ------------------------------------------------------------------------------


class KernelCase(NamedTuple):
    """A registry entry: a factory for the kernel, an independent numpy/scipy implementation of
    its values (for quadrature references), and breakpoints where that quadrature should split."""

    make: Callable[[], jaxmem.AbstractKernel]
    ref: Callable[[float], float]
    points: tuple[float, ...]


_GRID_TS = np.concatenate([np.linspace(0.0, 2.0, 41), np.linspace(2.1, 12.0, 100)])
_GRID_VALUES = np.exp(-0.4 * _GRID_TS) * np.cos(1.3 * _GRID_TS)


def _grid_ref(t):
    return float(np.interp(t, _GRID_TS, _GRID_VALUES, left=0.0, right=0.0))


def _airy_ref(shift, scale):
    return lambda t: float(sps.airy(scale * (t - shift))[0])


def _bump_ref(lag, width, amplitude=1.0):
    return lambda t: amplitude * math.exp(-((t - lag) ** 2) / (2 * width**2))


def _power_ref(omega, scale=1.0):
    return lambda t: (1.0 + t / scale) ** (-(1.0 + omega))


def _expsum_ref(coeffs, rates):
    return lambda t: float(sum(c * math.exp(-r * t) for c, r in zip(coeffs, rates)))


def _around(lag, width, n=8):
    return tuple(lag + k * width for k in range(-n, n + 1) if lag + k * width > 0)


_AIRY_POINTS = tuple(np.linspace(0.0, 40.0, 161)[1:])

KERNELS = {
    "expsum": KernelCase(
        lambda: jaxmem.ExpSum([1.0, -0.5, 0.25], [0.5, 2.0, 7.0]),
        _expsum_ref([1.0, -0.5, 0.25], [0.5, 2.0, 7.0]),
        (0.1, 1.0, 5.0, 20.0),
    ),
    "powerlaw_0.25": KernelCase(lambda: jaxmem.PowerLaw(0.25), _power_ref(0.25), (1.0, 10.0, 100.0)),
    "powerlaw_1": KernelCase(lambda: jaxmem.PowerLaw(1.0), _power_ref(1.0), (1.0, 10.0, 100.0)),
    "powerlaw_2_scale3": KernelCase(
        lambda: jaxmem.PowerLaw(2.0, scale=3.0), _power_ref(2.0, 3.0), (3.0, 30.0, 300.0)
    ),
    "powerlaw_2.5_scale0.5": KernelCase(
        lambda: jaxmem.PowerLaw(2.5, scale=0.5), _power_ref(2.5, 0.5), (0.5, 5.0, 50.0)
    ),
    "bump_0.5": KernelCase(lambda: jaxmem.GaussianBump(0.5, 0.5), _bump_ref(0.5, 0.5), _around(0.5, 0.5)),
    "bump_18": KernelCase(lambda: jaxmem.GaussianBump(18.0, 0.5), _bump_ref(18.0, 0.5), _around(18.0, 0.5)),
    "bump_100": KernelCase(
        lambda: jaxmem.GaussianBump(100.0, 2.0, amplitude=1.5),
        _bump_ref(100.0, 2.0, 1.5),
        _around(100.0, 2.0),
    ),
    "airy": KernelCase(lambda: jaxmem.Airy(), _airy_ref(6.0, 1.0), _AIRY_POINTS),
    "airy_shift3_scale2": KernelCase(
        lambda: jaxmem.Airy(shift=3.0, scale=2.0), _airy_ref(3.0, 2.0), _AIRY_POINTS
    ),
    "grid": KernelCase(lambda: jaxmem.GridKernel(_GRID_TS, _GRID_VALUES), _grid_ref, tuple(_GRID_TS[1:])),
    "canonical_sum": KernelCase(
        lambda: jaxmem.ExpSum([1.0], [0.5]) + jaxmem.GaussianBump(18.0, 0.5),
        lambda t: math.exp(-0.5 * t) + _bump_ref(18.0, 0.5)(t),
        (1.0, 5.0, 10.0, *_around(18.0, 0.5), 40.0),
    ),
    "scaled_powerlaw": KernelCase(
        lambda: -2.0 * jaxmem.PowerLaw(0.5), lambda t: -2.0 * _power_ref(0.5)(t), (1.0, 10.0, 100.0)
    ),
    "mixed": KernelCase(
        lambda: 0.5 * jaxmem.Airy() + jaxmem.PowerLaw(1.5) - jaxmem.GridKernel(_GRID_TS, _GRID_VALUES),
        lambda t: 0.5 * _airy_ref(6.0, 1.0)(t) + _power_ref(1.5)(t) - _grid_ref(t),
        tuple(sorted({*_GRID_TS[1:], *_AIRY_POINTS, 100.0})),
    ),
}

PARAMETERIZATIONS = ("identity", "exp", "softplus", "best")

_A = np.array([1.0, -0.5, 0.3])
_W = np.array([0.5, 1.3, 3.0])


def _diagonal(p):
    return lambda: jaxmem.DiagonalRNN(_A, _W, parameterization=p)


MODELS = {
    **{f"diagonal_{p}": _diagonal(p) for p in PARAMETERIZATIONS},
    "diagonal_padded": lambda: jaxmem.DiagonalRNN(_A, _W, parameterization="softplus").pad(5),
    "linear_d1": lambda: jaxmem.LinearRNN.init(jax.random.key(0), 3),
    "linear_d2": lambda: jaxmem.LinearRNN.init(jax.random.key(1), 3, inputs=2),
}


def target_for(model, kernel):
    """The target a model is compared with: one kernel per input channel."""
    d = model.dense()[1].shape[1]
    return kernel if d == 1 else [kernel] + [jaxmem.ExpSum([0.5], [1.0 + j]) for j in range(1, d)]


class count_traces:
    """Count how often JAX traces a jitted function named `name` (JAX's compile log, through
    `jax.monitoring`): `with count_traces("advance_slots") as c: ...; c.n`."""

    def __init__(self, *names):
        self.names, self.n = set(names), 0

    def _listener(self, event, duration, **kwargs):
        if event == "/jax/core/compile/jaxpr_trace_duration" and kwargs.get("fun_name") in self.names:
            self.n += 1

    def __enter__(self):
        jax.monitoring.register_event_duration_secs_listener(self._listener)
        return self

    def __exit__(self, *exc):
        jax.monitoring.unregister_event_duration_listener(self._listener)
        return False


def deny_writes_under(monkeypatch, folder):
    """`os.access` answers no to W_OK under `folder`, as on a read-only file system (tests run
    as root, for whom `chmod` does not stop writes)."""
    import os

    real = os.access
    folder = os.path.abspath(folder)

    def access(path, mode, *args, **kwargs):
        if mode & os.W_OK and os.path.abspath(path).startswith(folder):
            return False
        return real(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)
