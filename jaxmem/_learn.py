"""Training on data: optax optimisers on the empirical loss of sampled input/output paths.

The empirical loss (docs/mathematics.md) is the mean over paths and over the grid times after a burn-in
of $(y - \\hat y)^2$. With unit-intensity white-noise inputs and a linear target it estimates the
exact white-noise loss $J$, which is how training on data is held against the theory: the same
hitting-time definitions (parameters moved by $\\delta$, loss down by $\\delta$) mark the escape
from a plateau.

Any sequence model with a `predict(xs, dt)` method trains here; its trainable parameters are its
floating-point array leaves except the fields named in `FROZEN_FIELDS` (masks, time steps).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray, PyTree

from ._errors import (
    check,
    check_momentum,
    check_positive,
    is_traced,
    positive_int,
    show,
    warn_if_not_x64,
)
from ._results import RESULTS, hitting_result, raise_if_failed
from ._train import OPTIMIZERS, make_optimizer

#: Fields that training never changes: masks (which units exist) and time steps.
FROZEN_FIELDS = ("mask", "dt")
#: A step whose loss rises above L₀ + DIVERGENCE_FACTOR·(L₀ + mean y²) has diverged.
DIVERGENCE_FACTOR = 100.0


def trainable(model) -> PyTree[bool]:
    """The filter of a model's trainable leaves: floating-point arrays, except `FROZEN_FIELDS`."""
    spec = jax.tree.map(eqx.is_inexact_array, model)

    def keep(path, leaf):
        names = {getattr(p, "name", None) for p in path}
        return bool(leaf) and not names.intersection(FROZEN_FIELDS)

    return jax.tree_util.tree_map_with_path(keep, spec)


def split(model):
    """`(params, static)`: the trainable leaves and the rest (`eqx.combine` joins them)."""
    return eqx.partition(model, trainable(model))


def time_weights(n_t: int, dt, burn_in) -> Float[Array, " n_t"]:
    """1 at the grid times t_j = j·dt ≥ `burn_in`, 0 before (the burn-in is left out of the loss)."""
    t = jnp.arange(n_t, dtype=jnp.result_type(dt, float)) * dt
    return (t >= burn_in).astype(t.dtype)


def predict_paths(model, xs, dt) -> Float[Array, "N n_t"]:
    """The model's outputs on a batch of paths `xs` (N, n_t)."""
    return jax.vmap(lambda x: model.predict(x, dt))(xs)


def _loss(model, xs, ys, dt, weights):
    err = (ys - predict_paths(model, xs, dt)) ** 2
    return jnp.sum(err * weights) / (xs.shape[0] * jnp.sum(weights))


def empirical_loss(model, xs, ys, dt, *, burn_in=0.0) -> Float[Array, ""]:
    r"""The empirical loss $\frac{1}{N|T_b|}\sum_n\sum_{t_j \geq b}(y_{n,j} - \hat y_{n,j})^2$.

    **Arguments:**

    - `model`: a sequence model with `predict(xs, dt)` (e.g. `DiagonalRNN`, `DiscreteRNN`).
    - `xs`, `ys`: input and target paths of shape `(N, n_t)` on the grid t_j = j·dt.
    - `dt`: the grid step > 0.
    - `burn_in`: times before it are left out (the target's memory horizon: outputs there
      depend on the zero history).

    With unit-intensity white noise and a linear target this estimates the exact
    `white_noise_loss` (up to the interpolation's O(dt²) smoothing).

    ```python
    import jax, jax.random as jr, jaxmem
    jax.config.update("jax_enable_x64", True)
    xs = jaxmem.white_noise(jr.key(0), 8, 401, 0.05)
    ys = jaxmem.linear_outputs(jaxmem.plateau_target(4.0), xs, 0.05)
    jaxmem.empirical_loss(jaxmem.canonical_model(4), xs, ys, 0.05, burn_in=8.0)   # ~ 0.89
    ```
    """
    xs, ys = _check_paths(xs, ys)
    dt = check_positive(dt, "dt")
    burn_in = _check_burn_in(burn_in, xs.shape[1], dt)
    return _loss(model, xs, ys, dt, time_weights(xs.shape[1], dt, burn_in))


