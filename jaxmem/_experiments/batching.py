"""The compiled program of a plateau sweep: one configuration's problem, and the slots of the
gradient flow and of the discrete optimisers, vmapped and mapped over the devices.

Every configuration of an (optimiser, parameterisation) group shares one program: widths are
padded to the largest with a mask, and lags, widths, seeds and hyper-parameters are traced.
"""

import functools
import math
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jax.sharding import Mesh, PartitionSpec

from .._errors import unchecked
from .._flow import flow_solver
from .._hitting import DEFAULT_HORIZON, DEFAULT_HORIZON_FACTOR, HittingTimeSearch
from .._models import DiagonalRNN
from .._presets import canonical_params, plateau_target
from .._train import train_init, train_result, train_step, train_terminate


def problem(parameterization, max_width, perturbation, lag, width, key_data):
    """One configuration's padded, masked model (`canonical_params`) and its plateau target."""
    a, w, mask = canonical_params(width, max_width, dtype=lag.dtype, key=jr.wrap_key_data(key_data),
                                  perturbation=perturbation)
    p = parameterization
    # The grid was validated on the host (plateau_grid); traced checks here would compile to
    # host callbacks, which keep the program out of JAX's persistent compilation cache.
    with unchecked():
        return DiagonalRNN(a, v=p.inverse(w), mask=mask, parameterization=p), plateau_target(lag)


class TrainSlots(eqx.Module):
    """A discrete optimiser's slots: each holds one training run (`TrainState`) and its
    configuration. A call refills the slots marked for it, then advances every run by at most
    `chunk_steps` iterations, so that no compiled call lasts long (an interrupt is answered
    between calls) and a finished slot takes the next configuration (continuous batching)."""

    kind: str = eqx.field(static=True)
    parameterization: object = eqx.field(static=True)
    max_width: int = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)
    chunk_steps: int = eqx.field(static=True)
    perturbation: float = eqx.field(static=True)
    delta_param: float = eqx.field(static=True)
    delta_loss: float = eqx.field(static=True)

    def problem(self, lag, width, key_data):
        return problem(self.parameterization, self.max_width, self.perturbation, lag, width, key_data)

    def start(self, lag, width, key_data, lr, momentum, active):
        model, target = self.problem(lag, width, key_data)
        # optax's Adam raises b1**count (float ** int32): standard promotion, whatever the user's.
        with jax.numpy_dtype_promotion("standard"):
            state = train_init(model, target, self.kind, lr, momentum, active=active)
        return dict(lag=lag, width=width, key=key_data, lr=lr, momentum=momentum, train=state)

    def one(self, slot, refill, active, lag, width, key_data, lr, momentum):
        new = self.start(lag, width, key_data, lr, momentum, active)
        slot = jax.tree_util.tree_map(lambda a, b: jnp.where(refill, a, b), new, slot)
        model, target = self.problem(slot["lag"], slot["width"], slot["key"])
        dtype = slot["lag"].dtype
        dp, dl = jnp.asarray(self.delta_param, dtype), jnp.asarray(self.delta_loss, dtype)
        with jax.numpy_dtype_promotion("standard"):
            state = train_step(model, target, self.kind, slot["train"], slot["lr"], slot["momentum"],
                               self.max_steps, dp, dl, self.chunk_steps)
        r = train_result(model, state, slot["lr"])
        summary = dict(finished=train_terminate(state, self.max_steps), tau_param=r.tau_param, tau_loss=r.tau_loss,
                       steps=r.steps, result=r.result._value)
        return dict(slot, train=state), summary

    @staticmethod
    def inputs(cfgs, dtype):
        """The per-slot configuration arrays of a call (lag, width, key, lr, momentum)."""
        return [
            np.array([c["lag"] for c in cfgs], dtype), np.array([c["width"] for c in cfgs], np.int32),
            np.stack([seed_key(c["seed"]) for c in cfgs]),
            np.array([c["lr"] for c in cfgs], dtype),
            np.array([0.0 if math.isnan(c["momentum"]) else c["momentum"] for c in cfgs], dtype),
        ]


class FlowSlots(eqx.Module):
    """The gradient flow's slots: each holds one hitting-time search (`HittingTimeSearch`'s
    state) and its configuration. A call refills the slots marked for it with new
    configurations, then advances every slot's search by at most `chunk_steps` solver steps. The
    host then takes the finished problems out and refills their slots, so that a slot never
    waits for a slower member of its batch for more than `chunk_steps` steps (continuous
    batching)."""

    parameterization: object = eqx.field(static=True)
    max_width: int = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)
    chunk_steps: int = eqx.field(static=True)
    perturbation: float = eqx.field(static=True)
    delta_param: float = eqx.field(static=True)
    delta_loss: float = eqx.field(static=True)
    rtol: float = eqx.field(static=True)
    atol: float = eqx.field(static=True)
    solver: str = eqx.field(static=True, default="rodas4")

    def search(self, dtype):
        import diffrax

        return HittingTimeSearch(
            solver=flow_solver(self.solver), stepsize_controller=diffrax.PIDController(rtol=self.rtol, atol=self.atol),
            delta_param=jnp.asarray(self.delta_param, dtype), delta_loss=jnp.asarray(self.delta_loss, dtype),
            horizon=DEFAULT_HORIZON, horizon_factor=DEFAULT_HORIZON_FACTOR, max_steps=self.max_steps,
        )

    def problem(self, lag, width, key_data):
        return problem(self.parameterization, self.max_width, self.perturbation, lag, width, key_data)

    def start(self, lag, width, key_data, active):
        model, target = self.problem(lag, width, key_data)
        return dict(lag=lag, width=width, key=key_data,
                    search=self.search(lag.dtype).init(model, target, active=active))

    @staticmethod
    def inputs(cfgs, dtype):
        """The per-slot configuration arrays of a call (lag, width, key)."""
        return [np.array([c["lag"] for c in cfgs], dtype), np.array([c["width"] for c in cfgs], np.int32),
                np.stack([seed_key(c["seed"]) for c in cfgs])]

    def one(self, slot, refill, active, lag, width, key_data):
        new = self.start(lag, width, key_data, active)
        slot = jax.tree_util.tree_map(lambda a, b: jnp.where(refill, a, b), new, slot)
        model, target = self.problem(slot["lag"], slot["width"], slot["key"])
        search = self.search(slot["lag"].dtype)
        state = search.step(model, target, slot["search"], self.chunk_steps)
        r = search.result(state)
        summary = dict(finished=search.terminate(state), tau_param=r.tau_param, tau_loss=r.tau_loss,
                       steps=r.steps, result=r.result._value)
        return dict(slot, search=state), summary


