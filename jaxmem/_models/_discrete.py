r"""Discrete-time RNNs: the dense $h_{k+1} = \sigma(Wh_k + Ux_k + b)$ and the diagonal
$h_{k+1} = \sigma(\lambda \odot h_k + \beta \odot x_k + b)$ with $\lambda = e^{-w\Delta}$."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .._errors import check, check_positive, show
from .._parameterization import AbstractParameterization, get_parameterization
from ._base import (
    ACTIVATIONS,
    AbstractSequenceModel,
    check_activation,
    check_mask,
    check_pad,
    check_path,
    check_rates,
    check_step,
    check_width,
    finite_array,
    log_uniform_rates,
    pad_rows,
)
from ._scan import linear_recurrence, with_rest, zoh_diagonal


def dense_parameters(W, U, b, c, what: str):
    """`(W, U, b, c)` of a dense RNN checked: shapes `(m, m)`, `(m, 1)` (or `(m,)`), `(m,)`,
    `(m,)`, finite entries."""
    W = finite_array(W, f"{what} W", 2)
    U = jnp.asarray(U)
    U = finite_array(U[:, None] if U.ndim == 1 else U, f"{what} U", 2)
    b = finite_array(b, f"{what} b", 1)
    c = finite_array(c, f"{what} c", 1)
    m = W.shape[0]
    if m < 1 or W.shape != (m, m) or U.shape != (m, 1) or b.shape != (m,) or c.shape != (m,):
        raise ValueError(
            f"{what} needs W (m, m), U (m, 1), b (m,), c (m,) with m >= 1; got W {W.shape}, U {U.shape}, "
            f"b {b.shape}, c {c.shape}."
        )
    return W, U, b, c


def masked_dense(model):
    """`(W, U, b, c)` with the rows (and columns of W) of masked units set to zero; masked entries
    receive zero gradient."""
    on = model.mask > 0.5
    both = on[:, None] & on[None, :]
    return (
        jnp.where(both, model.W, 0.0),
        jnp.where(on[:, None], model.U, 0.0),
        jnp.where(on, model.b, 0.0),
        jnp.where(on, model.c, 0.0),
    )


class DiscreteRNN(AbstractSequenceModel):
    r"""A discrete-time RNN $h_{k+1} = \sigma(Wh_k + Ux_k + b)$, $\hat y_k = c^\top h_k$,
    $h_0 = 0$ (so $\hat y_0 = 0$), with $\sigma$ = `tanh` or the identity, run by `jax.lax.scan`.

    A `mask` (0./1. floats, shape `(m,)`) switches units off: a masked unit stays at rest
    ($\sigma(0) = 0$), contributes nothing and receives zero gradient, so a model padded with
    masked units predicts exactly as the narrower one.

    **Arguments:**

    - `W`: recurrent weights, shape `(m, m)`.
    - `U`: input weights, shape `(m, 1)` (or `(m,)`).
    - `b`: biases, shape `(m,)`.
    - `c`: output weights, shape `(m,)`.
    - `activation`: keyword-only, `"tanh"` (default) or `"identity"`.
    - `mask`: keyword-only, shape `(m,)`, default all units on.

    ```python
    import jax, jax.numpy as jnp, jaxmem
    model = jaxmem.DiscreteRNN.init(jax.random.key(0), 4)
    model.predict(jnp.sin(jnp.arange(6.0)), 1.0).shape   # (6,)
    ```
    """

    W: Float[Array, "m m"]
    U: Float[Array, "m 1"]
    b: Float[Array, " m"]
    c: Float[Array, " m"]
    mask: Float[Array, " m"]
    activation: str = eqx.field(static=True)

    def __init__(self, W, U, b, c, *, activation: str = "tanh", mask=None):
        self.activation = check_activation(activation, "DiscreteRNN")
        self.W, self.U, self.b, self.c = dense_parameters(W, U, b, c, "DiscreteRNN")
        self.mask = check_mask(mask, self.W.shape[0], self.W.dtype, "DiscreteRNN")

    @property
    def width(self) -> int:
        return self.W.shape[0]

    def predict(self, xs, dt=1.0) -> Float[Array, " n"]:
        r"""The outputs $\hat y_k = c^\top h_k$, $k = 0, \dots, n-1$, for the inputs `xs` (n,).

        The recurrence has no time step of its own: `dt` (default 1) is checked (> 0) and
        otherwise unused; it is there so that every model is called as `predict(xs, dt)`.
        """
        xs = check_path(xs, "DiscreteRNN.predict")
        check_step(dt, "DiscreteRNN.predict", xs.dtype)
        W, U, b, c = masked_dense(self)
        sigma = ACTIVATIONS[self.activation]
        u = U[:, 0]

        def step(h, x):
            h = sigma(W @ h + u * x + b)
            return h, h

        hs = jax.lax.scan(step, jnp.zeros(self.width, xs.dtype), xs[:-1])[1]
        return with_rest(hs, self.width) @ c

    def pad(self, width: int) -> "DiscreteRNN":
        """The same model padded with masked units (zero weights) to `width` units."""
        extra = check_pad(width, self.width)
        W = jnp.pad(self.W, ((0, extra), (0, extra)))
        return DiscreteRNN(W, pad_rows(self.U, extra), pad_rows(self.b, extra), pad_rows(self.c, extra),
                           activation=self.activation, mask=pad_rows(self.mask, extra))

    @classmethod
    def init(cls, key: PRNGKeyArray, width: int, *, activation: str = "tanh", gain: float = 0.9) -> "DiscreteRNN":
        r"""A random initialisation: $W_{ij} \sim N(0, g^2/m)$ with gain $g$ (spectral radius
        $\approx g$, so $g < 1$ gives fading memory), $U_i \sim N(0, 1)$, $c_i \sim N(0, 1/m)$,
        $b = 0$."""
        check_width(width)
        check_positive(gain, "gain")
        kw, ku, kc = jr.split(key, 3)
        W = gain * jr.normal(kw, (width, width)) / np.sqrt(width)
        U = jr.normal(ku, (width, 1))
        c = jr.normal(kc, (width,)) / np.sqrt(width)
        return cls(W, U, jnp.zeros(width), c, activation=activation)


class DiscreteDiagonalRNN(AbstractSequenceModel):
    r"""A diagonal discrete-time RNN with step $\Delta$:
    $h_{k+1} = \sigma(\lambda \odot h_k + \beta \odot x_k + b)$, $\lambda = e^{-w\Delta}$,
    $\beta = (1 - \lambda)/w$, $\hat y_k = a^\top h_k$, $h_0 = 0$.

    With $\sigma$ the identity and no bias it is the zero-order-hold discretisation of
    `DiagonalRNN(a, w)` (`DiagonalRNN.discretize`), to which it converges at first order as
    $\Delta \to 0$. The rates are stored through a parameterisation `w = f(v)` as in
    `DiagonalRNN`; the step $\Delta$ is fixed (it receives zero gradient). Masked modes stay at
    rest, contribute nothing and receive zero gradient.

    **Arguments:**

    - `a`: output weights, shape `(m,)`.
    - `w`: decay rates `> 0`, shape `(m,)` (or keyword-only `v`, the stored parameter).
    - `dt`: the step $\Delta > 0$.
    - `parameterization`: keyword-only, `"identity"` (default), `"exp"`, `"softplus"`, `"best"`
      or an instance.
    - `activation`: keyword-only, `"identity"` (default) or `"tanh"`.
    - `b`: keyword-only, biases `(m,)` or `None` (default: no bias).
    - `mask`: keyword-only, shape `(m,)`, default all modes on.

    ```python
    import jax.numpy as jnp, jaxmem
    model = jaxmem.DiscreteDiagonalRNN(jnp.array([1.0, 0.5]), jnp.array([0.5, 2.0]), 0.1)
    model.predict(jnp.ones(5), 0.1)
    ```
    """

    a: Float[Array, " m"]
    v: Float[Array, " m"]
    b: Float[Array, " m"] | None
    dt: Float[Array, ""]
    mask: Float[Array, " m"]
    parameterization: AbstractParameterization = eqx.field(static=True)
    activation: str = eqx.field(static=True)

    def __init__(self, a, w=None, dt=None, *, v=None, parameterization="identity", activation="identity", b=None,
                 mask=None):
        what = "DiscreteDiagonalRNN"
        self.parameterization = get_parameterization(parameterization)
        self.activation = check_activation(activation, what)
        if (w is None) == (v is None):
            raise TypeError(f"{what} takes exactly one of the rates `w` or the stored parameter `v`.")
        if dt is None:
            raise TypeError(f"{what} needs the step dt.")
        a = finite_array(a, f"{what} a", 1)
        name = "w" if v is None else "v"
        raw = finite_array(w if v is None else v, f"{what} {name}", 1)
        if a.shape != raw.shape or a.shape[0] < 1:
            raise ValueError(f"{what} a and {name} must have the same shape (m,), m >= 1; got {a.shape} and "
                             f"{raw.shape}.")
        if v is None:
            raw = self.parameterization.inverse(check_rates(raw, what))
        if b is not None:
            b = finite_array(b, f"{what} b", 1)
            if b.shape != a.shape:
                raise ValueError(f"{what} b must have shape {a.shape}; got {b.shape}.")
        self.a, self.v, self.b = a, raw, b
        self.dt = check_step(dt, what, a.dtype)
        self.mask = check_mask(mask, a.shape[0], a.dtype, what)

    @property
    def width(self) -> int:
        return self.a.shape[-1]

    @property
    def active(self):
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

    def predict(self, xs, dt=None, *, sequential: bool | None = None) -> Float[Array, " n"]:
        r"""The outputs $\hat y_k = a^\top h_k$, $k = 0, \dots, n-1$, for the inputs `xs` (n,).

        `dt`, when given, must equal the model's step (to a relative 1e-9): a model trained at
        one sampling rate is not silently applied at another. The linear case (identity
        activation, with or without bias) runs `jax.lax.associative_scan` over the affine maps
        (`sequential=False`; the default on accelerators) or `jax.lax.scan` (`sequential=True`;
        the default on a CPU); a tanh activation always runs `jax.lax.scan`.
        """
        what = "DiscreteDiagonalRNN.predict"
        xs = check_path(xs, what)
        if dt is not None:
            dt = check_step(dt, what, xs.dtype)
            dt = check(dt, jnp.abs(dt - self.dt) > 1e-9 * self.dt,
                       f"{what}: dt must equal the model's step dt = {show(self.dt)}; got {show(dt)}.")
        if xs.shape[0] == 1:
            return jnp.zeros(1, xs.dtype)
        on = self.active
        w = check_rates(jnp.where(on, self.rates, 1.0), what)
        lam, beta = zoh_diagonal(w, jax.lax.stop_gradient(self.dt))
        beta = jnp.where(on, beta, 0.0)
        bs = xs[:-1, None] * beta
        if self.b is not None:
            bs = bs + jnp.where(on, self.b, 0.0)
        if self.activation == "identity":
            hs = linear_recurrence(lam, bs, sequential=sequential)
        else:
            sigma = ACTIVATIONS[self.activation]

            def step(h, bk):
                h = sigma(lam * h + bk)
                return h, h

            hs = jax.lax.scan(step, jnp.zeros(self.width, xs.dtype), bs)[1]
        return with_rest(hs, self.width) @ self.coeffs

    def pad(self, width: int) -> "DiscreteDiagonalRNN":
        """The same model padded with masked modes (a = 0, w = 1) to `width` modes."""
        extra = check_pad(width, self.width)
        v_pad = self.parameterization.inverse(jnp.ones(extra, self.v.dtype))
        return DiscreteDiagonalRNN(
            pad_rows(self.a, extra), v=jnp.concatenate([self.v, v_pad]), dt=self.dt,
            parameterization=self.parameterization, activation=self.activation,
            b=None if self.b is None else pad_rows(self.b, extra), mask=pad_rows(self.mask, extra),
        )

    @classmethod
    def init(
        cls, key: PRNGKeyArray, width: int, dt, *, min_rate=0.5, max_rate=4.0, scale=None,
        parameterization="identity", activation="identity", bias: bool = False,
    ) -> "DiscreteDiagonalRNN":
        """A random initialisation: rates log-uniform in `[min_rate, max_rate]`, output weights
        normal with standard deviation `scale` (default `1/sqrt(width)`), biases zero when
        `bias` (else none)."""
        check_width(width)
        if scale is not None:
            check_positive(scale, "scale")
        kw, ka = jr.split(key)
        w = log_uniform_rates(kw, width, min_rate, max_rate)
        scale = 1.0 / np.sqrt(width) if scale is None else scale
        return cls(scale * jr.normal(ka, (width,)), w, dt, parameterization=parameterization, activation=activation,
                   b=jnp.zeros(width) if bias else None)
