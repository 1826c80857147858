"""Sweeps: a grid of plateau experiments run on every device, with continuous batching.

Every kind of training runs in slots: a compiled call (`batching.advance_slots`) refills the
slots whose problems finished and advances every slot by a bounded number of steps (solver
steps of the gradient flow, iterations of the discrete optimisers), so that no call lasts long
(an interrupt is answered between calls) and no slot idles behind a slower member of its batch
for more than one call. The queue runs longest predicted plateau first, so the slots run out
together. With several processes (`jax.distributed`), each process advances its own slots
through its own share of the queue and the processes trade finished rows every few seconds (a
call of one process never waits for another's).
"""

import math
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from .. import _distributed
from .._errors import check_fraction, check_positive, positive_int
from .._flow import flow_solver
from .._hitting import DEFAULT_MAX_STEPS
from .._parameterization import get_parameterization
from .._results import names
from .batching import FlowSlots, TrainSlots, advance_slots, flow_devices, mesh, put
from .grid import config_key, groups, predicted_log_tau
from .programs import slots_program
from .progress import Progress

#: Iterations of a discrete optimiser per compiled call: ~0.3 s for 64 slots of width 10 on one
#: busy CPU core, so that an interrupt is answered within a second.
TRAIN_CHUNK_STEPS = 2000


def predicted_cost(c) -> float:
    """A configuration's predicted share of a sweep's work, for the estimate of the time left:
    the flow's solver steps grow about linearly with the lag, a discrete optimiser's iterations
    like its plateau, e^{w_min·L}/η."""
    if c["optimizer"] == "flow":
        return c["lag"]
    return math.exp(min(predicted_log_tau(c), 700.0)) / c["lr"]  # capped: no overflow at huge lags


