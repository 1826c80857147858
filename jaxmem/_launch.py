"""Several JAX processes on one host, joined by `jax.distributed` (`--processes N`).

Why: on a CPU, XLA runs a vmapped batch on one core. Splitting the host into several XLA
devices of one process (`--xla_force_host_platform_device_count`) does not work for the
gradient flow with jax 0.10 (devices running its program concurrently hang; see
benchmarks/RESULTS.md), but separate processes, one per core, each with its own device, do:
the sweep then runs over the processes exactly as over the hosts of a cluster (the discrete
optimisers' batches sharded over them; the flow's slots in each process, through its own
share of the queue).
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

#: Set in the environment of the processes `launch_local` starts (read by `init_distributed`).
ENV = ("JAXMEM_DISTRIBUTED", "JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


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
    fail (their stderr is then shown). When one process fails the others are stopped. On
    Ctrl-C every process gets SIGINT (a sweep writes what it finished) and 130 is returned.
    `platform` sets `JAX_PLATFORMS` unless it is already set.

    ```python
    import sys
    from jaxmem._launch import launch_local
    code = launch_local([sys.executable, "-c", "import jax; print(jax.__version__)"], 1)
    ```
    """
    n = int(n)
    if n < 1:
        raise ValueError(f"the number of processes must be >= 1; got {n}.")
    port = _free_port()
    procs, logs = [], []
    for i in range(n):
        env = dict(os.environ, JAXMEM_DISTRIBUTED="1", JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
                   JAX_NUM_PROCESSES=str(n), JAX_PROCESS_ID=str(i))
        env.setdefault("JAX_PLATFORMS", platform)
        if i == 0:
            procs.append(subprocess.Popen(argv, env=env))
            logs.append(None)
        else:
            log = tempfile.TemporaryFile(mode="w+")
            procs.append(subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=log))
            logs.append(log)
    code = 0
    try:
        while any(p.poll() is None for p in procs):
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
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:  # pragma: no cover
                p.kill()
        return 130
    for i, (p, log) in enumerate(zip(procs, logs)):
        if p.returncode != 0 and code == 0:
            code = p.returncode
        if log is not None:
            if p.returncode not in (0, -signal.SIGTERM):
                log.seek(0)
                sys.stderr.write(f"[process {i} exited with {p.returncode}]\n{log.read()[-4000:]}")
            log.close()
    return code
