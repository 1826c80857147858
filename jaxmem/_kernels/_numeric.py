"""Kernels without elementary closed forms: Airy memory and kernels given on a grid."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._errors import as_float_array, check, check_finite, show
from .._quadrature import gauss_legendre, half_line_rule
from .._special import exp_moments_unit
from ._base import AbstractKernel


def _airy_host(x):
    x = np.asarray(x, dtype=np.float64)
    # scipy returns NaN for huge arguments; Ai(x) and Ai'(x) are < 1e-300 past x = 100.
    big = x > 100.0
    import scipy.special as sps  # imported when used

    ai, aip, _, _ = sps.airy(np.where(big, 100.0, x))
    return np.where(big, 0.0, ai), np.where(big, 0.0, aip)


@jax.custom_jvp
def airy_ai(x):
    """The Airy function Ai(x), evaluated on the host by scipy (jit/vmap/grad-able)."""
    x = jnp.asarray(x)
    shape = jax.ShapeDtypeStruct(x.shape, x.dtype)
    ai, _ = jax.pure_callback(
        lambda v: tuple(np.asarray(a, dtype=v.dtype) for a in _airy_host(v)),
        (shape, shape),
        x,
        vmap_method="expand_dims",
    )
    return ai


def _airy_ai_prime(x):
    x = jnp.asarray(x)
    shape = jax.ShapeDtypeStruct(x.shape, x.dtype)
    _, aip = jax.pure_callback(
        lambda v: tuple(np.asarray(a, dtype=v.dtype) for a in _airy_host(v)),
        (shape, shape),
        x,
        vmap_method="expand_dims",
    )
    return aip


@airy_ai.defjvp
def _airy_ai_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    return airy_ai(x), _airy_ai_prime(x) * dx


class Airy(AbstractKernel):
    r"""Airy memory $\rho(t) = \mathrm{Ai}(s\,(t - t_0))$: oscillating up to $t_0$, then decaying
    super-exponentially, the oscillating target of the paper's experiments.

    There is no closed form for its Laplace moments: they come from a graded Gauss-Legendre
    rule whose node values are computed once, at construction, with `scipy.special.airy`
    (relative accuracy ~1e-12). Hence `shift` and `scale` must be concrete numbers (not traced);
    everything downstream of a constructed kernel jits, vmaps and differentiates.

    **Arguments:**

    - `shift`: $t_0 \geq 0$.
    - `scale`: $s > 0$.

    ```python
    import jaxmem
    k = jaxmem.Airy(shift=6.0)
    k.laplace(1.0), k.sq_norm()
    ```
    """

    shift: float = eqx.field(static=True)
    scale: float = eqx.field(static=True)
    nodes: Float[Array, " n"]
    weights: Float[Array, " n"]
    values: Float[Array, " n"]

    def __init__(self, shift=6.0, scale=1.0):
        if any(isinstance(x, (str, bytes, bool, np.bool_)) for x in (shift, scale)):
            raise TypeError(f"Airy shift and scale must be concrete Python numbers; got {shift!r}, {scale!r}.")
        try:
            shift, scale = float(shift), float(scale)
        except (TypeError, jax.errors.ConcretizationTypeError) as e:
            raise TypeError("Airy shift and scale must be concrete Python numbers.") from e
        if not (np.isfinite(shift) and shift >= 0):
            raise ValueError(f"Airy shift must be finite and >= 0; got {shift}.")
        if not (np.isfinite(scale) and scale > 0):
            raise ValueError(f"Airy scale must be finite and > 0; got {scale}.")
        self.shift, self.scale = shift, scale
        # Ai(x) < 1e-50 for x > 25: the rule spans the oscillations and the decay with margin.
        nodes, weights = half_line_rule(shift + 30.0 / scale, n=30)
        nodes, weights = np.asarray(nodes, np.float64), np.asarray(weights, np.float64)
        self.nodes = jnp.asarray(nodes)
        self.weights = jnp.asarray(weights)
        self.values = jnp.asarray(_airy_host(scale * (nodes - shift))[0])

    def __call__(self, t):
        return airy_ai(self.scale * (jnp.asarray(t) - self.shift))

    def laplace(self, w):
        w = jnp.asarray(w)[..., None]
        return jnp.sum(self.weights * jnp.exp(-w * self.nodes) * self.values, axis=-1)

    def laplace_t(self, w):
        w = jnp.asarray(w)[..., None]
        return jnp.sum(self.weights * self.nodes * jnp.exp(-w * self.nodes) * self.values, axis=-1)

    def sq_norm(self):
        return jnp.sum(self.weights * self.values**2)

    def l1_norm(self):
        return jnp.sum(self.weights * jnp.abs(self.values))

    def horizon(self):
        return jnp.asarray(self.shift + 30.0 / self.scale)

    def _inner(self, other):
        if isinstance(other, GridKernel):
            return None  # the grid's per-segment rule resolves its kinks; this one does not
        return jnp.sum(self.weights * self.values * other(self.nodes))


class GridKernel(AbstractKernel):
    r"""A kernel known only on a grid: $\rho$ is the piecewise-linear interpolant of `values`
    at `ts` on $[t_0, t_{n-1}]$ and zero outside it.

    Every moment is exact for that interpolant: on each segment
    $\int e^{-wt}(\alpha + \beta t)\,dt$ has a closed form, evaluated through the stable
    functions $\psi_n(x) = \int_0^1 u^n e^{-xu}du$ (no cancellation at small $wh$).

    **Arguments:**

    - `ts`: strictly increasing times $\geq 0$, shape `(n,)`, $n \geq 2$.
    - `values`: $\rho(t_i)$, shape `(n,)`.

    ```python
    import jax.numpy as jnp, jaxmem
    ts = jnp.linspace(0.0, 30.0, 3001)
    k = jaxmem.GridKernel(ts, jnp.exp(-ts))
    k.laplace(1.0)                        # ~ 0.5
    ```
    """

    ts: Float[Array, " n"]
    values: Float[Array, " n"]

    def __init__(self, ts, values):
        ts = check_finite(as_float_array(ts, "GridKernel ts", ndim=1), "GridKernel ts")
        values = check_finite(as_float_array(values, "GridKernel values", ndim=1), "GridKernel values")
        if ts.shape != values.shape or ts.shape[0] < 2:
            raise ValueError(
                f"GridKernel ts and values must have the same shape (n,), n >= 2; got "
                f"{ts.shape} and {values.shape}."
            )
        # `check` raises at once on concrete ts, and through eqx.error_if under jit/vmap.
        ts = check(
            ts,
            (ts[0] < 0) | jnp.any(jnp.diff(ts) <= 0),
            f"GridKernel ts must be >= 0 and strictly increasing; got {show(ts)}.",
        )
        self.ts, self.values = ts, values

    def __call__(self, t):
        return jnp.interp(jnp.asarray(t), self.ts, self.values, left=0.0, right=0.0)

    def _segments(self, w):
        w = jnp.asarray(w)[..., None]
        t0, h = self.ts[:-1], jnp.diff(self.ts)
        y0, dy = self.values[:-1], jnp.diff(self.values)
        p0, p1, p2 = exp_moments_unit(w * h)
        return w, t0, h, y0, dy, p0, p1, p2

    def laplace(self, w):
        w, t0, h, y0, dy, p0, p1, _ = self._segments(w)
        return jnp.sum(jnp.exp(-w * t0) * h * (y0 * p0 + dy * p1), axis=-1)

    def laplace_t(self, w):
        w, t0, h, y0, dy, p0, p1, p2 = self._segments(w)
        seg = t0 * h * (y0 * p0 + dy * p1) + h**2 * (y0 * p1 + dy * p2)
        return jnp.sum(jnp.exp(-w * t0) * seg, axis=-1)

    def sq_norm(self):
        h = jnp.diff(self.ts)
        y0, y1 = self.values[:-1], self.values[1:]
        return jnp.sum(h * (y0**2 + y0 * y1 + y1**2) / 3.0)

    def l1_norm(self):
        # Exact for the interpolant: split the segments where they cross zero.
        h = jnp.diff(self.ts)
        y0, y1 = self.values[:-1], self.values[1:]
        same = y0 * y1 >= 0
        denom = jnp.where(same, 1.0, jnp.abs(y0) + jnp.abs(y1))
        crossing = h * (y0**2 + y1**2) / (2 * denom)
        return jnp.sum(jnp.where(same, h * jnp.abs(y0 + y1) / 2, crossing))

    def horizon(self):
        return self.ts[-1]

    def _inner(self, other):
        # Gauss-Legendre on each segment, where the interpolant is linear: spectrally accurate
        # for a smooth `other` (the generic graded rule straddles the kinks, ~1e-6), and exact
        # against another grid kernel on the merged grid (the product is quadratic there).
        ts = self.ts
        if isinstance(other, GridKernel):
            ts = jnp.sort(jnp.concatenate([self.ts, other.ts]))
        x, wx = _GL8
        lo, hi = ts[:-1, None], ts[1:, None]
        t = 0.5 * (lo + hi) + 0.5 * (hi - lo) * x
        return jnp.sum(0.5 * (hi - lo) * wx * self(t) * other(t))


_GL8 = gauss_legendre(8)
