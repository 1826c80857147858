"""Sweeps: a grid of plateau experiments as one jitted, vmapped, sharded computation.

A grid (lags × widths × seeds × learning rates × momenta) is flattened to arrays; widths are
padded to the largest with a mask, so every configuration of an (optimiser,
parameterisation) group shares one compiled program whatever its width, lag or
hyper-parameters. Batches are sharded over all devices JAX sees (and over the processes of
`jax.distributed`, e.g. `--processes N` on one host). A vmapped adaptive solve runs until its
slowest member finishes, so uneven costs are handled twice: the gradient flow uses continuous
batching (slots advanced a bounded number of steps per call and refilled as their problems
finish; `_sweep_flow`), and the discrete optimisers' fixed batches are ordered by predicted
plateau length. With several processes, the flow's slots are not run in lockstep: each
process advances its own slots through its own share of the queue and the processes trade
finished rows every few seconds (a call of one process never waits for another's).
"""

import functools
import itertools
import math
import os
import time
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ._errors import unchecked
from ._flow import (
    advance_search,
    default_solver,
    search_finished,
    search_result,
    start_search,
)
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


def _problem(parameterization, max_width, perturbation, lag, width, key_data):
    """One configuration's padded, masked model (`initial_params`) and its plateau target."""
    a, w, mask = initial_params(width, jr.wrap_key_data(key_data), max_width, perturbation, lag.dtype)
    p = parameterization
    # The grid was validated on the host (plateau_grid); traced checks here would compile to
    # host callbacks, which keep the program out of JAX's persistent compilation cache.
    with unchecked():
        return DiagonalRNN(a, v=p.inverse(w), mask=mask, parameterization=p), plateau_target(lag)


class _Batch(eqx.Module):
    """The per-group compiled function of the discrete optimisers and its static settings."""

    kind: str = eqx.field(static=True)
    parameterization: object = eqx.field(static=True)
    max_width: int = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)
    perturbation: float = eqx.field(static=True)
    delta_param: float = eqx.field(static=True)
    delta_loss: float = eqx.field(static=True)

    def one(self, lag, width, key_data, lr, momentum):
        dtype = lag.dtype
        model, target = _problem(self.parameterization, self.max_width, self.perturbation, lag, width, key_data)
        dp, dl = jnp.asarray(self.delta_param, dtype), jnp.asarray(self.delta_loss, dtype)
        # optax's Adam raises b1**count (float ** int32): standard promotion, whatever the user's.
        with jax.numpy_dtype_promotion("standard"):
            r = train_impl(model, target, self.kind, lr, momentum, self.max_steps, dp, dl)
        return dict(tau_param=r.tau_param, tau_loss=r.tau_loss, steps=r.steps, ok=jnp.asarray(True),
                    reached_param=r.reached_param, reached_loss=r.reached_loss)


class _FlowSlots(eqx.Module):
    """The gradient flow's compiled step of a sweep: `batch_size` slots, each holding one
    hitting-time search (`_flow.FlowSearch`) and its configuration. A call refills the slots
    marked for it with new configurations, then advances every slot's search by at most
    `chunk_steps` solver steps (`_flow.advance_search`). The host then takes the finished
    problems out and refills their slots, so that a slot never waits for a slower member of
    its batch for more than `chunk_steps` steps (continuous batching)."""

    parameterization: object = eqx.field(static=True)
    max_width: int = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)
    chunk_steps: int = eqx.field(static=True)
    perturbation: float = eqx.field(static=True)
    delta_param: float = eqx.field(static=True)
    delta_loss: float = eqx.field(static=True)
    rtol: float = eqx.field(static=True)
    atol: float = eqx.field(static=True)

    def problem(self, lag, width, key_data):
        return _problem(self.parameterization, self.max_width, self.perturbation, lag, width, key_data)

    def start(self, lag, width, key_data, active):
        model, target = self.problem(lag, width, key_data)
        return dict(lag=lag, width=width, key=key_data,
                    search=start_search(model, target, jnp.asarray(1e15, lag.dtype), active=active))

    def one(self, slot, refill, active, lag, width, key_data):
        new = self.start(lag, width, key_data, active)
        slot = jax.tree_util.tree_map(lambda a, b: jnp.where(refill, a, b), new, slot)
        model, target = self.problem(slot["lag"], slot["width"], slot["key"])
        dtype = slot["lag"].dtype
        search = advance_search(
            model, target, slot["search"], jnp.asarray(self.delta_param, dtype), jnp.asarray(self.delta_loss, dtype),
            50.0, default_solver(), self.rtol, self.atol, self.max_steps, self.chunk_steps,
        )
        r = search_result(search)
        summary = dict(finished=search_finished(search), tau_param=r.tau_param, tau_loss=r.tau_loss, steps=r.steps,
                       ok=r.solver_ok, reached_param=r.reached_param, reached_loss=r.reached_loss)
        return dict(slot, search=search), summary


