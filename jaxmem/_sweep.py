"""Sweeps: a grid of plateau experiments as one jitted, vmapped, sharded computation.

A grid (lags × widths × seeds × learning rates × momenta) is flattened to arrays; widths are
padded to the largest with a mask, so every configuration of an (optimiser,
parameterisation) group shares one compiled program whatever its width, lag or
hyper-parameters. Batches are sharded over all devices JAX sees; configurations are ordered
by their predicted plateau length so a batch of adaptive solves costs close to the sum of its
members (a vmapped solve runs until its slowest member finishes).
"""

import itertools
import math
import time
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ._errors import unchecked
from ._flow import default_solver, hitting_times_impl
from ._models import DiagonalRNN
from ._parameterization import get_parameterization
from ._presets import MAX_RATE, MIN_RATE, plateau_target
from ._progress import Progress
from ._train import OPTIMIZERS, train_impl

KINDS = ("flow", *OPTIMIZERS)


def config_key(c) -> str:
    """A stable identifier of one configuration (used to resume)."""
    return (f"{c['optimizer']}|{c['parameterization']}|L={c['lag']!r}|m={c['width']}|seed={c['seed']}"
            f"|lr={c['lr']!r}|mom={c['momentum']!r}")


def plateau_grid(lags, *, widths=(10,), seeds=(0,), optimizers=("flow",), lrs=(1e-2,), momenta=(0.9,),
                 parameterizations=("identity",)):
    """The configurations of a plateau sweep, as a list of dicts (flow rows ignore lr/momentum)."""
    lags = [float(x) for x in lags]
    if not lags or any(not (math.isfinite(x) and x > 0) for x in lags):
        raise ValueError(f"lags must be positive and finite (omega = 1/lag > 0); got {lags}.")
    widths = [int(m) for m in widths]
    if not widths or any(m < 1 for m in widths):
        raise ValueError(f"widths must be positive integers; got {widths}.")
    for name, vals in (("lrs", lrs), ("momenta", momenta)):
        if any(not (math.isfinite(float(v)) and float(v) >= 0) for v in vals):
            raise ValueError(f"{name} must be finite and >= 0; got {list(vals)}.")
    if any(float(v) <= 0 for v in lrs):
        raise ValueError(f"learning rates must be > 0; got {list(lrs)}.")
    bad = [o for o in optimizers if o not in KINDS]
    if bad or not optimizers:
        raise ValueError(f"unknown optimizer(s) {bad}; expected some of {KINDS}.")
    for p in parameterizations:
        get_parameterization(p)
    out = []
    for p, opt in itertools.product(parameterizations, optimizers):
        hyper = [(float("nan"), float("nan"))] if opt == "flow" else list(itertools.product(lrs, momenta))
        if opt in ("gd", "adam"):
            hyper = [(float(lr), float("nan")) for lr in lrs]
        for lag, m, seed, (lr, mom) in itertools.product(lags, widths, seeds, hyper):
            out.append(dict(optimizer=opt, parameterization=p, lag=lag, width=m, seed=int(seed),
                            lr=float(lr), momentum=float(mom)))
    return out


def initial_params(width, key, max_width, perturbation, dtype):
    """The canonical initialisation for a (traced) width, padded to `max_width` with a mask:
    a = e₁, w = geomspace(0.5, 4, width); with `perturbation` > 0, the active rates are
    multiplied by exp(p·ξ) and p·η is added to the coefficients (ξ, η standard normal)."""
    i = jnp.arange(max_width, dtype=dtype)
    width = jnp.asarray(width).astype(dtype)  # explicit: no implicit int/float promotion
    active = i < width
    denom = jnp.maximum(width - 1, 1)
    w = jnp.where(active, MIN_RATE * (MAX_RATE / MIN_RATE) ** (i / denom), 1.0)
    a = jnp.where(i == 0, 1.0, 0.0).astype(dtype)
    kw, ka = jr.split(key)
    w = jnp.where(active, w * jnp.exp(perturbation * jr.normal(kw, (max_width,), dtype)), w)
    a = jnp.where(active, a + perturbation * jr.normal(ka, (max_width,), dtype), 0.0)
    return a, w, active.astype(dtype)