def plateau_sweep(configs, *, delta_param=0.05, delta_loss=0.05, batch_size=64, flow_max_steps=DEFAULT_MAX_STEPS,
                  train_max_steps=1_000_000, chunk_steps=64, train_chunk_steps=TRAIN_CHUNK_STEPS,
                  perturbation=0.0, rtol=1e-8, atol=1e-10, solver="rodas4", order="predicted", done=None,
                  on_batch=None, progress=True, stats=None):
    """Run plateau configurations (from `plateau_grid`); return their result rows.

    Every (optimiser, parameterisation) group runs with continuous batching: `batch_size`
    slots advance their problems `chunk_steps` flow solver steps (or `train_chunk_steps`
    optimiser iterations) per compiled call, and a finished problem's slot takes the next
    configuration at once, so a batch never idles behind its slowest member (the problems of
    one grid differ in cost by 100× and more) and no call lasts long.

    **Arguments:**

    - `configs`: list of dicts with optimizer, parameterization, lag, width, seed, lr, momentum.
    - `delta_param`, `delta_loss`: hitting thresholds.
    - `batch_size`: slots per compiled call (rounded up to a multiple of the device count).
      Every call of a group has this shape, so each (optimiser, parameterisation) compiles
      once.
    - `flow_max_steps`: flow steps per solve segment (default 8192).
    - `train_max_steps`: iteration cap of the discrete optimisers (default 1e6).
    - `chunk_steps`, `train_chunk_steps`: flow steps and optimiser iterations per compiled
      call (the host refills finished slots between calls): larger means fewer calls, smaller
      means less idling of finished slots and a quicker answer to an interrupt. Results do
      not depend on them.
    - `perturbation`: scale of the seed-dependent perturbation of the initialisation.
    - `rtol`, `atol`, `solver`: the flow's step-controller tolerances and its solver by name,
      "rodas4" (`jaxmem.default_solver()`) or "kvaerno5" (`jaxmem.long_lag_solver()`, for
      lags past ≈ 44).
    - `order`: `"predicted"` (the queue by predicted plateau length, longest first, so the
      slots run out together) or `"given"`.
    - `done`: keys (`config_key`) to skip — already computed, when resuming.
    - `on_batch(rows)`: called with the rows of the problems finished by a call, as soon as
      they are known (e.g. to write them).
    - `stats`: a dict, filled with this process's number of compiled calls per kind of
      training (`{"flow": n, "gd": n, ...}`), e.g. to measure how well the slots are used.

    With several processes (`jax.distributed`), each process runs `batch_size` / processes
    slots through every P-th configuration of the ordered queue, and the processes trade
    finished rows every 2 s and at the end, so every process returns every row (and
    `on_batch` sees the other processes' rows at those exchanges).

    **Returns:** list of row dicts (config, tau_param, tau_loss, steps, status, wall_s), in
    the order they finished. `status` is the name of a `jaxmem.RESULTS` member; `wall_s` is the
    row's share of the sweep's wall time.

    ```python
    import jax, jaxmem
    jax.config.update("jax_enable_x64", True)
    grid = jaxmem.plateau_grid([8.0, 10.0, 12.0], widths=[6, 10])
    rows = jaxmem.plateau_sweep(grid, batch_size=4, progress=False)
    ```
    """
    for name, value in (("chunk_steps", chunk_steps), ("train_chunk_steps", train_chunk_steps),
                        ("batch_size", batch_size), ("flow_max_steps", flow_max_steps),
                        ("train_max_steps", train_max_steps)):
        positive_int(value, name)
    for name, value in (("delta_param", delta_param), ("delta_loss", delta_loss), ("atol", atol)):
        check_positive(value, name)
    check_fraction(rtol, "rtol")
    flow_solver(solver)  # a known name
    if not (isinstance(perturbation, (int, float)) and math.isfinite(perturbation) and perturbation >= 0):
        raise ValueError(f"perturbation must be finite and >= 0; got {perturbation!r}.")
    done = set(done or ())
    todo = [c for c in configs if config_key(c) not in done]
    by_group = groups(todo, order)
    ndev = len(jax.devices())
    largest = max((len(g) for g in by_group.values()), default=1)
    bs = max(1, min(int(batch_size), largest))
    bs = ndev * math.ceil(bs / ndev)
    max_width = max((c["width"] for c in configs), default=1)
    dtype = jnp.zeros(()).dtype
    settings = dict(delta_param=delta_param, delta_loss=delta_loss)
    stats = {} if stats is None else stats
    rows = []
    # The predicted work of each configuration, relative to the mean of its group: the time
    # left is estimated within each kind of training, the groups weighted by their sizes.
    costs = {}
    for group in by_group.values():
        raw = [predicted_cost(c) for c in group]
        mean = sum(raw) / len(raw)
        costs.update({config_key(c): x / mean for c, x in zip(group, raw)})
    bar = Progress(len(todo), "sweep", total_work=sum(costs.values())).__enter__() if progress and todo else None

    def emit(new, note):
        rows.extend(new)
        if on_batch is not None and new:
            on_batch(new)
        if bar is not None and new:
            bar.update(len(new), note, work=sum(costs.get(r["key"], 0.0) for r in new))
        elif bar is not None:
            bar.tick(note)

    try:
        for (kind, pname), group in by_group.items():
            p = get_parameterization(pname)
            if kind == "flow":
                fn = FlowSlots(p, max_width, int(flow_max_steps), int(chunk_steps), float(perturbation),
                               float(delta_param), float(delta_loss), float(rtol), float(atol), solver)
                devices = flow_devices(jax.local_devices())
                if solver != "rodas4" and len(devices) > 1:
                    # lineax (the Newton stage solves) refuses the shard-local shapes inside
                    # shard_map: one device.
                    warnings.warn(f"plateau_sweep: solver {solver!r} runs its flow batches on one device "
                                  f"of {len(devices)}.", RuntimeWarning, stacklevel=2)
                    devices = devices[:1]
            else:
                fn = TrainSlots(kind, p, max_width, int(train_max_steps), int(train_chunk_steps),
                                float(perturbation), float(delta_param), float(delta_loss))
                devices = jax.local_devices()
            _sweep_slots(fn, kind, devices, group, bs, dtype, settings, emit, stats)
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    return rows


def _row(c, settings, out, i, wall_s, batch_wall_s):
    return dict(
        c, key=config_key(c), omega=1.0 / c["lag"], **settings,
        tau_param=float(out["tau_param"][i]), tau_loss=float(out["tau_loss"][i]),
        steps=int(out["steps"][i]), status=names(out["result"][i])[0],
        wall_s=round(wall_s, 6), batch_wall_s=round(batch_wall_s, 4),
    )