#: XLA:CPU options of the sweep's compiled functions: the classic loop emitters instead of the
#: MLIR fusion emitters. Measured on the flow's program (jax 0.10, 2 cores): the same run time,
#: half the compiler's peak host memory (~470 instead of ~800-900 MiB for the process), which is
#: what lets one process per core stay within a small machine's memory.
_CPU_COMPILER_OPTIONS = {"xla_cpu_use_fusion_emitters": False}


class _jit_for_cpu:
    """`jax.jit(fun, static_argnums=...)` with `_CPU_COMPILER_OPTIONS` when the default backend
    is a CPU (nothing changes on a GPU or TPU). An XLA that no longer knows an option gets
    the function compiled without it."""

    def __init__(self, fun, static_argnums):
        self.fun, self.static_argnums, self.jitted, self.options = fun, static_argnums, None, {}
        functools.update_wrapper(self, fun)

    def __call__(self, *args):
        if self.jitted is None:
            options = _CPU_COMPILER_OPTIONS if jax.default_backend() == "cpu" else {}
            self.jitted = jax.jit(self.fun, static_argnums=self.static_argnums, compiler_options=options)
            self.options = options
        try:
            return self.jitted(*args)
        except jax.errors.JaxRuntimeError as e:  # pragma: no cover - a future XLA without the option
            if not self.options or "No such compile option" not in str(e):
                raise
            self.jitted, self.options = jax.jit(self.fun, static_argnums=self.static_argnums), {}
            return self.jitted(*args)


@functools.partial(_jit_for_cpu, static_argnums=(0, 1))
def _advance_flow(slots_fn: _FlowSlots, mesh: Mesh, slots, refill, active, lags, widths, keys):
    TRACE_COUNT["n"] += 1
    per_device = jax.shard_map(  # per-device loops, as in _run_batch
        jax.vmap(slots_fn.one), mesh=mesh, in_specs=PartitionSpec("batch"), out_specs=PartitionSpec("batch"),
        check_vma=False,
    )
    return per_device(slots, refill, active, lags, widths, keys)


#: Number of times a sweep's batch function has been traced (tests assert it stays at one
#: per (optimiser, parameterisation) group).
TRACE_COUNT = {"n": 0}


