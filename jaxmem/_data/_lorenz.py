"""A nonlinear target with fading memory: the forced Lorenz-96 ring, solved by Diffrax."""

import math

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._errors import (
    as_float_array,
    check,
    check_finite,
    check_fraction,
    check_positive,
    is_traced,
    positive_int,
    show,
)
from .._kernels import AbstractKernel
from ._outputs import linear_outputs

#: Forcings below this keep the equilibrium z = F·1 stable for every dimension (docs/mathematics.md).
STABLE_FORCING = 8.0 / 9.0


class Lorenz96(eqx.Module):
    r"""The forced Lorenz-96 ring as a causal input-output map with fading memory:

    $$\dot z_k = (z_{k+1} - z_{k-2})\,z_{k-1} - z_k + F + \delta_{k0}\,\tilde x(t),\qquad
    z(0) = F\mathbf 1,\qquad y = z_{\lfloor K/2\rfloor} - F,$$

    indices cyclic mod $K$, $\tilde x$ the piecewise-linear interpolant of the input samples.
    The input enters component 0 and the output is read half-way round the ring, so the
    signal must travel through the nonlinear coupling. Linearised at $z = F\mathbf 1$, the
    Fourier mode $\theta = 2\pi j/K$ decays at rate $1 - F(\cos\theta - \cos 2\theta) \ge 1 - 9F/8$:
    for $0 \le F < 8/9$ the equilibrium is stable for every $K$ and the memory fades;
    as $F \to 8/9$ the memory time grows without bound. Forcings outside $[0, 8/9)$ are refused
    unless `allow_unstable=True` (the map may then have no fading memory at all).

    **Arguments:**

    - `dim`: the number $K \ge 4$ of components (a Python integer; default 8).
    - `forcing`: the forcing $F$ (default 0.5).
    - `allow_unstable`: accept $F < 0$ or $F \ge 8/9$.

    ```python
    import jax.numpy as jnp, jaxmem
    target = jaxmem.Lorenz96(dim=8, forcing=0.5)
    ys = target.outputs(jnp.ones(21), 0.1)
    float(target.memory_time)             # 2.0 = 1/(1 - F) for K = 8
    ```
    """

    dim: int = eqx.field(static=True)
    forcing: Float[Array, ""]

    def __init__(self, dim: int = 8, forcing=0.5, *, allow_unstable: bool = False):
        self.dim = positive_int(dim, "Lorenz96 dim")
        if self.dim < 4:
            raise ValueError(f"Lorenz96 dim must be an integer >= 4 (the coupling needs z_(k+1), z_(k-1), "
                             f"z_(k-2) distinct); got {self.dim}.")
        forcing = check_finite(as_float_array(forcing, "Lorenz96 forcing", ndim=0), "Lorenz96 forcing")
        if not allow_unstable:
            forcing = check(
                forcing, ~((forcing >= 0) & (forcing < STABLE_FORCING)),
                f"Lorenz96 forcing must satisfy 0 <= F < 8/9 (the fading-memory regime; pass "
                f"allow_unstable=True for other values); got {show(forcing)}.",
            )
        self.forcing = forcing

    @property
    def decay_rates(self) -> Float[Array, " K"]:
        r"""The decay rates $1 - F(\cos\theta_j - \cos 2\theta_j)$, $\theta_j = 2\pi j/K$, of the
        linearisation at the equilibrium (one per Fourier mode)."""
        theta = 2 * math.pi * jnp.arange(self.dim, dtype=self.forcing.dtype) / self.dim
        return 1.0 - self.forcing * (jnp.cos(theta) - jnp.cos(2 * theta))

    @property
    def memory_time(self) -> Float[Array, ""]:
        r"""The memory time of the linearisation, $1/\min_j(\text{decay rate}_j)$: at most
        $1/(1 - 9F/8)$, and close to it for large $K$ (`inf` when a mode does not decay)."""
        slowest = jnp.min(self.decay_rates)
        return jnp.where(slowest > 0, 1.0 / jnp.where(slowest > 0, slowest, 1.0), jnp.inf)

    def vector_field(self, t, z, x):
        """The right-hand side at state `z` with input value `x`."""
        coupling = (jnp.roll(z, -1) - jnp.roll(z, 2)) * jnp.roll(z, 1)
        return coupling - z + self.forcing + jnp.zeros_like(z).at[0].set(x)

    def outputs(self, xs, dt, *, rtol: float = 1e-10, atol: float = 1e-11,
                max_steps: int | None = None) -> Float[Array, "... n_t"]:
        r"""Outputs $y(t_j) = z_{\lfloor K/2\rfloor}(t_j) - F$ for inputs sampled at $t_j = j\Delta$
        (so $y_0 = 0$), by Diffrax (Dopri8, adaptive, steps clipped to the samples where the
        interpolated input has kinks). The default tolerances give ~1e-11 absolute accuracy
        for unit-intensity white noise. Paths are vmapped; a failed solve raises.

        **Arguments:**

        - `xs`: inputs of shape `(..., n_t)`.
        - `dt`: the grid step $\Delta > 0$.
        - `rtol`, `atol`: the step-size controller's tolerances.
        - `max_steps`: the solver's step budget per path (default `16 n_t + 4096`).

        **Returns:** outputs of the same shape as `xs`.
        """
        xs = check_finite(as_float_array(xs, "the inputs xs"), "the inputs xs")
        if xs.ndim < 1 or xs.shape[-1] < 1:
            raise ValueError(f"the inputs xs must have shape (..., n_t) with n_t >= 1; got shape {xs.shape}.")
        dt = jnp.asarray(check_positive(dt, "dt"), dtype=xs.dtype)
        rtol, atol = check_fraction(rtol, "rtol"), check_positive(atol, "atol")
        n = xs.shape[-1]
        max_steps = 16 * n + 4096 if max_steps is None else positive_int(max_steps, "max_steps")
        if n == 1:
            return jnp.zeros_like(xs)
        ts = jnp.arange(n, dtype=xs.dtype) * dt
        solve = lambda x: self._solve(ts, x, rtol, atol, max_steps)  # noqa: E731
        flat = xs.reshape(-1, n)
        return jax.vmap(solve)(flat).reshape(xs.shape)

    def _solve(self, ts, x, rtol, atol, max_steps):
        path = diffrax.LinearInterpolation(ts=ts, ys=x)
        field = lambda t, z, args: self.vector_field(t, z, path.evaluate(t))  # noqa: E731
        controller = diffrax.ClipStepSizeController(diffrax.PIDController(rtol=rtol, atol=atol), step_ts=ts)
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(field), diffrax.Dopri8(), ts[0], ts[-1], None,
            jnp.full(self.dim, self.forcing, dtype=x.dtype), saveat=diffrax.SaveAt(ts=ts),
            stepsize_controller=controller, max_steps=max_steps,
        )
        return sol.ys[:, self.dim // 2] - self.forcing


def outputs(target, xs, dt) -> Float[Array, "... n_t"]:
    """The outputs of a target for inputs `xs` of shape `(..., n_t)` sampled every `dt`: a
    kernel (`linear_outputs`) or a `Lorenz96` (`Lorenz96.outputs`).

    ```python
    import jax.numpy as jnp, jaxmem
    xs = jnp.sin(0.1 * jnp.arange(50.0))
    jaxmem.outputs(jaxmem.PowerLaw(1.0), xs, 0.1).shape   # (50,)
    ```
    """
    if isinstance(target, AbstractKernel):
        return linear_outputs(target, xs, dt)
    if isinstance(target, Lorenz96):
        return target.outputs(xs, dt)
    if is_traced(target):
        raise TypeError("outputs needs a concrete target (a kernel or a Lorenz96), not a traced value.")
    raise TypeError(f"outputs needs a kernel (an AbstractKernel) or a Lorenz96; got {target!r}.")