def _check_paths(xs, ys, what="training"):
    xs, ys = jnp.asarray(xs), jnp.asarray(ys)
    if xs.ndim != 2 or xs.shape != ys.shape or xs.shape[1] < 2:
        raise ValueError(f"{what} paths xs and ys must have the same shape (N, n_t) with n_t >= 2; "
                         f"got {xs.shape} and {ys.shape}.")
    if not is_traced(xs):
        check(xs, ~jnp.all(jnp.isfinite(xs)), f"{what} inputs xs must be finite; got {show(xs)}.")
    if not is_traced(ys):
        check(ys, ~jnp.all(jnp.isfinite(ys)), f"{what} outputs ys must be finite; got {show(ys)}.")
    return xs, ys


def _check_burn_in(burn_in, n_t, dt):
    if is_traced(burn_in):
        return burn_in
    b = float(burn_in)
    if not (b >= 0 and b <= (n_t - 1) * float(dt)):
        raise ValueError(f"burn_in must be in [0, duration] = [0, {(n_t - 1) * float(dt):g}] (some times must be "
                         f"left for the loss); got {burn_in!r}.")
    return b


def param_coords(model) -> Float[Array, " p"]:
    """The coordinates in which "parameters moved by δ" is measured: `(a, rates)` over the
    active modes for models with rates (the theory's coordinates, whatever the
    parameterisation), otherwise every trainable leaf, flattened."""
    if hasattr(model, "rates") and hasattr(model, "a") and hasattr(model, "active"):
        on = model.active
        return jnp.concatenate([jnp.where(on, model.a, 0.0), jnp.where(on, model.rates, 0.0)])
    leaves = jax.tree.leaves(eqx.filter(model, trainable(model)))
    return jnp.concatenate([jnp.ravel(x) for x in leaves])


class DataTrainState(eqx.Module):
    """Training on data in progress (one configuration), advanced in bounded chunks by
    `learn_step`."""

    # Where the trainable parameters are after `steps` iterations, the optimiser's state and
    # the key of the minibatches still to come.
    steps: Int[Array, ""]
    params: PyTree
    opt_state: PyTree
    key: PRNGKeyArray
    # The training loss at step 0 (whole training set) and the sum of the minibatch losses
    # since the last `take_mean` (for a running mean), with their count.
    loss0: Float[Array, ""]
    loss_sum: Float[Array, ""]
    loss_count: Int[Array, ""]
    # The first iteration whose parameters moved by more than δ_param from the start, and
    # whose minibatch loss fell below loss0 − δ_loss (−1: not yet).
    steps_param: Int[Array, ""]
    steps_loss: Int[Array, ""]
    # Non-finite values or a blown-up loss: training stopped there.
    diverged: Bool[Array, ""]
    blow_up: Float[Array, ""]


def learn_init(model, optimizer, lr, momentum, xs, ys, dt, weights, key) -> DataTrainState:
    """The state at iteration 0 (the loss over the whole training set `xs`, `ys`)."""
    params, static = split(model)
    loss0 = _loss(model, xs, ys, dt, weights)
    never = jnp.asarray(-1)
    scale = jnp.sum(ys**2 * weights) / (ys.shape[0] * jnp.sum(weights))
    zero = jnp.zeros((), loss0.dtype)
    return DataTrainState(
        steps=jnp.asarray(0), params=params, opt_state=_opt(optimizer, lr, momentum).init(params), key=key,
        loss0=loss0, loss_sum=zero, loss_count=jnp.asarray(0), steps_param=never, steps_loss=never,
        diverged=~jnp.isfinite(loss0), blow_up=loss0 + DIVERGENCE_FACTOR * (loss0 + scale),
    )


def _opt(optimizer, lr, momentum):
    return make_optimizer(optimizer, lr, momentum) if isinstance(optimizer, str) else optimizer


