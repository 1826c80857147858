"""Continuous-time linear RNNs: dh/dt = W h + U x_t, y_t = c^T h_t."""

import abc

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import jax.scipy.linalg as jsl
import numpy as np
from jaxtyping import Array, Bool, Float, PRNGKeyArray

from ._errors import (
    as_float_array,
    check,
    check_finite,
    check_fraction,
    check_positive,
    is_integer,
    is_real,
    is_traced,
    positive_int,
    show,
)
from ._parameterization import AbstractParameterization, get_parameterization


class AbstractRNN(eqx.Module):
    r"""A linear RNN $\dot h = Wh + Ux_t$, $\hat y_t = c^\top h_t$, $h_{-\infty} = 0$, with kernel
    $\hat\rho(t) = U^\top e^{W^\top t}c$ (one column per input channel)."""

    @abc.abstractmethod
    def dense(self) -> tuple[Array, Array, Array]:
        """The dense parameters `(W, U, c)` with shapes `(m, m)`, `(m, d)`, `(m,)`."""

    @abc.abstractmethod
    def kernel(self, t) -> Float[Array, "..."]:
        """The model's memory kernel at times `t`, exactly (no ODE solve)."""

    @abc.abstractmethod
    def is_stable(self) -> Bool[Array, ""]:
        """Whether every eigenvalue of W has negative real part."""

    def __call__(self, ts, xs, *, rtol: float = 1e-8, atol: float = 1e-10, max_steps: int = 100_000):
        r"""Outputs $\hat y$ at `ts` for an input sampled at `ts`, by solving the hidden-state
        ODE with Diffrax (Tsit5, adaptive, steps clipped to the samples) from $h = 0$ at
        `ts[0]`. The input is linearly interpolated between samples.

        **Arguments:**

        - `ts`: increasing sample times, shape `(n,)`.
        - `xs`: inputs, shape `(n,)` for one channel or `(n, d)`.

        **Returns:** outputs at `ts`, shape `(n,)`.
        """
        W, U, c = self.dense()
        ts = jnp.asarray(ts)
        xs = jnp.asarray(xs)
        if ts.ndim != 1 or ts.shape[0] < 2:
            raise ValueError(f"ts must be a 1-D array of at least 2 times; got shape {ts.shape}.")
        ts = check(ts, ~jnp.all(jnp.isfinite(ts)) | jnp.any(jnp.diff(ts) <= 0),
                   f"ts must be finite and strictly increasing; got {show(ts)}.")
        rtol, atol = check_fraction(rtol, "rtol"), check_positive(atol, "atol")
        positive_int(max_steps, "max_steps")
        if max_steps < ts.shape[0] - 1:
            raise ValueError(f"max_steps must be at least len(ts) - 1 = {ts.shape[0] - 1} (the solve stops at "
                             f"every sample); got {max_steps}.")
        if xs.ndim == 1:
            xs = xs[:, None]
        if xs.shape != (ts.shape[0], U.shape[1]):
            raise ValueError(
                f"inputs must have shape (n,) or (n, d) = ({ts.shape[0]}, {U.shape[1]}) for "
                f"ts of shape {ts.shape}; got {xs.shape}."
            )
        path = diffrax.LinearInterpolation(ts=ts, ys=xs)

        def field(t, h, args):
            return W @ h + U @ path.evaluate(t)

        controller = diffrax.ClipStepSizeController(
            diffrax.PIDController(rtol=rtol, atol=atol), step_ts=ts
        )
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(field),
            diffrax.Tsit5(),
            ts[0],
            ts[-1],
            None,
            jnp.zeros(W.shape[0], dtype=W.dtype),
            saveat=diffrax.SaveAt(ts=ts),
            stepsize_controller=controller,
            max_steps=max_steps,
        )
        return sol.ys @ c