class _Batch(eqx.Module):
    """The per-group compiled function and its static settings."""

    kind: str = eqx.field(static=True)
    parameterization: object = eqx.field(static=True)
    max_width: int = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)
    perturbation: float = eqx.field(static=True)
    delta_param: float = eqx.field(static=True)
    delta_loss: float = eqx.field(static=True)
    rtol: float = eqx.field(static=True)
    atol: float = eqx.field(static=True)

    def one(self, lag, width, key_data, lr, momentum):
        dtype = lag.dtype
        key = jr.wrap_key_data(key_data)
        a, w, mask = initial_params(width, key, self.max_width, self.perturbation, dtype)
        p = self.parameterization
        # The grid was validated on the host (plateau_grid); traced checks here would compile
        # to host callbacks, which keep the program out of JAX's persistent compilation cache.
        with unchecked():
            model = DiagonalRNN(a, v=p.inverse(w), mask=mask, parameterization=p)
            target = plateau_target(lag)
        dp, dl = jnp.asarray(self.delta_param, dtype), jnp.asarray(self.delta_loss, dtype)
        if self.kind == "flow":
            r = hitting_times_impl(model, target, dp, dl, jnp.asarray(1e15, dtype), 50.0, default_solver(),
                                   self.rtol, self.atol, self.max_steps)
            return dict(tau_param=r.tau_param, tau_loss=r.tau_loss, steps=r.steps, ok=r.solver_ok,
                        reached_param=r.reached_param, reached_loss=r.reached_loss)
        # optax's Adam raises b1**count (float ** int32): standard promotion, whatever the user's.
        with jax.numpy_dtype_promotion("standard"):
            r = train_impl(model, target, self.kind, lr, momentum, self.max_steps, dp, dl)
        return dict(tau_param=r.tau_param, tau_loss=r.tau_loss, steps=r.steps, ok=jnp.asarray(True),
                    reached_param=r.reached_param, reached_loss=r.reached_loss)


#: Number of times a sweep's batch function has been traced (tests assert it stays at one
#: per (optimiser, parameterisation) group).
TRACE_COUNT = {"n": 0}


@eqx.filter_jit
def _run_batch(batch: _Batch, mesh: Mesh, lags, widths, keys, lrs, moms):
    TRACE_COUNT["n"] += 1
    # shard_map, not a sharded vmap: each device runs the adaptive loops of its own shard and
    # stops when its slowest member does. Under GSPMD the batched loop predicate ("any member
    # still running") would be an all-reduce across devices at every solver step, and every
    # device would run until the slowest member of the whole batch finished.
    per_device = jax.shard_map(
        jax.vmap(batch.one), mesh=mesh, in_specs=PartitionSpec("batch"), out_specs=PartitionSpec("batch"),
        check_vma=False,
    )
    return per_device(lags, widths, keys, lrs, moms)


def _mesh(devices=None):
    return Mesh(np.array(jax.devices() if devices is None else devices), ("batch",))


def _flow_devices(devices):
    """The devices a flow batch may use. Several XLA:CPU host devices running the flow's
    program concurrently hang with jax 0.10 (Rodas4's LAPACK LU with the moments' exp/erfc;
    benchmarks/RESULTS.md), so on a single-process CPU platform flow batches use one device."""
    if devices[0].platform == "cpu" and len(devices) > 1 and jax.process_count() == 1:
        warnings.warn(
            f"plateau_sweep: {len(devices)} CPU devices found; flow batches run on one of them "
            "(with jax 0.10, concurrent XLA:CPU devices hang on the flow's program: its LAPACK LU "
            "together with the moments' exp/erfc). "
            "The other optimisers use all of them.", RuntimeWarning, stacklevel=3,
        )
        return devices[:1]
    return devices


def _put(x, sharding):
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])


def _gather(tree):
    if jax.process_count() > 1:  # pragma: no cover - multi-host
        from jax.experimental import multihost_utils

        return jax.tree_util.tree_map(np.asarray, multihost_utils.process_allgather(tree, tiled=True))
    return jax.tree_util.tree_map(np.asarray, tree)


def predicted_log_tau(c):
    """Ordering key: log τ ≈ w_min·L on the plateau family (the Thm 20 exponent)."""
    return MIN_RATE * c["lag"]