def _count(stats, kind):
    stats[kind] = stats.get(kind, 0) + 1


def _sweep_slots(fn, kind, devices, group, bs, dtype, settings, emit, stats):
    """Continuous batching of one group: `bs` slots; after every call the finished problems
    leave their slots and the next configurations of the queue take them.

    In one process the slots are sharded over the process's devices. With several processes
    (`jax.distributed`) each process runs its own slots (`bs` / processes of them) on its own
    devices through its own share of the queue (every P-th configuration of the ordered
    queue, so the shares cost alike), with no collective per call: a call of one process
    never waits for another's. The processes exchange their finished rows every
    `_distributed.EXCHANGE_S` seconds and once more at the end (`_distributed.exchange`), so
    that every process returns, and process 0 writes, every row."""
    nproc = jax.process_count()
    slots_mesh = mesh(devices)
    if nproc == 1:
        for records in _run_slots(fn, kind, slots_mesh, group, range(len(group)), bs, dtype, stats):
            _emit_records(records, kind, group, settings, emit)
        return
    local_bs = max(len(devices), bs // nproc)
    local_bs = len(devices) * math.ceil(local_bs / len(devices))
    mine = range(jax.process_index(), len(group), nproc)
    calls = _run_slots(fn, kind, slots_mesh, group, mine, local_bs, dtype, stats)
    every = _distributed.exchange_interval()
    pending, finished, last = [], False, time.perf_counter()
    while True:
        if not finished:
            records = next(calls, None)
            if records is None:
                finished = True
            else:
                _emit_records(records, kind, group, settings, emit)  # this process's own rows at once
                pending.extend(records)
                if time.perf_counter() - last < every:
                    continue
        others, all_finished = _distributed.exchange(np.asarray(pending, np.float64).reshape(-1, _RECORD_WIDTH),
                                                     finished)
        pending, last = [], time.perf_counter()
        _emit_records(others, kind, group, settings, emit)
        if all_finished:
            return


# A finished problem travels between processes as one row of numbers: its index in the
# group, then these fields of the call's summary (the result as its integer code), then its
# wall times.
_RECORD_FIELDS = ("tau_param", "tau_loss", "steps", "result")
_RECORD_WIDTH = 3 + len(_RECORD_FIELDS)


def _run_slots(fn, kind, mesh, group, indices, bs, dtype, stats):
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
    # Read back from the exported programs' cache when there is one (no tracing), else traced.
    program = slots_program(fn, mesh, bs, dtype, filler, _distributed.program_cache_dir(),
                            advance=lambda *args: advance_slots(*args))  # looked up per call (tests spy on it)
    # The slots' initial contents (all refilled by the first call: only the shapes matter).
    slots = program.initial_slots(lambda x: put(x, sharding))
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
        arrays = [refill, np.array([j is not None for j in slot_idx]), *fn.inputs(cfgs, dtype)]
        t0 = time.perf_counter()
        slots, out = program(slots, *[put(x, sharding) for x in arrays])
        _count(stats, kind)
        out = jax.tree_util.tree_map(np.asarray, out)  # the mesh is this process's own devices
        wall = time.perf_counter() - t0
        records = []
        for i in busy:
            slot_wall[i] += wall / len(busy)
            if out["finished"][i]:
                records.append([slot_idx[i], *(float(out[k][i]) for k in _RECORD_FIELDS), slot_wall[i],
                                time.perf_counter() - slot_start[i]])
                slot_idx[i] = None
        yield np.array(records, np.float64).reshape(-1, _RECORD_WIDTH)


def _emit_records(records, kind, group, settings, emit):
    if not len(records):
        emit([], kind)  # a call that finished nothing: the progress bar still moves on
        return
    out = {k: records[:, 1 + n] for n, k in enumerate(_RECORD_FIELDS)}
    rows = [_row(group[int(rec[0])], settings, out, n, float(rec[-2]), float(rec[-1])) for n, rec in enumerate(records)]
    lags = [r["lag"] for r in rows]
    emit(rows, f"{kind} L={min(lags):g}..{max(lags):g}")