class DiagonalRNN(AbstractRNN):
    r"""The modal linear RNN $W = -\mathrm{diag}(w)$, $U = \mathbf 1$, $c = a$:
    $\hat\rho(t) = \sum_i a_i e^{-w_i t}$.

    The rates are stored through a reparameterisation `w = f(v)` chosen by name
    (`"identity"`, `"exp"`, `"softplus"`, `"best"`) or instance. A boolean `mask` switches
    modes off: masked modes contribute nothing and receive zero gradient, so a model padded to a
    larger width behaves exactly like the narrower one (for vmapping across widths).

    **Arguments:**

    - `a`: output weights, shape `(m,)`.
    - `w`: decay rates `> 0`, shape `(m,)` (stored as `v = f^{-1}(w)`).
    - `parameterization`: keyword-only, default `"identity"`.
    - `mask`: keyword-only, boolean `(m,)`, default all modes on.

    ```python
    import jax.numpy as jnp, jaxmem
    model = jaxmem.DiagonalRNN(jnp.array([1.0, 0.0]), jnp.array([0.5, 1.0]))
    model.kernel(jnp.array([0.0, 2.0]))   # [1, e^{-1}]
    ```
    """

    a: Float[Array, " m"]
    v: Float[Array, " m"]
    mask: Float[Array, " m"]
    parameterization: AbstractParameterization = eqx.field(static=True)

    def __init__(self, a, w=None, *, v=None, parameterization="identity", mask=None):
        self.parameterization = get_parameterization(parameterization)
        if (w is None) == (v is None):
            raise TypeError("DiagonalRNN takes exactly one of the rates `w` or the stored parameter `v`.")
        a = check_finite(as_float_array(a, "DiagonalRNN a", ndim=1), "DiagonalRNN a")
        name = "w" if v is None else "v"
        raw = as_float_array(w if v is None else v, f"DiagonalRNN {name}", ndim=1)
        raw = check_finite(raw, f"DiagonalRNN {name}")
        if a.shape != raw.shape or a.shape[0] < 1:
            raise ValueError(
                f"DiagonalRNN a and {name} must have the same shape (m,), m >= 1; got {a.shape} "
                f"and {raw.shape}."
            )
        # Stored as 0./1. floats so that `jax.grad` accepts the module; it enters only through
        # `mask > 0.5`, so its gradient is exactly zero and optimisers leave it alone.
        mask = jnp.ones(a.shape, a.dtype) if mask is None else jnp.asarray(mask, dtype=a.dtype)
        if mask.shape != a.shape:
            raise ValueError(f"DiagonalRNN mask must have shape {a.shape}; got {mask.shape}.")
        if v is None:
            raw = check(raw, ~(raw > 0), f"DiagonalRNN rates w must be > 0 (W = -diag(w) Hurwitz); got {show(raw)}.")
            raw = self.parameterization.inverse(raw)
        self.a = a
        self.v = raw
        self.mask = mask

    @property
    def width(self) -> int:
        return self.a.shape[-1]

    @property
    def active(self) -> Bool[Array, " m"]:
        """Which modes are switched on (not masked)."""
        return self.mask > 0.5

    @property
    def rates(self) -> Float[Array, " m"]:
        """The decay rates `w = f(v)` (masked modes included, with their padding values)."""
        return self.parameterization(self.v)

    @property
    def coeffs(self) -> Float[Array, " m"]:
        """The effective output weights: `a` with masked modes set to zero."""
        return jnp.where(self.active, self.a, 0.0)

    def dense(self):
        w = jnp.where(self.active, self.rates, 1.0)
        return -jnp.diag(w), jnp.ones((self.width, 1), w.dtype), self.coeffs

    def kernel(self, t):
        t = jnp.asarray(t)
        w = jnp.where(self.active, self.rates, 1.0)
        return jnp.sum(self.coeffs * jnp.exp(-w * t[..., None]), axis=-1)

    def is_stable(self):
        return jnp.all(jnp.where(self.active, self.rates > 0, True))

    def pad(self, width: int) -> "DiagonalRNN":
        """The same model padded with masked modes (a = 0, w = 1) to `width` modes."""
        extra = width - self.width
        if extra < 0:
            raise ValueError(f"cannot pad a width-{self.width} model to the smaller width {width}.")
        v_pad = self.parameterization.inverse(jnp.ones(extra, self.v.dtype))
        return DiagonalRNN(
            jnp.concatenate([self.a, jnp.zeros(extra, self.a.dtype)]),
            v=jnp.concatenate([self.v, v_pad]),
            parameterization=self.parameterization,
            mask=jnp.concatenate([self.mask, jnp.zeros(extra, self.mask.dtype)]),
        )

    @classmethod
    def init(
        cls, key: PRNGKeyArray, width: int, *, min_rate=0.5, max_rate=4.0, scale=None, parameterization="identity"
    ) -> "DiagonalRNN":
        """A stable random initialisation: rates log-uniform in `[min_rate, max_rate]`,
        coefficients normal with standard deviation `scale` (default `1/sqrt(width)`)."""
        _check_width(width)
        if not (is_real(min_rate) and is_real(max_rate) and 0 < min_rate < max_rate < np.inf):
            raise ValueError(f"need finite rates 0 < min_rate < max_rate; got {min_rate!r}, {max_rate!r}.")
        if scale is not None:
            check_positive(scale, "scale")
        kw, ka = jr.split(key)
        w = jnp.exp(jr.uniform(kw, (width,), minval=np.log(min_rate), maxval=np.log(max_rate)))
        scale = 1.0 / np.sqrt(width) if scale is None else scale
        return cls(scale * jr.normal(ka, (width,)), jnp.sort(w), parameterization=parameterization)

    def with_params(self, a, v) -> "DiagonalRNN":
        """The same model (parameterization, mask) with new `a` and stored `v` (traceable)."""
        return eqx.tree_at(lambda m: (m.a, m.v), self, (a, v))