def plateau_sweep(configs, *, delta_param=0.05, delta_loss=0.05, batch_size=64, max_steps=None,
                  train_max_steps=1_000_000,
                  perturbation=0.0, rtol=1e-8, atol=1e-10, order="predicted", done=None,
                  on_batch=None, progress=True):
    """Run plateau configurations (from `plateau_grid`) batch by batch; return result rows.

    **Arguments:**

    - `configs`: list of dicts with optimizer, parameterization, lag, width, seed, lr, momentum.
    - `delta_param`, `delta_loss`: hitting thresholds.
    - `batch_size`: configurations per compiled call (rounded up to a multiple of the device
      count; the last batch is padded by repetition). Every batch of a group has this shape,
      so each (optimiser, parameterisation) compiles once.
    - `max_steps`: flow steps per solve segment (default 8192).
    - `train_max_steps`: iteration cap of the discrete optimisers (default 1e6).
    - `perturbation`: scale of the seed-dependent perturbation of the initialisation.
    - `order`: `"predicted"` (by predicted plateau length, so batches are even) or `"given"`.
    - `done`: keys (`config_key`) to skip — already computed, when resuming.
    - `on_batch(rows)`: called with each finished batch's rows (e.g. to write them).

    **Returns:** list of row dicts (config, tau_param, tau_loss, steps, status, wall_s).

    ```python
    import jax, jaxmem
    jax.config.update("jax_enable_x64", True)
    grid = jaxmem.plateau_grid([8.0, 10.0, 12.0], widths=[6, 10])
    rows = jaxmem.plateau_sweep(grid, batch_size=8, progress=False)
    ```
    """
    done = set(done or ())
    todo = [c for c in configs if config_key(c) not in done]
    if order == "predicted":
        todo.sort(key=predicted_log_tau)
    elif order != "given":
        raise ValueError(f"order must be 'predicted' or 'given'; got {order!r}.")
    devices = jax.devices()
    ndev = len(devices)
    largest = max((sum(1 for c in todo if (c["optimizer"], c["parameterization"]) == g)
                   for g in {(c["optimizer"], c["parameterization"]) for c in todo}), default=1)
    bs = max(1, min(int(batch_size), largest))
    bs = ndev * math.ceil(bs / ndev)
    flow_devices = _flow_devices(devices) if any(c["optimizer"] == "flow" for c in todo) else devices
    max_width = max((c["width"] for c in configs), default=1)
    dtype = jnp.zeros(()).dtype
    groups = {}
    for c in todo:
        groups.setdefault((c["optimizer"], c["parameterization"]), []).append(c)
    n_batches = sum(math.ceil(len(g) / bs) for g in groups.values())
    rows = []
    bar = Progress(n_batches, "sweep") if progress and n_batches else None
    try:
        for (kind, pname), group in groups.items():
            steps = (max_steps or 8192) if kind == "flow" else int(train_max_steps)
            batch = _Batch(kind, get_parameterization(pname), max_width, steps, float(perturbation),
                           float(delta_param), float(delta_loss), float(rtol), float(atol))
            mesh = _mesh(flow_devices if kind == "flow" else devices)
            sharding = NamedSharding(mesh, PartitionSpec("batch"))
            for start in range(0, len(group), bs):
                chunk = group[start : start + bs]
                padded = chunk + [chunk[-1]] * (bs - len(chunk))
                keys = np.stack([np.asarray(jr.key_data(jr.key(c["seed"]))) for c in padded])
                arrays = [
                    np.array([c["lag"] for c in padded], dtype),
                    np.array([c["width"] for c in padded], np.int32),
                    keys,
                    np.array([1e-2 if math.isnan(c["lr"]) else c["lr"] for c in padded], dtype),
                    np.array([0.0 if math.isnan(c["momentum"]) else c["momentum"] for c in padded], dtype),
                ]
                t0 = time.perf_counter()
                inputs = [_put(x, sharding) for x in arrays]
                out = _gather(_run_batch(batch, mesh, *inputs))
                wall = time.perf_counter() - t0
                new = []
                for i, c in enumerate(chunk):
                    rp, rl, ok = bool(out["reached_param"][i]), bool(out["reached_loss"][i]), bool(out["ok"][i])
                    new.append(dict(
                        c, key=config_key(c), omega=1.0 / c["lag"], delta_param=delta_param, delta_loss=delta_loss,
                        tau_param=float(out["tau_param"][i]) if rp else math.inf,
                        tau_loss=float(out["tau_loss"][i]) if rl else math.inf,
                        steps=int(out["steps"][i]), status=status(rp, rl, ok),
                        wall_s=round(wall / len(chunk), 6), batch_wall_s=round(wall, 4),
                    ))
                rows.extend(new)
                if on_batch is not None:
                    on_batch(new)
                if bar is not None:
                    lags = [c["lag"] for c in chunk]
                    bar.update(1, f"{kind}/{pname} L={min(lags):g}..{max(lags):g} ({len(chunk)} configs)")
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    return rows


def status(reached_param, reached_loss, solver_ok=True):
    """`ok`, `loss_not_reached`, `param_not_reached`, `not_reached` or `solver_failed`."""
    if not solver_ok:
        return "solver_failed"
    if reached_param and reached_loss:
        return "ok"
    if reached_param:
        return "loss_not_reached"
    if reached_loss:
        return "param_not_reached"
    return "not_reached"
