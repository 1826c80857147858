"""The sweep's compiled programs, kept on disk between runs (`jax.export`).

JAX's persistent compilation cache skips compiling a program seen before, but not tracing it
to a jaxpr nor lowering it to StableHLO; for the gradient flow's slots (`FlowSlots`) those take
most of a short run's time (~5 s of a 7 s warm `jaxmem plateau` on 2 CPU cores). Here a slots
program is exported once (`jax.export`: traced and lowered), written to a file whose name and
header carry its key, and read back by later runs, which then only compile it (from the
compilation cache) and run it.

The key is everything the program depends on: jaxmem's version and a hash of the source of
the jaxmem package (an edit of any module re-traces), the versions of jax and jaxlib, the
platform, the slots' class and static settings (optimiser, parameterisation, width, steps per
call, tolerances, thresholds, perturbation), the number of slots and the dtypes and shapes of
every input. A file whose key differs (another file name), whose contents fail their checksum,
or that cannot be deserialised is replaced by a fresh export: the fallback is always to trace
again. Writing is atomic (a temporary file renamed), and a folder that cannot be written only
loses the cache.

A program is exported for a one-device mesh (the flow's slots on CPU, every process of
`--processes N`): the slots are then vmapped without `shard_map`. Slots over several devices
are traced as before (`batching.advance_slots`).
"""

import functools
import hashlib
import json
import os
import pathlib
import tempfile

import jax
import numpy as np

from .batching import CPU_COMPILER_OPTIONS, advance_slots

#: Bumped when the file layout or the way a program is built changes.
FORMAT = 1
_MAGIC = b"jaxmem-program\n"


@functools.lru_cache(maxsize=1)
def source_hash() -> str:
    """SHA-256 of the source of every module of the jaxmem package (paths and contents)."""
    root = pathlib.Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(b"\0")
        h.update(path.read_bytes())
        h.update(b"\0")
    return h.hexdigest()


def _version(pkg):
    import importlib.metadata as md

    try:
        return md.version(pkg)
    except md.PackageNotFoundError:  # pragma: no cover - a source tree without installing
        return None


def _aval(x):
    return [list(x.shape), str(np.dtype(x.dtype))]


def program_key(fn, bs, dtype, input_avals) -> dict:
    """The key of a slots program (`FlowSlots` or `TrainSlots`, `bs` slots, per-slot
    configuration arrays of shapes and dtypes `input_avals`): a JSON-able dict."""
    return dict(
        format=FORMAT, jaxmem=_version("jaxmem"), source=source_hash(), jax=jax.__version__,
        jaxlib=_version("jaxlib"), platform=jax.default_backend(), slots=repr(fn), batch=int(bs),
        dtype=str(np.dtype(dtype)), inputs=[_aval(x) for x in input_avals],
        compiler_options=_compiler_options(),
    )


def _compiler_options():
    return dict(CPU_COMPILER_OPTIONS) if jax.default_backend() == "cpu" else {}