def learn_step(static, coords0, state: DataTrainState, xs, ys, dt, weights, optimizer, lr, momentum, batch_size,
               delta_param, delta_loss, stop, sampler=None) -> DataTrainState:
    """Iterations until `stop` (a traced step count) or divergence. Each draws a minibatch of
    `batch_size` paths (all of them, in order, when it equals their number; or fresh paths
    `sampler(key)` -> `(xs, ys)` when a sampler is given), evaluates the loss and its gradient
    there, records the hitting thresholds at the current parameters and takes one optimiser
    step. Chunks do not change the iterates."""
    opt = _opt(optimizer, lr, momentum)
    n_paths = xs.shape[0]
    full = batch_size == n_paths

    def loss_fn(params, bx, by):
        return _loss(eqx.combine(params, static), bx, by, dt, weights)

    def cond(s):
        return (s.steps < stop) & ~s.diverged

    def body(s):
        key, sub = jr.split(s.key)
        if sampler is not None:
            bx, by = sampler(sub)
        elif full:
            bx, by = xs, ys
        else:
            idx = jr.choice(sub, n_paths, (batch_size,), replace=False)
            bx, by = xs[idx], ys[idx]
        loss, grads = jax.value_and_grad(loss_fn)(s.params, bx, by)
        model = eqx.combine(s.params, static)
        dist = jnp.sqrt(jnp.sum((param_coords(model) - coords0) ** 2))
        k = s.steps
        kp = jnp.where((s.steps_param < 0) & (dist > delta_param), k, s.steps_param)
        kl = jnp.where((s.steps_loss < 0) & (s.loss0 - loss > delta_loss), k, s.steps_loss)
        updates, opt_state = opt.update(grads, s.opt_state, s.params)
        params = optax.apply_updates(s.params, updates)
        finite = jnp.isfinite(loss) & jnp.all(jnp.array([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(params)]))
        diverged = ~finite | (loss > s.blow_up)
        # A diverged step keeps the last good parameters (its rows stay meaningful).
        params = jax.tree.map(lambda new, old: jnp.where(diverged, old, new), params, s.params)
        opt_state = jax.tree.map(lambda new, old: jnp.where(diverged, old, new), opt_state, s.opt_state)
        good = jnp.where(diverged, 0.0, loss)
        return DataTrainState(
            steps=jnp.where(diverged, k, k + 1), params=params, opt_state=opt_state, key=key, loss0=s.loss0,
            loss_sum=s.loss_sum + good, loss_count=s.loss_count + (~diverged).astype(int), steps_param=kp,
            steps_loss=kl, diverged=diverged, blow_up=s.blow_up,
        )

    return jax.lax.while_loop(cond, body, state)


def take_mean(state: DataTrainState):
    """`(state with the running sum reset, mean minibatch loss since the last call)` (NaN if
    no step was taken)."""
    mean = jnp.where(state.loss_count > 0, state.loss_sum / jnp.maximum(state.loss_count, 1), jnp.nan)
    reset = eqx.tree_at(lambda s: (s.loss_sum, s.loss_count), state,
                        (jnp.zeros_like(state.loss_sum), jnp.zeros_like(state.loss_count)))
    return reset, mean


def learn_result(state: DataTrainState) -> RESULTS:
    """The outcome: `diverged`, or which hitting thresholds were reached."""
    return RESULTS.where(state.diverged, RESULTS.diverged,
                         hitting_result(state.steps_param >= 0, state.steps_loss >= 0))


class DataTrainResult(eqx.Module):
    """Training on data, finished: the trained `model`, the loss curves at `record_steps`
    (`train_loss`: mean minibatch loss since the previous record, the whole training set's at
    step 0; `test_loss`: on the held-out paths, NaN without them), the escape iterations
    `steps_param` / `steps_loss` (−1: not reached) and the outcome `result`."""

    model: PyTree
    record_steps: Int[Array, " r"]
    train_loss: Float[Array, " r"]
    test_loss: Float[Array, " r"]
    steps_param: Int[Array, ""]
    steps_loss: Int[Array, ""]
    steps: Int[Array, ""]
    result: RESULTS


def record_schedule(steps: int, records: int) -> list[int]:
    """Steps at which the curves are recorded: 0, `steps`, and about `records` steps in between,
    spaced evenly on a log axis (the curves are drawn on log axes)."""
    steps, records = positive_int(steps, "steps"), positive_int(records, "records")
    grid = np.unique(np.round(np.geomspace(1, steps, records)).astype(int))
    return [0, *[int(k) for k in grid if 0 < k <= steps]]