@functools.partial(_jit_for_cpu, static_argnums=(0, 1))
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
    benchmarks/RESULTS.md), so a process runs its flow slots on one of its CPU devices (several
    processes, `--processes N`, use several cores)."""
    if devices[0].platform == "cpu" and len(devices) > 1:
        warnings.warn(
            f"plateau_sweep: {len(devices)} CPU devices found; flow batches run on one of them "
            "(with jax 0.10, concurrent XLA:CPU devices hang on the flow's program: its LAPACK LU "
            "together with the moments' exp/erfc). "
            "The other optimisers use all of them.", RuntimeWarning, stacklevel=4,
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
                  train_max_steps=1_000_000, chunk_steps=64,
                  perturbation=0.0, rtol=1e-8, atol=1e-10, order="predicted", done=None,
                  on_batch=None, progress=True):
    """Run plateau configurations (from `plateau_grid`); return their result rows.

    The discrete optimisers run in batches of `batch_size` configurations, one compiled call
    per batch. The gradient flow runs with continuous batching: `batch_size` slots advance
    their hitting-time searches `chunk_steps` solver steps per compiled call, and a finished
    problem's slot takes the next configuration at once, so a batch never idles behind its
    slowest member (adaptive solves of one grid differ in cost by 100× and more).

    **Arguments:**

    - `configs`: list of dicts with optimizer, parameterization, lag, width, seed, lr, momentum.
    - `delta_param`, `delta_loss`: hitting thresholds.
    - `batch_size`: configurations per compiled call, or flow slots (rounded up to a multiple
      of the device count; a last batch is padded by repetition). Every call of a group has
      this shape, so each (optimiser, parameterisation) compiles once.
    - `max_steps`: flow steps per solve segment (default 8192).
    - `train_max_steps`: iteration cap of the discrete optimisers (default 1e6).
    - `chunk_steps`: flow steps per compiled call (the host refills finished slots between
      calls): larger means fewer calls, smaller means less idling of finished slots.
    - `perturbation`: scale of the seed-dependent perturbation of the initialisation.
    - `order`: `"predicted"` (by predicted plateau length: batches of the discrete optimisers
      in increasing order, so batches are even; the flow's queue longest first, so the slots
      run out together) or `"given"`.
    - `done`: keys (`config_key`) to skip — already computed, when resuming.
    - `on_batch(rows)`: called with the rows of each batch, or of the flow problems finished
      by a call, as soon as they are known (e.g. to write them).

    With several processes (`jax.distributed`), the discrete optimisers' batches are sharded
    over every process's devices; the flow runs `batch_size` / processes slots in each
    process, each process through every P-th configuration of the ordered queue, and the
    processes trade finished rows every 2 s and at the end, so every process returns every
    row (and `on_batch` sees the other processes' rows at those exchanges).

    **Returns:** list of row dicts (config, tau_param, tau_loss, steps, status, wall_s), in
    the order they finished. `wall_s` is the row's share of the sweep's wall time.

    ```python
    import jax, jaxmem
    jax.config.update("jax_enable_x64", True)
    grid = jaxmem.plateau_grid([8.0, 10.0, 12.0], widths=[6, 10])
    rows = jaxmem.plateau_sweep(grid, batch_size=4, progress=False)
    ```
    """
    if int(chunk_steps) < 1:
        raise ValueError(f"chunk_steps must be a positive integer; got {chunk_steps!r}.")
    done = set(done or ())
    todo = [c for c in configs if config_key(c) not in done]
    if order not in ("predicted", "given"):
        raise ValueError(f"order must be 'predicted' or 'given'; got {order!r}.")
    devices = jax.devices()
    ndev = len(devices)
    largest = max((sum(1 for c in todo if (c["optimizer"], c["parameterization"]) == g)
                   for g in {(c["optimizer"], c["parameterization"]) for c in todo}), default=1)
    bs = max(1, min(int(batch_size), largest))
    bs = ndev * math.ceil(bs / ndev)
    max_width = max((c["width"] for c in configs), default=1)
    dtype = jnp.zeros(()).dtype
    groups = {}
    for c in todo:
        groups.setdefault((c["optimizer"], c["parameterization"]), []).append(c)
    if order == "predicted":
        for (kind, _), group in groups.items():
            group.sort(key=predicted_log_tau, reverse=kind == "flow")
    settings = dict(delta_param=delta_param, delta_loss=delta_loss)
    rows = []
    bar = Progress(len(todo), "sweep") if progress and todo else None

    def emit(new, note):
        rows.extend(new)
        if on_batch is not None and new:
            on_batch(new)
        if bar is not None and new:
            bar.update(len(new), note)

    try:
        for (kind, pname), group in groups.items():
            p = get_parameterization(pname)
            if kind == "flow":
                fn = _FlowSlots(p, max_width, int(max_steps or 8192), int(chunk_steps), float(perturbation),
                                float(delta_param), float(delta_loss), float(rtol), float(atol))
                _sweep_flow(fn, group, bs, dtype, settings, emit)
            else:
                batch = _Batch(kind, p, max_width, int(train_max_steps), float(perturbation),
                               float(delta_param), float(delta_loss))
                _sweep_batches(batch, _mesh(devices), group, bs, dtype, settings, emit)
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    return rows


@functools.lru_cache(maxsize=4096)
def _key_data_cached(seed):
    out = np.asarray(jr.key_data(jr.key(seed)))
    out.flags.writeable = False
    return out


def _key_data(seed):
    """The raw PRNG key of a seed (cached: making a key is a JAX dispatch, ~0.2 ms, and the
    flow's host loop needs every slot's key at every call)."""
    return _key_data_cached(int(seed))


def _row(c, settings, out, i, wall_s, batch_wall_s):
    rp, rl, ok = bool(out["reached_param"][i]), bool(out["reached_loss"][i]), bool(out["ok"][i])
    return dict(
        c, key=config_key(c), omega=1.0 / c["lag"], **settings,
        tau_param=float(out["tau_param"][i]) if rp else math.inf,
        tau_loss=float(out["tau_loss"][i]) if rl else math.inf,
        steps=int(out["steps"][i]), status=status(rp, rl, ok),
        wall_s=round(wall_s, 6), batch_wall_s=round(batch_wall_s, 4),
    )


def _sweep_batches(batch, mesh, group, bs, dtype, settings, emit):
    """The discrete optimisers: batches of `bs` configurations, each run to its end."""
    sharding = NamedSharding(mesh, PartitionSpec("batch"))
    for start in range(0, len(group), bs):
        chunk = group[start : start + bs]
        padded = chunk + [chunk[-1]] * (bs - len(chunk))
        arrays = [
            np.array([c["lag"] for c in padded], dtype),
            np.array([c["width"] for c in padded], np.int32),
            np.stack([_key_data(c["seed"]) for c in padded]),
            np.array([1e-2 if math.isnan(c["lr"]) else c["lr"] for c in padded], dtype),
            np.array([0.0 if math.isnan(c["momentum"]) else c["momentum"] for c in padded], dtype),
        ]
        t0 = time.perf_counter()
        inputs = [_put(x, sharding) for x in arrays]
        out = _gather(_run_batch(batch, mesh, *inputs))
        wall = time.perf_counter() - t0
        lags = [c["lag"] for c in chunk]
        emit([_row(c, settings, out, i, wall / len(chunk), wall) for i, c in enumerate(chunk)],
             f"{batch.kind} L={min(lags):g}..{max(lags):g} ({len(chunk)} configs)")


def _sweep_flow(fn, group, bs, dtype, settings, emit):
    """The gradient flow with continuous batching: `bs` slots; after every call the finished
    problems leave their slots and the next configurations of the queue take them.

    In one process the slots are sharded over the process's devices. With several processes
    (`jax.distributed`) each process runs its own slots (`bs` / processes of them) on its own
    devices through its own share of the queue (every P-th configuration of the ordered
    queue, so the shares cost alike), with no collective per call: a call of one process
    never waits for another's. The processes exchange their finished rows every
    `_EXCHANGE_S` seconds and once more at the end (`_exchange`), so that every process
    returns, and process 0 writes, every row."""
    nproc = jax.process_count()
    devices = _flow_devices(jax.local_devices())
    mesh = _mesh(devices)
    if nproc == 1:
        for records in _run_slots(fn, mesh, group, range(len(group)), bs, dtype):
            _emit_records(records, group, settings, emit)
        return
    local_bs = max(len(devices), bs // nproc)
    local_bs = len(devices) * math.ceil(local_bs / len(devices))
    mine = range(jax.process_index(), len(group), nproc)
    calls = _run_slots(fn, mesh, group, mine, local_bs, dtype)
    every = float(os.environ.get("JAXMEM_EXCHANGE_S", _EXCHANGE_S))
    pending, finished, last = [], False, time.perf_counter()
    while True:
        if not finished:
            records = next(calls, None)
            if records is None:
                finished = True
            else:
                _emit_records(records, group, settings, emit)  # this process's own rows at once
                pending.extend(records)
                if time.perf_counter() - last < every:
                    continue
        others, all_finished = _exchange(pending, finished)
        pending, last = [], time.perf_counter()
        _emit_records(others, group, settings, emit)
        if all_finished:
            return


#: Seconds between the exchanges of finished rows of a multi-process flow sweep (an interrupt
#: loses at most this much of the other processes' work, besides the calls in flight); the
#: environment variable JAXMEM_EXCHANGE_S overrides it.
_EXCHANGE_S = 2.0
# A finished flow problem travels between processes as one row of numbers: its index in the
# group, then these fields of the call's summary, then its wall times.
_RECORD_FIELDS = ("tau_param", "tau_loss", "steps", "ok", "reached_param", "reached_loss")


def _run_slots(fn, mesh, group, indices, bs, dtype):
    """Continuous batching of the configurations `group[i]`, `i` in `indices` (in that
    order), in `bs` slots on `mesh`. Yields, after every compiled call, the records (one
    array row each: index, `_RECORD_FIELDS`, wall_s, batch_wall_s) of the problems it
    finished, possibly none."""
    if not len(indices):
        return
    sharding = NamedSharding(mesh, PartitionSpec("batch"))
    queue = iter(indices)
    slot_idx = [None] * bs
    slot_wall = [0.0] * bs
    slot_start = [0.0] * bs
    filler = group[indices[0]]
    # The slots' initial contents (all refilled by the first call: only the shapes matter).
    shapes = jax.eval_shape(jax.vmap(fn.start), jnp.zeros(bs, dtype), jnp.zeros(bs, np.int32),
                            jnp.zeros((bs, 2), np.uint32), jnp.zeros(bs, bool))
    slots = jax.tree_util.tree_map(lambda x: _put(np.zeros(x.shape, x.dtype), sharding), shapes)
    first = True
    while True:
        refill = np.zeros(bs, bool)
        now = time.perf_counter()
        for i in range(bs):
            if slot_idx[i] is None:
                j = next(queue, None)
                if j is not None:
                    slot_idx[i], slot_wall[i], slot_start[i] = j, 0.0, now
                    refill[i] = True
        if first:
            refill[:] = True  # placeholders in the slots no configuration took
            first = False
        busy = [i for i in range(bs) if slot_idx[i] is not None]
        if not busy:
            return
        cfgs = [filler if j is None else group[j] for j in slot_idx]
        arrays = [
            refill, np.array([j is not None for j in slot_idx]),
            np.array([c["lag"] for c in cfgs], dtype), np.array([c["width"] for c in cfgs], np.int32),
            np.stack([_key_data(c["seed"]) for c in cfgs]),
        ]
        t0 = time.perf_counter()
        slots, out = _advance_flow(fn, mesh, slots, *[_put(x, sharding) for x in arrays])
        out = jax.tree_util.tree_map(np.asarray, out)  # the mesh is this process's own devices
        wall = time.perf_counter() - t0
        records = []
        for i in busy:
            slot_wall[i] += wall / len(busy)
            if out["finished"][i]:
                records.append([slot_idx[i], *(float(out[k][i]) for k in _RECORD_FIELDS), slot_wall[i],
                                time.perf_counter() - slot_start[i]])
                slot_idx[i] = None
        yield np.array(records, np.float64).reshape(-1, 3 + len(_RECORD_FIELDS))


def _emit_records(records, group, settings, emit):
    if not len(records):
        return
    out = {k: records[:, 1 + n] for n, k in enumerate(_RECORD_FIELDS)}
    rows = [_row(group[int(rec[0])], settings, out, n, float(rec[-2]), float(rec[-1])) for n, rec in enumerate(records)]
    lags = [r["lag"] for r in rows]
    emit(rows, f"flow L={min(lags):g}..{max(lags):g}")


def _exchange(records, finished):
    """All processes' records since the last exchange, but this process's own, and whether
    every process has finished its share (a collective: every process calls it in turn)."""
    from jax.experimental import multihost_utils

    width = 3 + len(_RECORD_FIELDS)
    records = np.asarray(records, np.float64).reshape(-1, width)
    counts = np.asarray(multihost_utils.process_allgather(np.array([len(records), int(finished)])))
    most = int(counts[:, 0].max())
    others = np.zeros((0, width))
    if most:
        buf = np.zeros((most, width))
        buf[: len(records)] = records
        every = np.asarray(multihost_utils.process_allgather(buf))
        others = np.concatenate([every[q, : counts[q, 0]] for q in range(len(counts)) if q != jax.process_index()])
    return others, bool(counts[:, 1].all())


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
