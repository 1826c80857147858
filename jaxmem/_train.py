"""Discrete training (optax) on the exact white-noise loss, stopped at the hitting conditions."""

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Bool, Float, Int, PyTree

from ._errors import check_momentum, check_positive, positive_int, warn_if_not_x64
from ._kernels import AbstractKernel
from ._loss import loss_and_grad, param_distance
from ._models import DiagonalRNN, check_diagonal
from ._results import RESULTS, hitting_result, raise_if_failed

OPTIMIZERS = ("gd", "momentum", "adam")


def make_optimizer(name: str, lr, momentum=0.9) -> optax.GradientTransformation:
    """An optax optimiser by name with its hyper-parameters injected (traced), so a grid of
    learning rates or momenta compiles once: `gd` (plain SGD on the exact loss), `momentum`
    (heavy ball), `adam`."""
    if name == "gd":
        return optax.inject_hyperparams(optax.sgd)(learning_rate=lr)
    if name == "momentum":
        return optax.inject_hyperparams(optax.sgd)(learning_rate=lr, momentum=momentum)
    if name == "adam":
        return optax.inject_hyperparams(optax.adam)(learning_rate=lr)
    raise ValueError(f"unknown optimizer {name!r}; expected one of {OPTIMIZERS} (or 'flow' in the CLI).")


class TrainResult(eqx.Module):
    """The hitting times of discrete training: the first iterations `steps_param`,
    `steps_loss` at which each threshold held, and the same in flow time τ = kη, `tau_param`,
    `tau_loss`; a threshold not reached within `max_steps` iterations has `inf` times (and
    iteration −1), and `result` (a `jaxmem.RESULTS`) says which. Also: the iterations run,
    the initial and final losses and the trained model."""

    steps_param: Int[Array, ""]
    steps_loss: Int[Array, ""]
    tau_param: Float[Array, ""]
    tau_loss: Float[Array, ""]
    steps: Int[Array, ""]
    loss0: Float[Array, ""]
    loss: Float[Array, ""]
    model: DiagonalRNN
    result: RESULTS

    @property
    def reached_param(self) -> Array:
        return jnp.isfinite(self.tau_param)

    @property
    def reached_loss(self) -> Array:
        return jnp.isfinite(self.tau_loss)


def train(
    model: DiagonalRNN,
    target: AbstractKernel,
    optimizer="gd",
    *,
    lr=1e-2,
    momentum=0.9,
    max_steps: int = 1_000_000,
    delta_param=0.05,
    delta_loss=0.05,
    throw: bool = True,
) -> TrainResult:
    r"""Train on the exact loss with an optax optimiser until both hitting conditions hold.

    Runs a jitted `lax.while_loop` of optimiser steps on $J(a, v)$ and records the first
    iteration $k$ with $\|\theta_k - \theta_0\|_2 > \delta_{param}$ (in $(a, w)$) and with
    $J(\theta_0) - J(\theta_k) > \delta_{loss}$, as flow time $\tau = k\eta$. A condition not
    reached within `max_steps` iterations gives `inf`, and `result` says which.

    **Arguments:**

    - `model`, `target`: a `DiagonalRNN` and a kernel.
    - `optimizer`: `"gd"`, `"momentum"`, `"adam"` or an `optax.GradientTransformation`.
    - `lr`, `momentum`: traced hyper-parameters (vmap over them: one compilation).
    - `max_steps`: static cap on iterations.
    - `throw`: raise a `RuntimeError` when the training diverges (non-finite values, rates
      leaving (0, ∞), or a loss far above its start; training stops at that iteration); with
      `throw=False` the outcome is returned as `result == RESULTS.diverged`.
    - `delta_param`, `delta_loss`: the hitting thresholds.

    ```python
    import jax, jaxmem
    jax.config.update("jax_enable_x64", True)
    res = jaxmem.train(jaxmem.canonical_model(), jaxmem.plateau_target(6.0), "gd",
                       lr=1e-2, max_steps=200_000)
    res.tau_param, res.tau_loss
    ```
    """
    warn_if_not_x64("train")
    max_steps = positive_int(max_steps, "max_steps")
    model = check_diagonal(model, "train")
    lr = jnp.asarray(check_positive(lr, "learning rates"), dtype=model.a.dtype)
    delta_param = jnp.asarray(check_positive(delta_param, "delta_param"), float)
    delta_loss = jnp.asarray(check_positive(delta_loss, "delta_loss"), float)
    if isinstance(optimizer, str):
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {optimizer!r}; expected one of {OPTIMIZERS}.")
    elif not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(f"optimizer must be a name in {OPTIMIZERS} or an optax transformation; got {optimizer!r}.")
    if optimizer == "momentum":  # (the other optimisers do not use it)
        momentum = check_momentum(momentum)
    momentum = jnp.asarray(momentum, dtype=model.a.dtype)
    # optax's Adam raises b1**count (float ** int32), which strict dtype promotion rejects.
    with jax.numpy_dtype_promotion("standard"):
        out = _train(model, target, optimizer, lr, momentum, max_steps, delta_param, delta_loss)
    raise_if_failed(out.result, throw)
    return out


#: A step whose loss rises above J₀ + DIVERGENCE_FACTOR·(J₀ + ‖ρ‖²) has diverged (as has one with
#: non-finite values or rates outside (0, ∞)); gradient descent never comes near it otherwise.
DIVERGENCE_FACTOR = 100.0