def train_on_data(
    model,
    xs,
    ys,
    dt,
    optimizer="adam",
    *,
    lr=1e-2,
    momentum=0.9,
    steps: int = 1000,
    batch_size: int | None = None,
    burn_in=0.0,
    key: PRNGKeyArray | None = None,
    test: tuple | None = None,
    records: int = 50,
    delta_param=0.05,
    delta_loss=0.05,
    throw: bool = True,
) -> DataTrainResult:
    r"""Train a sequence model on sampled paths with an optax optimiser.

    **Arguments:**

    - `model`: a model with `predict(xs, dt)`; its trainable leaves are its floating-point
      arrays except masks and time steps.
    - `xs`, `ys`: training inputs and targets, shape `(N, n_t)`, on the grid t_j = j·dt.
    - `optimizer`: `"gd"`, `"momentum"`, `"adam"` or an `optax.GradientTransformation`; `lr`,
      `momentum` its hyper-parameters.
    - `steps`: iterations; `batch_size`: paths per minibatch (default all: full-batch).
    - `burn_in`: times left out of the loss; `key`: the minibatch sampling key.
    - `test`: held-out `(xs_test, ys_test)` for the test curve.
    - `records`: about how many points each curve has (log-spaced steps).
    - `delta_param`, `delta_loss`: the hitting thresholds of the escape (as in `train`).
    - `throw`: raise on divergence (else `result == RESULTS.diverged`).

    ```python
    import jax, jax.random as jr, jaxmem
    jax.config.update("jax_enable_x64", True)
    k = jaxmem.ExpSum([1.0], [0.5])
    xs = jaxmem.white_noise(jr.key(0), 16, 201, 0.05)
    ys = jaxmem.linear_outputs(k, xs, 0.05)
    res = jaxmem.train_on_data(jaxmem.DiagonalRNN.init(jr.key(1), 2), xs, ys, 0.05, "adam",
                               lr=1e-2, steps=50, burn_in=2.0, records=5)
    res.train_loss
    ```
    """
    warn_if_not_x64("train_on_data")
    xs, ys = _check_paths(xs, ys)
    dt = check_positive(dt, "dt")
    steps = positive_int(steps, "steps")
    batch_size = xs.shape[0] if batch_size is None else positive_int(batch_size, "batch_size")
    if batch_size > xs.shape[0]:
        raise ValueError(f"batch_size must be at most the number of training paths {xs.shape[0]}; got {batch_size}.")
    burn_in = _check_burn_in(burn_in, xs.shape[1], dt)
    lr = check_positive(lr, "lr")
    if optimizer == "momentum":
        momentum = check_momentum(momentum)
    if isinstance(optimizer, str) and optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; expected one of {OPTIMIZERS}.")
    if not hasattr(model, "predict"):
        raise TypeError(f"train_on_data needs a model with a predict(xs, dt) method; got {type(model).__name__}.")
    if test is not None:
        test = _check_paths(*test, what="test")
        if test[0].shape[1] != xs.shape[1]:
            raise ValueError(f"test paths must have n_t = {xs.shape[1]} samples like the training paths; "
                             f"got {test[0].shape[1]}.")
    key = jr.key(0) if key is None else key
    schedule = record_schedule(steps, records)
    weights = time_weights(xs.shape[1], dt, burn_in)
    dtype = xs.dtype
    hyper = (jnp.asarray(lr, dtype), jnp.asarray(momentum, dtype), jnp.asarray(delta_param, dtype),
             jnp.asarray(delta_loss, dtype))
    with jax.numpy_dtype_promotion("standard"):
        state = _init(model, optimizer, hyper, xs, ys, dt, weights, key)
        params0, static = split(model)
        train_curve, test_curve = [], []
        for k in schedule:
            state = _advance(static, param_coords(model), state, xs, ys, dt, weights, optimizer, hyper, batch_size,
                             jnp.asarray(k))
            state, mean = _mean(state)
            train_curve.append(state.loss0 if k == 0 else mean)
            fitted = eqx.combine(state.params, static)
            test_curve.append(_test_loss(fitted, test, dt, weights) if test is not None else jnp.asarray(jnp.nan))
    result = learn_result(state)
    raise_if_failed(result, throw)
    return DataTrainResult(
        model=eqx.combine(state.params, static), record_steps=jnp.asarray(schedule), train_loss=jnp.stack(train_curve),
        test_loss=jnp.stack(test_curve), steps_param=state.steps_param, steps_loss=state.steps_loss,
        steps=state.steps, result=result,
    )


@eqx.filter_jit
def _init(model, optimizer, hyper, xs, ys, dt, weights, key):
    lr, momentum, _, _ = hyper
    return learn_init(model, optimizer, lr, momentum, xs, ys, dt, weights, key)


@eqx.filter_jit
def _advance(static, coords0, state, xs, ys, dt, weights, optimizer, hyper, batch_size, stop):
    lr, momentum, dp, dl = hyper
    return learn_step(static, coords0, state, xs, ys, dt, weights, optimizer, lr, momentum, batch_size, dp, dl,
                      stop)


_mean = eqx.filter_jit(take_mean)


@eqx.filter_jit
def _test_loss(model, test, dt, weights):
    return _loss(model, *test, dt, weights)
