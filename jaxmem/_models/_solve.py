"""Solving a hidden-state ODE dh/dt = f(h, x(t)) for a sampled input: adaptively with Diffrax, or
with a fixed-step classical Runge-Kutta scheme on the sample grid."""

import diffrax
import jax
import jax.numpy as jnp

from .._errors import check, check_fraction, check_positive, positive_int, show


def check_times(ts, xs, channels: int, *, rtol, atol, max_steps):
    """The sample times `ts` (n,) and inputs `xs` ((n,) or (n, channels), returned as (n, channels))
    of an adaptive solve, and its tolerances, checked: `(ts, xs, rtol, atol)`."""
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
    if xs.shape != (ts.shape[0], channels):
        raise ValueError(
            f"inputs must have shape (n,) or (n, d) = ({ts.shape[0]}, {channels}) for "
            f"ts of shape {ts.shape}; got {xs.shape}."
        )
    return ts, xs, rtol, atol


def adaptive_solve(field, ts, xs, h0, *, rtol, atol, max_steps):
    """The states at `ts` of dh/dt = field(h, x(t)), h(ts[0]) = h0, x linearly interpolated
    between the samples `xs` (n, d): Diffrax's Tsit5 with a PID controller, steps clipped to the
    sample times (the kinks of the input)."""
    path = diffrax.LinearInterpolation(ts=ts, ys=xs)
    controller = diffrax.ClipStepSizeController(diffrax.PIDController(rtol=rtol, atol=atol), step_ts=ts)
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(lambda t, h, args: field(h, path.evaluate(t))),
        diffrax.Tsit5(),
        ts[0],
        ts[-1],
        None,
        h0,
        saveat=diffrax.SaveAt(ts=ts),
        stepsize_controller=controller,
        max_steps=max_steps,
    )
    return sol.ys


def rk4_grid(field, xs, dt, h0, substeps: int):
    r"""The states $h(t_j)$, $t_j = j\Delta$, of $\dot h = f(h, x(t))$, $h(0) = h_0$, for the
    piecewise-linear input through the samples `xs` (n,): classical fourth-order Runge-Kutta with
    `substeps` equal steps per interval, so the global error is $O((\Delta/\text{substeps})^4)$
    (the input is smooth inside each interval). Returns shape `(n, m)`; differentiable by
    `jax.lax.scan`'s reverse mode."""
    k = positive_int(substeps, "substeps")
    step = dt / k

    def interval(h, pair):
        x0, x1 = pair
        slope = (x1 - x0) / k  # the input's change over one substep

        def sub(h, i):
            xa = x0 + slope * i
            xm = xa + 0.5 * slope
            xb = xa + slope
            k1 = field(h, xa)
            k2 = field(h + 0.5 * step * k1, xm)
            k3 = field(h + 0.5 * step * k2, xm)
            k4 = field(h + step * k3, xb)
            return h + step / 6 * (k1 + 2 * k2 + 2 * k3 + k4), None

        h = jax.lax.scan(sub, h, jnp.arange(k, dtype=xs.dtype))[0]
        return h, h

    hs = jax.lax.scan(interval, h0, (xs[:-1], xs[1:]))[1]
    return jnp.concatenate([h0[None], hs])