def key_file(folder, key) -> str:
    """The file of the program of `key` in `folder`."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    return os.path.join(folder, f"slots-{digest}.jaxexport")


class SlotsProgram:
    """One compiled call of a sweep's slots on flat state: `program(slots, refill, active,
    *inputs)` returns `(slots, summary)`, `slots` a list of arrays (their shapes and dtypes in
    `slot_avals`) and `summary` the dict of `FlowSlots.one` / `TrainSlots.one`. `origin` says
    where it came from: `"loaded"` (a stored export), `"exported"` (traced now, and stored),
    `"rebuilt"` (traced now: the stored file was damaged) or `"traced"` (no cache: the jitted
    program of `batching.advance_slots`)."""

    def __init__(self, call, slot_avals, origin, path=None):
        self._call, self.slot_avals, self.origin, self.path = call, slot_avals, origin, path

    def __call__(self, slots, refill, active, *inputs):
        return self._call(slots, refill, active, *inputs)

    def initial_slots(self, place):
        """Zero slots (every one is refilled by the first call), each placed by `place`."""
        return [place(np.zeros(a.shape, a.dtype)) for a in self.slot_avals]


def _avals(fn, bs, dtype, filler):
    inputs = fn.inputs([filler] * bs, dtype)
    flags = jax.ShapeDtypeStruct((bs,), np.bool_)
    return flags, [jax.ShapeDtypeStruct(x.shape, x.dtype) for x in inputs]


def _slot_tree(fn, flags, input_avals):
    shapes = jax.eval_shape(jax.vmap(fn.start), *input_avals, flags)
    return jax.tree_util.tree_flatten(shapes)


def traced_program(fn, mesh, bs, dtype, filler, advance=advance_slots) -> SlotsProgram:
    """The slots program traced in this process (`advance`: `batching.advance_slots`, any mesh)."""
    flags, input_avals = _avals(fn, bs, dtype, filler)
    leaves, treedef = _slot_tree(fn, flags, input_avals)

    def call(slots, refill, active, *inputs):
        new, out = advance(fn, mesh, jax.tree_util.tree_unflatten(treedef, slots), refill, active, *inputs)
        return jax.tree_util.tree_leaves(new), out

    return SlotsProgram(call, leaves, "traced")


def _export(fn, flags, input_avals):
    leaves, treedef = _slot_tree(fn, flags, input_avals)

    def flat(slots, refill, active, *inputs):
        new, out = jax.vmap(fn.one)(jax.tree_util.tree_unflatten(treedef, slots), refill, active, *inputs)
        return jax.tree_util.tree_leaves(new), out

    return jax.export.export(jax.jit(flat), platforms=(jax.default_backend(),))(leaves, flags, flags, *input_avals)


@functools.lru_cache(maxsize=1)
def serialization_available() -> bool:
    """Whether `jax.export` can serialise here (it needs the `flatbuffers` package; without
    it the programs are traced as before)."""
    try:
        import flatbuffers  # noqa: F401
    except ImportError:  # pragma: no cover - an installation without it
        return False
    return True


def _read(path, key):
    """The stored export of `key` at `path`, or None (missing); raises on a damaged file."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:  # missing, or a folder that cannot be read: as if there were none
        return None
    if not data.startswith(_MAGIC):
        raise ValueError("not a jaxmem program file")
    header, _, payload = data[len(_MAGIC):].partition(b"\n")
    meta = json.loads(header)
    if meta.get("key") != key:
        raise ValueError("the stored key differs")
    if meta.get("sha256") != hashlib.sha256(payload).hexdigest() or meta.get("size") != len(payload):
        raise ValueError("checksum mismatch")
    return jax.export.deserialize(bytearray(payload))


def _write(path, key, exported):
    payload = bytes(exported.serialize())
    header = json.dumps(dict(key=key, sha256=hashlib.sha256(payload).hexdigest(), size=len(payload)),
                        sort_keys=True).encode()
    folder = os.path.dirname(path)
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".slots-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(_MAGIC + header + b"\n" + payload)
            os.replace(tmp, path)  # atomic: a reader sees the old file or the whole new one
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
    except OSError:  # a folder that cannot be written only loses the cache
        return False
    return True


def _caller(exported):
    options = _compiler_options()
    jitted = jax.jit(exported.call, compiler_options=options) if options else jax.jit(exported.call)

    def call(slots, refill, active, *inputs):
        nonlocal jitted
        try:
            return jitted(slots, refill, active, *inputs)
        except jax.errors.JaxRuntimeError as e:  # pragma: no cover - a future XLA without the option
            if not options or "No such compile option" not in str(e):
                raise
            jitted = jax.jit(exported.call)
            return jitted(slots, refill, active, *inputs)

    return call


def slots_program(fn, mesh, bs, dtype, filler, cache_dir=None, *, advance=advance_slots) -> SlotsProgram:
    """The compiled program of `bs` slots of `fn` on `mesh` (`filler`: any configuration of
    the group, for the inputs' shapes). With a `cache_dir` and a one-device mesh the program
    is read from its stored export when there is one (no tracing), else exported, stored and
    used; otherwise it is traced (`traced_program`, through `advance`)."""
    if cache_dir is None or mesh.devices.size != 1 or not serialization_available():
        return traced_program(fn, mesh, bs, dtype, filler, advance)
    flags, input_avals = _avals(fn, bs, dtype, filler)
    key = program_key(fn, bs, dtype, input_avals)
    path = key_file(cache_dir, key)
    origin = "loaded"
    try:
        exported = _read(path, key)
        if exported is None:
            origin = "exported"
    except Exception:  # damaged, truncated, another format: trace again and replace it
        exported, origin = None, "rebuilt"
    if exported is None:
        try:
            exported = _export(fn, flags, input_avals)
        except Exception:  # pragma: no cover - a program jax.export refuses (e.g. a custom call it
            # does not guarantee on this platform): traced in this process, as without a cache
            return traced_program(fn, mesh, bs, dtype, filler, advance)
        _write(path, key, exported)
    return SlotsProgram(_caller(exported), list(exported.in_avals[: len(exported.in_avals) - 2 - len(input_avals)]),
                        origin, path)
