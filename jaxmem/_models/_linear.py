"""Continuous-time linear RNNs: dh/dt = W h + U x_t, y_t = c^T h_t."""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import jax.scipy.linalg as jsl
import numpy as np
from jaxtyping import Array, Bool, Float, PRNGKeyArray

from .._errors import (
    as_float_array,
    check,
    check_finite,
    check_positive,
    is_real,
    is_traced,
    positive_int,
    show,
)
from .._parameterization import AbstractParameterization, get_parameterization
from ._base import (
    AbstractSequenceModel,
    check_pad,
    check_path,
    check_step,
    check_width,
    pad_rows,
)
from ._discrete import DiscreteDiagonalRNN
from ._scan import (
    dense_recurrence,
    foh_dense,
    foh_diagonal,
    linear_recurrence,
    with_rest,
)
from ._solve import adaptive_solve, check_times


class AbstractRNN(AbstractSequenceModel):
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
        ts, xs, rtol, atol = check_times(ts, xs, U.shape[1], rtol=rtol, atol=atol, max_steps=max_steps)
        h0 = jnp.zeros(W.shape[0], dtype=W.dtype)
        ys = adaptive_solve(lambda h, x: W @ h + U @ x, ts, xs, h0, rtol=rtol, atol=atol, max_steps=max_steps)
        return ys @ c

    def predict(self, xs, dt) -> Float[Array, " n"]:
        r"""The outputs $\hat y_j = c^\top h(t_j)$ on the grid $t_j = j\Delta$ for the
        piecewise-linear input through the samples `xs` (first-order hold), exactly:
        $h_{j+1} = e^{W\Delta}h_j + Px_j + Qx_{j+1}$ with $P, Q$ the integrals of
        $e^{Wu}U$ against the two hat functions, all three from one block matrix exponential
        (Van Loan), chained by `jax.lax.scan`. $h = 0$ at $t = 0$, so $\hat y_0 = 0$. Every
        linear RNN inherits it through `dense()`; `DiagonalRNN` overrides it with an
        associative scan.

        **Arguments:**

        - `xs`: one input path, shape `(n,)` (or `(n, d)` for `d` input channels; vmap over paths).
        - `dt`: the grid step $\Delta > 0$.

        **Returns:** the outputs, shape `(n,)`.

        ```python
        import jax.numpy as jnp, jaxmem
        model = jaxmem.LinearRNN(-jnp.eye(2), jnp.ones((2, 1)), jnp.array([1.0, 0.5]))
        model.predict(jnp.ones(4), 0.5)   # 1.5 (1 - e^{-t})
        ```
        """
        W, U, c = self.dense()
        d, what = U.shape[1], f"{type(self).__name__}.predict"
        xs = check_path(xs, what, channels=d)
        if xs.ndim == 1:
            if d != 1:
                raise ValueError(f"{what}: this model has {d} input channels, so xs must have shape (n, {d}); "
                                 f"got {xs.shape}.")
            xs = xs[:, None]
        dt = check_step(dt, what, xs.dtype)
        if xs.shape[0] == 1:
            return jnp.zeros(1, xs.dtype)
        A, P, Q = foh_dense(W, U, dt)
        bs = xs[:-1] @ P.T + xs[1:] @ Q.T
        return with_rest(dense_recurrence(A, bs), W.shape[0]) @ c


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

    def predict(self, xs, dt, *, sequential: bool | None = None) -> Float[Array, " n"]:
        r"""The outputs $\hat y_j = a^\top h(t_j)$ on the grid $t_j = j\Delta$ for the
        piecewise-linear input through the samples `xs` (first-order hold), exactly: per mode
        $h_{j+1} = \lambda h_j + p\,x_j + q\,x_{j+1}$ with $\lambda = e^{-w\Delta}$,
        $p = \int_0^\Delta e^{-wu}\tfrac{u}{\Delta}du$, $q = \int_0^\Delta
        e^{-wu}(1 - \tfrac{u}{\Delta})du$ (in forms accurate for small $w\Delta$), chained by
        `jax.lax.associative_scan` over the affine maps ($O(\log n)$ depth) on accelerators and
        by `jax.lax.scan` on a CPU, where it is faster. $h = 0$ at $t = 0$, so $\hat y_0 = 0$.
        Masked modes contribute nothing.

        **Arguments:**

        - `xs`: one input path, shape `(n,)` (vmap over paths).
        - `dt`: the grid step $\Delta > 0$.
        - `sequential`: keyword-only; `True` chains the steps with `jax.lax.scan` (the same
          recurrence, depth $n$), `False` with the associative scan, `None` (default) by device.

        **Returns:** the outputs, shape `(n,)`.

        ```python
        import jax.numpy as jnp, jaxmem
        model = jaxmem.DiagonalRNN(jnp.array([1.0]), jnp.array([1.0]))
        model.predict(jnp.ones(4), 0.5)   # 1 - e^{-t} at t = 0, 0.5, 1, 1.5
        ```
        """
        xs = check_path(xs, "DiagonalRNN.predict")
        dt = check_step(dt, "DiagonalRNN.predict", xs.dtype)
        model = check_diagonal(self, "DiagonalRNN.predict")
        if xs.shape[0] == 1:
            return jnp.zeros(1, xs.dtype)
        w = jnp.where(model.active, model.rates, 1.0)
        lam, p, q = foh_diagonal(w, dt)
        bs = xs[:-1, None] * p + xs[1:, None] * q
        hs = with_rest(linear_recurrence(lam, bs, sequential=sequential), self.width)
        return hs @ model.coeffs

    def discretize(self, dt, *, activation: str = "identity", b=None) -> "DiscreteDiagonalRNN":
        r"""The zero-order-hold discretisation with step $\Delta$ = `dt`: the
        `DiscreteDiagonalRNN` $h_{k+1} = \lambda h_k + \frac{1 - \lambda}{w}x_k$, $\lambda =
        e^{-w\Delta}$, exact for an input held constant on each interval; it converges to this
        model at first order as $\Delta \to 0$. Same output weights, stored rates,
        parameterization and mask; `activation` and `b` as in `DiscreteDiagonalRNN`.

        ```python
        import jax.numpy as jnp, jaxmem
        model = jaxmem.DiagonalRNN(jnp.array([1.0, -0.5]), jnp.array([0.5, 2.0]))
        model.discretize(0.1).predict(jnp.ones(5), 0.1)
        ```
        """
        return DiscreteDiagonalRNN(
            self.a, v=self.v, dt=dt, parameterization=self.parameterization, activation=activation, b=b,
            mask=self.mask,
        )

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
        check_width(width)
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

    def pad(self, width: int) -> "LinearRNN":
        """The same model padded to `width` states that stay at rest: `W` grows by a block `-I`,
        `U` and `c` by zero rows, so the kernel and every prediction are unchanged and the padded
        entries receive zero gradient (a linear RNN has no mask)."""
        extra = check_pad(width, self.W.shape[0])
        W = jsl.block_diag(self.W, -jnp.eye(extra, dtype=self.W.dtype))
        return LinearRNN(W, pad_rows(self.U, extra), pad_rows(self.c, extra))

    @classmethod
    def init(cls, key: PRNGKeyArray, width: int, inputs: int = 1, *, margin: float = 0.5) -> "LinearRNN":
        """A stable random initialisation: W = -margin·I + skew-symmetric + small noise with
        spectral abscissa <= -margin/2, U and c normal with variance 1/width."""
        check_width(width)
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