#: XLA:CPU options of the sweep's compiled functions: the classic loop emitters instead of the
#: MLIR fusion emitters. Measured on the flow's program (jax 0.10, 2 cores): the same run time,
#: half the compiler's peak host memory (~470 instead of ~800-900 MiB for the process), which is
#: what lets one process per core stay within a small machine's memory.
CPU_COMPILER_OPTIONS = {"xla_cpu_use_fusion_emitters": False}


class _jit_for_cpu:
    """`jax.jit(fun, static_argnums=...)` with `CPU_COMPILER_OPTIONS` when the default backend
    is a CPU (nothing changes on a GPU or TPU). An XLA that no longer knows an option gets
    the function compiled without it."""

    def __init__(self, fun, static_argnums):
        self.fun, self.static_argnums, self.jitted, self.options = fun, static_argnums, None, {}
        functools.update_wrapper(self, fun)

    def __call__(self, *args):
        if self.jitted is None:
            options = CPU_COMPILER_OPTIONS if jax.default_backend() == "cpu" else {}
            self.jitted = jax.jit(self.fun, static_argnums=self.static_argnums, compiler_options=options)
            self.options = options
        try:
            return self.jitted(*args)
        except jax.errors.JaxRuntimeError as e:  # pragma: no cover - a future XLA without the option
            if not self.options or "No such compile option" not in str(e):
                raise
            self.jitted, self.options = jax.jit(self.fun, static_argnums=self.static_argnums), {}
            return self.jitted(*args)


def _per_device(fn, mesh):
    # shard_map, not a sharded vmap: each device runs the adaptive loops of its own shard and
    # stops when its slowest member does. Under GSPMD the batched loop predicate ("any member
    # still running") would be an all-reduce across devices at every solver step, and every
    # device would run until the slowest member of the whole batch finished. On one device,
    # the vmapped slots alone (as the exported programs run them).
    if mesh.devices.size == 1:
        return jax.vmap(fn)
    return jax.shard_map(jax.vmap(fn), mesh=mesh, in_specs=PartitionSpec("batch"),
                         out_specs=PartitionSpec("batch"), check_vma=False)


@functools.partial(_jit_for_cpu, static_argnums=(0, 1))
def advance_slots(slots_fn, mesh: Mesh, slots, refill, active, *inputs):
    """One compiled call of a sweep's slots (`FlowSlots` or `TrainSlots`): refill the slots
    marked in `refill`, then advance every slot by at most its chunk of steps."""
    return _per_device(slots_fn.one, mesh)(slots, refill, active, *inputs)


def mesh(devices=None):
    """A one-axis (`"batch"`) mesh over `devices` (default: every device JAX sees)."""
    return Mesh(np.array(jax.devices() if devices is None else devices), ("batch",))


def flow_devices(devices):
    """The devices a flow batch may use. Several XLA:CPU host devices running the flow's
    program concurrently hang with jax 0.10 (Rodas4's LAPACK LU with the moments' exp/erfc;
    benchmarks/RESULTS.md), so a process runs its flow slots on one of its CPU devices (several
    processes, `--processes N`, use several cores). The discrete optimisers use them all."""
    if devices[0].platform == "cpu" and len(devices) > 1:
        warnings.warn(
            f"plateau_sweep: {len(devices)} CPU devices found; flow batches run on one of them "
            "(with jax 0.10, concurrent XLA:CPU devices hang on the flow's program: its LAPACK LU "
            "together with the moments' exp/erfc). "
            "The other optimisers use all of them.", RuntimeWarning, stacklevel=4,
        )
        return devices[:1]
    return devices


def put(x, sharding):
    """A host array placed on `sharding`'s devices (each process gives its own shards)."""
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])


@functools.lru_cache(maxsize=4096)
def _key_data_cached(seed):
    out = np.asarray(jr.key_data(jr.key(seed)))
    out.flags.writeable = False
    return out


def seed_key(seed):
    """The raw PRNG key of a seed (cached: making a key is a JAX dispatch, ~0.2 ms, and the
    flow's host loop needs every slot's key at every call)."""
    return _key_data_cached(int(seed))
