"""Discrete training (optax) on the exact white-noise loss, stopped at the hitting conditions."""

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float, Int

from ._errors import check, show, warn_if_not_x64
from ._kernels import AbstractKernel
from ._loss import loss_and_grad, param_distance
from ._models import DiagonalRNN
from ._results import RESULTS, hitting_result

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
    if not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"max_steps must be a positive integer; got {max_steps!r}.")
    if not isinstance(model, DiagonalRNN):
        raise TypeError(f"train needs a DiagonalRNN; got {type(model).__name__}.")
    lr = jnp.asarray(lr, dtype=model.a.dtype)
    lr = check(lr, ~(lr > 0), f"learning rate must be > 0; got {show(lr)}.")
    delta_param = check(jnp.asarray(delta_param, float), ~(jnp.asarray(delta_param) > 0),
                        f"delta_param must be > 0; got {show(delta_param)}.")
    delta_loss = check(jnp.asarray(delta_loss, float), ~(jnp.asarray(delta_loss) > 0),
                       f"delta_loss must be > 0; got {show(delta_loss)}.")
    if isinstance(optimizer, str):
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {optimizer!r}; expected one of {OPTIMIZERS}.")
    elif not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(f"optimizer must be a name in {OPTIMIZERS} or an optax transformation; got {optimizer!r}.")
    momentum = jnp.asarray(momentum, dtype=model.a.dtype)
    # optax's Adam raises b1**count (float ** int32), which strict dtype promotion rejects.
    with jax.numpy_dtype_promotion("standard"):
        return _train(model, target, optimizer, lr, momentum, max_steps, delta_param, delta_loss)


def train_impl(model, target, optimizer, lr, momentum, max_steps, delta_param, delta_loss):
    """The unjitted core of `train` (no input checks), for vmapped sweeps."""
    # Built inside the trace from a static name, so lr and momentum are traced and one
    # compilation serves every value (a new optax object per call would recompile).
    if isinstance(optimizer, str):
        optimizer = make_optimizer(optimizer, lr, momentum)
    a0, v0 = model.a, model.v
    w0 = model.rates
    J0, ga0, gv0 = loss_and_grad(model, target, a0, v0)
    params = (a0, v0)
    opt_state = optimizer.init(params)
    never = jnp.asarray(-1)

    def cond(state):
        k, _, _, kp, kl, _, _ = state
        return (k < max_steps) & ((kp < 0) | (kl < 0))

    def body(state):
        # One loss-and-gradient evaluation per step: the gradient at the new parameters is
        # carried to the next step.
        k, params, opt_state, kp, kl, _, grads = state
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        k = k + 1
        J, ga, gv = loss_and_grad(model, target, *params)
        dist = param_distance(model, *params, a0, w0)
        kp = jnp.where((kp < 0) & (dist > delta_param), k, kp)
        kl = jnp.where((kl < 0) & (J0 - J > delta_loss), k, kl)
        return k, params, opt_state, kp, kl, J, (ga, gv)

    state = (jnp.asarray(0), params, opt_state, never, never, J0, (ga0, gv0))
    k, (a, v), _, kp, kl, J, _ = jax.lax.while_loop(cond, body, state)
    to_tau = lambda s: jnp.where(s >= 0, s * lr, jnp.inf)
    return TrainResult(
        steps_param=kp,
        steps_loss=kl,
        tau_param=to_tau(kp),
        tau_loss=to_tau(kl),
        steps=k,
        loss0=J0,
        loss=J,
        model=model.with_params(a, v),
        result=hitting_result(kp >= 0, kl >= 0),
    )


_train = eqx.filter_jit(train_impl)
