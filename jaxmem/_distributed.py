"""Beyond one process: `jax.distributed` across hosts, several processes on one host
(`--processes N`), CPU pinning, the collectives of a sweep, and JAX's persistent compilation
cache. This is the one module that reads jaxmem's environment variables:

- `JAXMEM_DISTRIBUTED=1`: call `jax.distributed.initialize` at start-up, from
  `JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES`, `JAX_PROCESS_ID` (or auto-detection);
- `JAXMEM_CPUS`: the CPUs this process's threads are pinned to (set by `launch_local`);
- `JAXMEM_EXCHANGE_S`: seconds between the row exchanges of a multi-process sweep;
- `JAXMEM_CACHE_DIR`, `JAXMEM_NO_CACHE`: the compilation cache's folder (the exported
  programs in its subfolder `programs`), or none.

Several processes on one CPU host: on a CPU, XLA runs a vmapped batch on one core. Splitting the host into several XLA
devices of one process (`--xla_force_host_platform_device_count`) does not work for the
gradient flow with jax 0.10 (devices running its program concurrently hang; see
benchmarks/RESULTS.md), but separate processes, one per core, each with its own device, do:
the sweep then runs over the processes exactly as over the hosts of a cluster (each process's
slots through its own share of the queue).
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

#: Set in the environment of the processes `launch_local` starts (read by `init_distributed`).
ENV = ("JAXMEM_DISTRIBUTED", "JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "JAXMEM_CPUS",
       "JAXMEM_LAUNCHED")
#: Seconds the processes of an interrupted `launch_local` get to stop before they are killed.
INTERRUPT_GRACE_S = 1.5


def cpu_groups(n: int):
    """This process's CPUs split into `n` disjoint contiguous groups, or None (more processes
    than CPUs, or no CPU affinity on this platform)."""
    if not hasattr(os, "sched_getaffinity"):  # pragma: no cover - not Linux
        return None
    cpus = sorted(os.sched_getaffinity(0))
    if n > len(cpus):
        return None
    size = len(cpus) // n
    return [cpus[i * size : (i + 1) * size] if i < n - 1 else cpus[i * size :] for i in range(n)]


def pin_threads(cpus) -> None:
    """Restrict every thread of this process (and so the threads it starts later) to `cpus`.

    Why: `launch_local`'s CPU processes each run one XLA:CPU device, whose thread pool spans
    all the host's cores. Unpinned, the processes' pools contend for every core; pinned to
    disjoint cores, two processes on a 2-core machine ran their shares of a flow sweep in
    3.6-3.9 s instead of 4.7-5.4 s (benchmarks/RESULTS.md)."""
    cpus = set(int(c) for c in cpus)
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except OSError:  # pragma: no cover - a thread that ended meanwhile
            pass


def launched_locally() -> bool:
    """True inside a process started by `launch_local` (whose parent reports interrupts)."""
    return os.environ.get("JAXMEM_LAUNCHED", "") == "1"


def is_launched() -> bool:
    """True inside a process started by `launch_local` (or by a user's own multi-host setup)."""
    return os.environ.get("JAXMEM_DISTRIBUTED", "") in ("1", "true", "yes")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_local(argv, n: int, *, platform: str = "cpu") -> int:
    """Run the command `argv` as `n` processes on this host, joined by `jax.distributed`
    through a coordinator on 127.0.0.1 (CPU collectives: gloo); return its exit status.

    Process 0 keeps this terminal's stdout and stderr; the others print nothing unless they
    fail (their stderr is then shown). On a CPU platform with at least `n` CPUs each process
        is pinned to its own share of them (`JAXMEM_CPUS`, applied by `init_distributed`). When one
    process fails the others are stopped. On Ctrl-C (KeyboardInterrupt) every process gets
    SIGINT (a sweep writes what it finished), those still running after `INTERRUPT_GRACE_S`
    are killed, and the KeyboardInterrupt is raised again.
    `platform` sets `JAX_PLATFORMS` unless it is already set.

    ```python
    import sys
    from jaxmem.internal import launch_local
    code = launch_local([sys.executable, "-c", "import jax; print(jax.__version__)"], 1)
    ```
    """
    n = int(n)
    if n < 1:
        raise ValueError(f"the number of processes must be >= 1; got {n}.")
    port = _free_port()
    procs, logs = [], []
    env_platform = os.environ.get("JAX_PLATFORMS", platform)
    groups = cpu_groups(n) if n > 1 and env_platform == "cpu" else None
    for i in range(n):
        env = dict(os.environ, JAXMEM_DISTRIBUTED="1", JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
                   JAX_NUM_PROCESSES=str(n), JAX_PROCESS_ID=str(i), JAXMEM_LAUNCHED="1")
        env.setdefault("JAX_PLATFORMS", platform)
        env.pop("JAXMEM_CPUS", None)
        if groups is not None:
            env["JAXMEM_CPUS"] = ",".join(str(c) for c in groups[i])
        if i == 0:
            procs.append(subprocess.Popen(argv, env=env))
            logs.append(None)
        else:
            log = tempfile.TemporaryFile(mode="w+")
            procs.append(subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=log))
            logs.append(log)
    code = 0
    try:
        while any([p.poll() is None for p in procs]):  # a list: every process polled each time
            failed = [p for p in procs if p.returncode not in (None, 0)]
            if failed:
                code = failed[0].returncode
                for p in procs:
                    if p.poll() is None:
                        p.terminate()
                break
            time.sleep(0.05)
        for p in procs:
            p.wait()
    except KeyboardInterrupt:
        # Every process writes or trades its finished rows between compiled calls (each well
        # under a second); one left waiting in a collective for a process that has already
        # stopped would wait for the collective's time-out, so whatever still runs after
        # `INTERRUPT_GRACE_S` is killed. Rows are appended whole, and a row torn by the kill is
        # dropped on resume.
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        deadline = time.monotonic() + INTERRUPT_GRACE_S
        for p in procs:
            try:
                p.wait(timeout=max(deadline - time.monotonic(), 0.01))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        raise
    for i, (p, log) in enumerate(zip(procs, logs)):
        if p.returncode != 0 and code == 0:
            code = p.returncode
        if log is not None:
            if p.returncode not in (0, -signal.SIGTERM):
                log.seek(0)
                sys.stderr.write(f"[process {i} exited with {p.returncode}]\n{log.read()[-4000:]}")
            log.close()
    return code