class LinearRNN(AbstractRNN):
    r"""A dense linear RNN with parameters $(W, U, c)$, $W \in \mathbb R^{m\times m}$ Hurwitz,
    $U \in \mathbb R^{m\times d}$, $c \in \mathbb R^m$; kernel $\hat\rho(t) = U^\top e^{W^\top t}c$.

    ```python
    import jax.numpy as jnp, jaxmem
    model = jaxmem.LinearRNN(-jnp.eye(2), jnp.ones((2, 1)), jnp.array([1.0, 0.5]))
    model.kernel(jnp.array([0.0, 1.0]))   # shape (2, 1): [[1.5], [1.5/e]]
    ```
    """

    W: Float[Array, "m m"]
    U: Float[Array, "m d"]
    c: Float[Array, " m"]

    def __init__(self, W, U, c):
        W = check_finite(as_float_array(W, "LinearRNN W", ndim=2), "LinearRNN W")
        U = as_float_array(U, "LinearRNN U")
        if U.ndim == 1:
            U = U[:, None]
        U = check_finite(U, "LinearRNN U")
        c = check_finite(as_float_array(c, "LinearRNN c", ndim=1), "LinearRNN c")
        m = W.shape[0]
        if W.shape != (m, m) or U.ndim != 2 or U.shape[0] != m or c.shape != (m,) or m < 1:
            raise ValueError(
                f"LinearRNN needs W (m, m), U (m, d), c (m,) with m >= 1; got W {W.shape}, "
                f"U {U.shape}, c {c.shape}."
            )
        if not is_traced(W):
            eig = np.linalg.eigvals(np.asarray(W))
            if np.any(eig.real >= 0):
                raise ValueError(
                    f"LinearRNN W must be Hurwitz (every eigenvalue with real part < 0); its "
                    f"largest real part is {eig.real.max():.6g} (eigenvalues {show(eig)})."
                )
        self.W, self.U, self.c = W, U, c

    def dense(self):
        return self.W, self.U, self.c

    def kernel(self, t):
        t = jnp.asarray(t)
        expm = jax.vmap(lambda s: jsl.expm(self.W.T * s))(t.reshape(-1))
        out = jnp.einsum("md,nmk,k->nd", self.U, expm, self.c)
        return out.reshape(*t.shape, self.U.shape[1])

    def is_stable(self):
        return jnp.all(jnp.real(jnp.linalg.eigvals(self.W)) < 0)

    @classmethod
    def init(cls, key: PRNGKeyArray, width: int, inputs: int = 1, *, margin: float = 0.5) -> "LinearRNN":
        """A stable random initialisation: W = -margin·I + skew-symmetric + small noise with
        spectral abscissa <= -margin/2, U and c normal with variance 1/width."""
        _check_width(width)
        positive_int(inputs, "inputs")
        check_positive(margin, "margin")
        kw, ks, ku, kc = jr.split(key, 4)
        s = jr.normal(ks, (width, width)) / np.sqrt(width)
        noise = 0.25 * margin * jr.normal(kw, (width, width)) / np.sqrt(width)
        # ||noise||_2 <~ 0.5 margin, so Re(lambda) <= -margin + ||noise|| < -margin/2 w.h.p.;
        # rescale deterministically to guarantee it.
        norm = jnp.linalg.norm(noise, 2)
        noise = noise * jnp.minimum(1.0, 0.5 * margin / norm)
        W = -margin * jnp.eye(width) + (s - s.T) / 2 + noise
        U = jr.normal(ku, (width, inputs)) / np.sqrt(width)
        c = jr.normal(kc, (width,)) / np.sqrt(width)
        return cls(W, U, c)


def check_diagonal(model, what: str) -> DiagonalRNN:
    """`model`, which must be a `DiagonalRNN` whose active modes have rates > 0 and finite
    coefficients: checked at once when concrete, through `eqx.error_if` when traced (a model
    made from a stored `v`, or edited, bypasses the constructor's check of the rates)."""
    if not isinstance(model, DiagonalRNN):
        raise TypeError(f"{what} needs a DiagonalRNN; got {type(model).__name__}.")
    w = jnp.where(model.active, model.rates, 1.0)
    v = check(model.v, ~(w > 0), f"DiagonalRNN rates must be > 0; got {show(w)}.")
    a = check(model.a, ~jnp.isfinite(model.a), f"DiagonalRNN a must be finite; got {show(model.a)}.")
    return model if (a is model.a and v is model.v) else model.with_params(a, v)


def _check_width(width):
    if not is_integer(width):
        raise TypeError(f"width must be a positive integer; got {width!r}.")
    if width < 1:
        raise ValueError(f"width must be a positive integer; got {width!r}.")
