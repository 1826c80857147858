r"""The continuous-time nonlinear RNN $\dot h = \sigma(Wh + Ux + b)$, $\hat y = c^\top h$."""

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .._errors import check_positive
from ._base import (
    ACTIVATIONS,
    AbstractSequenceModel,
    check_activation,
    check_mask,
    check_pad,
    check_path,
    check_step,
    check_width,
    pad_rows,
)
from ._discrete import dense_parameters, masked_dense
from ._solve import adaptive_solve, check_times, rk4_grid


class ContinuousRNN(AbstractSequenceModel):
    r"""A continuous-time RNN $\dot h = \sigma(Wh + Ux_t + b)$, $\hat y_t = c^\top h_t$, with
    $\sigma$ = `tanh` or the identity (which, with $b = 0$, is `LinearRNN(W, U, c)`).

    `model(ts, xs)` solves the hidden-state ODE adaptively with Diffrax (as `AbstractRNN`
    does); `model.predict(xs, dt)` with a fixed-step fourth-order Runge-Kutta scheme on the
    sample grid, cheap to differentiate. Both interpolate the input linearly between samples.

    A `mask` (0./1. floats, shape `(m,)`) switches units off: a masked unit stays at rest
    ($\sigma(0) = 0$), contributes nothing and receives zero gradient.

    **Arguments:**

    - `W`: recurrent weights, shape `(m, m)`.
    - `U`: input weights, shape `(m, 1)` (or `(m,)`).
    - `b`: biases, shape `(m,)`.
    - `c`: output weights, shape `(m,)`.
    - `activation`: keyword-only, `"tanh"` (default) or `"identity"`.
    - `mask`: keyword-only, shape `(m,)`, default all units on.

    ```python
    import jax, jax.numpy as jnp, jaxmem
    model = jaxmem.ContinuousRNN.init(jax.random.key(0), 4)
    model.predict(jnp.sin(0.1 * jnp.arange(20.0)), 0.1).shape   # (20,)
    ```
    """

    W: Float[Array, "m m"]
    U: Float[Array, "m 1"]
    b: Float[Array, " m"]
    c: Float[Array, " m"]
    mask: Float[Array, " m"]
    activation: str = eqx.field(static=True)

    def __init__(self, W, U, b, c, *, activation: str = "tanh", mask=None):
        self.activation = check_activation(activation, "ContinuousRNN")
        self.W, self.U, self.b, self.c = dense_parameters(W, U, b, c, "ContinuousRNN")
        self.mask = check_mask(mask, self.W.shape[0], self.W.dtype, "ContinuousRNN")

    @property
    def width(self) -> int:
        return self.W.shape[0]

    def _field(self):
        W, U, b, c = masked_dense(self)
        sigma = ACTIVATIONS[self.activation]
        return (lambda h, x: sigma(W @ h + U @ x + b)), c

    def __call__(self, ts, xs, *, rtol: float = 1e-8, atol: float = 1e-10, max_steps: int = 100_000):
        r"""Outputs $\hat y$ at `ts` for an input sampled at `ts`, by solving the hidden-state
        ODE with Diffrax (Tsit5, adaptive, steps clipped to the samples) from $h = 0$ at
        `ts[0]`, the input linearly interpolated between samples.

        **Arguments:**

        - `ts`: increasing sample times, shape `(n,)`.
        - `xs`: inputs, shape `(n,)` (or `(n, 1)`).

        **Returns:** outputs at `ts`, shape `(n,)`.
        """
        ts, xs, rtol, atol = check_times(ts, xs, 1, rtol=rtol, atol=atol, max_steps=max_steps)
        field, c = self._field()
        h0 = jnp.zeros(self.width, self.W.dtype)
        return adaptive_solve(field, ts, xs, h0, rtol=rtol, atol=atol, max_steps=max_steps) @ c

    def predict(self, xs, dt, *, substeps: int = 4) -> Float[Array, " n"]:
        r"""The outputs $\hat y_j = c^\top h(t_j)$ on the grid $t_j = j\Delta$ for the
        piecewise-linear input through the samples `xs`, from $h = 0$ at $t = 0$ (so
        $\hat y_0 = 0$): classical Runge-Kutta of order 4 with `substeps` equal steps per
        interval, by `jax.lax.scan` (the global error is $O((\Delta/\text{substeps})^4)$;
        differentiated by reverse mode through the scan).

        **Arguments:**

        - `xs`: one input path, shape `(n,)` (vmap over paths).
        - `dt`: the grid step $\Delta > 0$.
        - `substeps`: keyword-only, Runge-Kutta steps per grid interval (default 4).

        **Returns:** the outputs, shape `(n,)`.
        """
        xs = check_path(xs, "ContinuousRNN.predict")
        dt = check_step(dt, "ContinuousRNN.predict", xs.dtype)
        field, c = self._field()
        h0 = jnp.zeros(self.width, xs.dtype)
        hs = rk4_grid(lambda h, x: field(h, x[None]), xs, dt, h0, substeps)
        return hs @ c

    def pad(self, width: int) -> "ContinuousRNN":
        """The same model padded with masked units (zero weights) to `width` units."""
        extra = check_pad(width, self.width)
        W = jnp.pad(self.W, ((0, extra), (0, extra)))
        return ContinuousRNN(W, pad_rows(self.U, extra), pad_rows(self.b, extra), pad_rows(self.c, extra),
                             activation=self.activation, mask=pad_rows(self.mask, extra))

    @classmethod
    def init(
        cls, key: PRNGKeyArray, width: int, *, activation: str = "tanh", gain: float = 0.5, margin: float = 1.0
    ) -> "ContinuousRNN":
        r"""A random initialisation with fading memory: $W = -\mu I + gG/\sqrt m$, $G_{ij} \sim
        N(0, 1)$ (the spectrum lies near the disc of radius $g$ about $-\mu$, so $g < \mu$ makes
        the rest state stable), $U_i \sim N(0, 1)$, $c_i \sim N(0, 1/m)$, $b = 0$; $g$ = `gain`,
        $\mu$ = `margin`."""
        check_width(width)
        check_positive(gain, "gain")
        check_positive(margin, "margin")
        kw, ku, kc = jr.split(key, 3)
        W = -margin * jnp.eye(width) + gain * jr.normal(kw, (width, width)) / np.sqrt(width)
        U = jr.normal(ku, (width, 1))
        c = jr.normal(kc, (width,)) / np.sqrt(width)
        return cls(W, U, jnp.zeros(width), c, activation=activation)