class TrainState(eqx.Module):
    """Discrete training in progress (one problem), advanced a bounded number of iterations at
    a time by `train_step`."""

    # Where the parameters (a, v) are, after `steps` iterations: the optimiser's state, the loss
    # there and its gradient (carried: one loss-and-gradient evaluation per iteration).
    steps: Int[Array, ""]
    params: tuple
    opt_state: PyTree
    loss: Float[Array, ""]
    grads: tuple
    loss0: Float[Array, ""]
    # The first iteration at which each threshold held (−1: not yet).
    steps_param: Int[Array, ""]
    steps_loss: Int[Array, ""]
    # The training diverged (and stopped); `over`: an inactive placeholder.
    diverged: Bool[Array, ""]
    over: Bool[Array, ""]


def _optimizer(optimizer, lr, momentum):
    # Built inside the trace from a static name, so lr and momentum are traced and one
    # compilation serves every value (a new optax object per call would recompile).
    return make_optimizer(optimizer, lr, momentum) if isinstance(optimizer, str) else optimizer


def train_init(model, target, optimizer, lr, momentum, *, active=True) -> TrainState:
    """Training at iteration 0 (`active=False`: a placeholder that is already over)."""
    params = (model.a, model.v)
    J0, ga0, gv0 = loss_and_grad(model, target, *params)
    never = jnp.asarray(-1)
    return TrainState(
        steps=jnp.asarray(0), params=params, opt_state=_optimizer(optimizer, lr, momentum).init(params), loss=J0,
        grads=(ga0, gv0), loss0=J0, steps_param=never, steps_loss=never, diverged=jnp.asarray(False),
        over=~jnp.asarray(active),
    )


def train_terminate(state: TrainState, max_steps) -> Bool[Array, ""]:
    """Whether training is over: both thresholds held, `max_steps` iterations, or divergence."""
    reached = (state.steps_param >= 0) & (state.steps_loss >= 0)
    return state.over | state.diverged | reached | (state.steps >= max_steps)


def train_step(model, target, optimizer, state: TrainState, lr, momentum, max_steps, delta_param, delta_loss,
               num_steps) -> TrainState:
    """At most `num_steps` more iterations (and at most `max_steps` in all), stopping when both
    thresholds hold or the training diverges. Chunks do not change the iterates."""
    optimizer = _optimizer(optimizer, lr, momentum)
    a0, w0 = model.a, model.rates
    J0 = state.loss0
    blow_up = J0 + DIVERGENCE_FACTOR * (J0 + target.sq_norm())
    stop = jnp.minimum(state.steps + num_steps, max_steps)

    def cond(s):
        return (s.steps < stop) & ((s.steps_param < 0) | (s.steps_loss < 0)) & ~s.diverged & ~s.over

    def body(s):
        updates, opt_state = optimizer.update(s.grads, s.opt_state, s.params)
        params = optax.apply_updates(s.params, updates)
        k = s.steps + 1
        J, ga, gv = loss_and_grad(model, target, *params)
        a, v = params
        rates_ok = jnp.all(jnp.where(model.active, model.parameterization(v) > 0, True))
        finite = jnp.isfinite(J) & jnp.all(jnp.isfinite(a)) & jnp.all(jnp.isfinite(v))
        diverged = ~finite | ~rates_ok | (J > blow_up)
        dist = param_distance(model, *params, a0, w0)
        # A diverged iterate's loss means nothing (the closed form assumes rates > 0): its
        # thresholds are not counted.
        kp = jnp.where((s.steps_param < 0) & (dist > delta_param) & ~diverged, k, s.steps_param)
        kl = jnp.where((s.steps_loss < 0) & (J0 - J > delta_loss) & ~diverged, k, s.steps_loss)
        return TrainState(steps=k, params=params, opt_state=opt_state, loss=J, grads=(ga, gv), loss0=J0,
                          steps_param=kp, steps_loss=kl, diverged=diverged, over=s.over)

    return jax.lax.while_loop(cond, body, state)


def train_result(model, state: TrainState, lr) -> TrainResult:
    """The hitting times and outcome of a training run (finished or not)."""
    kp, kl = state.steps_param, state.steps_loss
    lr = jnp.asarray(lr)
    to_tau = lambda s: jnp.where(s >= 0, s.astype(lr.dtype) * lr, jnp.inf)
    return TrainResult(
        steps_param=kp,
        steps_loss=kl,
        tau_param=to_tau(kp),
        tau_loss=to_tau(kl),
        steps=state.steps,
        loss0=state.loss0,
        loss=state.loss,
        model=model.with_params(*state.params),
        result=RESULTS.where(state.diverged, RESULTS.diverged, hitting_result(kp >= 0, kl >= 0)),
    )


def train_impl(model, target, optimizer, lr, momentum, max_steps, delta_param, delta_loss):
    """The unjitted core of `train` (no input checks): `train_init`, then `train_step` to the end."""
    state = train_init(model, target, optimizer, lr, momentum)
    state = train_step(model, target, optimizer, state, lr, momentum, max_steps, delta_param, delta_loss, max_steps)
    return train_result(model, state, lr)


_train = eqx.filter_jit(train_impl)