#: The folder of the sweep's exported programs, set by `enable_compilation_cache` (None: off).
_PROGRAM_DIR = None


def cache_dirs(path=None):
    """The folders of the compilation cache and of the exported programs, `(xla, programs)`, or
    `(None, None)` when `JAXMEM_NO_CACHE` is set. The compilation cache is `path`, else
    `$JAXMEM_CACHE_DIR`, else `~/.cache/jaxmem/xla`; the programs are in its subfolder
    `programs` (JAX's cache reads only its own files, those of its top folder)."""
    if os.environ.get("JAXMEM_NO_CACHE"):
        return None, None
    xla = os.fspath(path) if path is not None else (
        os.environ.get("JAXMEM_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "jaxmem", "xla"))
    return xla, os.path.join(xla, "programs")


def program_cache_dir():
    """The folder of the sweep's exported programs (`jaxmem._experiments.programs`), or None
    when `enable_compilation_cache` has not turned the caches on."""
    return _PROGRAM_DIR


def enable_compilation_cache(path=None):
    """Turn on jaxmem's caches on disk, so that repeated runs skip compiling and tracing.

    Two caches: JAX's persistent compilation cache (a program compiled before is loaded
    instead of compiled), and jaxmem's own cache of the sweeps' exported programs (a
    `plateau_sweep` / `run_plateau` program traced and lowered before is read back with
    `jax.export` instead of traced again; it is rebuilt when jaxmem's source, the versions of
    jax or jaxlib, or the program's settings and shapes differ). On 2 CPU cores a whole
    `jaxmem plateau` run of the canonical flow table takes ~22 s of CPU with empty caches and
    ~4.6 s with warm ones (~11 s with the compilation cache alone; benchmarks/RESULTS.md).

    Folder: `path`, else `$JAXMEM_CACHE_DIR`, else `~/.cache/jaxmem/xla`; the exported
    programs go to its subfolder `programs`. `JAXMEM_NO_CACHE=1` turns both off. The
    `jaxmem` command calls it at start-up; library and notebook users call it once, before
    their first computation (it sets JAX's global configuration, for the whole process).
    Returns the compilation cache's folder, or None when it is off (or cannot be made).

    ```python
    import jaxmem
    folder = jaxmem.enable_compilation_cache()   # ~/.cache/jaxmem/xla unless configured
    ```
    """
    global _PROGRAM_DIR
    import jax

    path, programs = cache_dirs(path)
    if path is None:
        _PROGRAM_DIR = None
        return None
    try:
        os.makedirs(path, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", path)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    except Exception:  # pragma: no cover - an unwritable home only loses the cache
        return None
    _PROGRAM_DIR = programs
    return path


def init_distributed():
    """`jax.distributed.initialize` from the environment when JAXMEM_DISTRIBUTED=1 (several
    hosts: JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID; or auto-detection on
    SLURM / TPU pods when those are unset). With JAXMEM_CPUS (a comma-separated list, set by
    `--processes N`) the process's threads are first pinned to those CPUs."""
    import jax

    if not is_launched():
        return False
    if os.environ.get("JAXMEM_CPUS"):  # set by `--processes N` (launch_local): this process's cores
        pin_threads(os.environ["JAXMEM_CPUS"].split(","))
    # Cross-process collectives of the CPU backend (the sweep's gathers); GPU/TPU use their own.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    kwargs = {}
    if os.environ.get("JAX_COORDINATOR_ADDRESS"):
        kwargs = dict(
            coordinator_address=os.environ["JAX_COORDINATOR_ADDRESS"],
            num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
            process_id=int(os.environ["JAX_PROCESS_ID"]),
        )
    jax.distributed.initialize(**kwargs)
    return True


def agree(ok: bool) -> bool:
    """Whether every process says `ok` (a collective; in one process, `ok` itself)."""
    import jax
    import numpy as np

    if jax.process_count() == 1:
        return bool(ok)
    from jax.experimental import multihost_utils

    return bool(np.all(np.asarray(multihost_utils.process_allgather(np.array([int(bool(ok))])))))


def sync(name):
    """A barrier across processes (no-op in a single process)."""
    import jax

    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


#: Seconds between the exchanges of finished rows of a multi-process sweep (an interrupt
#: loses at most this much of the other processes' work, besides the calls in flight).
EXCHANGE_S = 2.0


def exchange_interval() -> float:
    """`EXCHANGE_S`, or the environment variable JAXMEM_EXCHANGE_S."""
    return float(os.environ.get("JAXMEM_EXCHANGE_S", EXCHANGE_S))


def exchange(records, finished):
    """All processes' records (float rows of equal width) since the last exchange, but this
    process's own, and whether every process has finished its share (a collective: every
    process calls it in turn)."""
    import jax
    import numpy as np
    from jax.experimental import multihost_utils

    records = np.asarray(records, np.float64)
    width = records.shape[-1]
    records = records.reshape(-1, width)
    counts = np.asarray(multihost_utils.process_allgather(np.array([len(records), int(finished)])))
    most = int(counts[:, 0].max())
    others = np.zeros((0, width))
    if most:
        buf = np.zeros((most, width))
        buf[: len(records)] = records
        every = np.asarray(multihost_utils.process_allgather(buf))
        others = np.concatenate([every[q, : counts[q, 0]] for q in range(len(counts)) if q != jax.process_index()])
    return others, bool(counts[:, 1].all())
