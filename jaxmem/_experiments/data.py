"""The data driver: settings → input paths and target outputs → one `.npz` file.

The inputs are drawn all at once from `jax.random.key(seed)` (so they do not depend on the
batch size), the outputs are computed batch by batch (one compiled call per batch of paths), and
the file is written whole, atomically, at the end: an existing file is never overwritten unless
asked (`force=True`, `--force`).
"""

import contextlib
import dataclasses
import json
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from .._data import INPUTS, Lorenz96, sample_inputs
from .._data._outputs import QUADRATURE_NODES
from .._errors import is_integer, is_real, positive_int
from .progress import Progress
from .provenance import provenance
from .targets import TARGET_NAMES, describe_target, make_target, target_params

#: The parameters of each input process, with their defaults.
INPUT_DEFAULTS = {"white": {}, "ou": {"rate": 1.0}, "smooth": {"scale": 1.0}}
INPUT_DESCRIPTIONS = {
    "white": "unit-intensity white noise: independent samples N(0, 1/dt) (jaxmem.white_noise)",
    "ou": "stationary Ornstein-Uhlenbeck dX = -rate X dt + dB, exact AR(1) sampling, variance 1/(2 rate) "
          "(jaxmem.ornstein_uhlenbeck)",
    "smooth": "smooth stationary signal of unit variance, covariance exp(-tau^2/(2 scale^2)): 64 random "
              "Fourier features per path (jaxmem.smooth_signal)",
}
ARRAYS = {
    "ts": "(n_t,) the sample times t_j = j dt",
    "xs": "(n_paths, n_t) the input samples",
    "ys": "(n_paths, n_t) the target's outputs y(t_j); ys[:, 0] = 0",
}


@dataclasses.dataclass
class DataSettings:
    """The settings of a data set (`jaxmem data`), validated on construction.

    - `target`: a name of `jaxmem._experiments.targets.TARGETS` (`exp`, `powerlaw`, `bump`,
      `airy`, `plateau`, `lorenz96`); `target_params`: its parameters (the others at their
      defaults).
    - `input`: `white`, `ou` or `smooth`; `input_params`: `rate` (ou) or `scale` (smooth).
    - `n_paths`, `duration` $T$, `dt` $\\Delta$: the grid is $t_j = j\\Delta$, $j = 0 \\dots n_t - 1$
      with $n_t = \\lfloor T/\\Delta\\rfloor + 1$ (at least 2).
    - `seed`: the inputs are drawn from `jax.random.key(seed)`.
    - `batch_size`: paths per compiled call of the outputs (the inputs do not depend on it, the
      outputs only to rounding).

    ```python
    import jaxmem
    s = jaxmem.DataSettings(target="powerlaw", target_params={"omega": 1.0}, n_paths=4, duration=10.0)
    s.n_t                                 # 101
    ```
    """

    target: str = "exp"
    target_params: dict | None = None
    input: str = "white"
    input_params: dict | None = None
    n_paths: int = 64
    duration: float = 100.0
    dt: float = 0.1
    seed: int = 0
    batch_size: int = 256

    def __post_init__(self):
        if not isinstance(self.target, str) or self.target not in TARGET_NAMES:
            raise ValueError(f"unknown target {self.target!r}; expected one of {TARGET_NAMES}.")
        self.target_params = target_params(self.target, **(self.target_params or {}))
        if not isinstance(self.input, str) or self.input not in INPUTS:
            raise ValueError(f"unknown input process {self.input!r}; expected one of {INPUTS}.")
        given = dict(self.input_params or {})
        unknown = sorted(set(given) - set(INPUT_DEFAULTS[self.input]))
        if unknown:
            allowed = ", ".join(INPUT_DEFAULTS[self.input]) or "none"
            raise ValueError(f"input process {self.input!r} takes no parameter {unknown[0]!r} (its parameters: "
                             f"{allowed}).")
        params = dict(INPUT_DEFAULTS[self.input])
        for name, value in given.items():
            params[name] = _positive(value, f"the {self.input} input's {name}")
        self.input_params = params
        self.n_paths = positive_int(self.n_paths, "n_paths")
        self.batch_size = positive_int(self.batch_size, "batch_size")
        self.dt = _positive(self.dt, "dt")
        self.duration = _positive(self.duration, "duration")
        if self.duration < self.dt:
            raise ValueError(f"duration must be at least dt (two samples); got duration {self.duration:g} "
                             f"and dt {self.dt:g}.")
        if not is_integer(self.seed) or self.seed < 0:
            raise (TypeError if not is_integer(self.seed) else ValueError)(
                f"seed must be an integer >= 0; got {self.seed!r}.")
        self.seed = int(self.seed)
        make_target(self.target, **self.target_params)  # a parameter outside the family: refused now

    @property
    def n_t(self) -> int:
        """The number of samples per path, $\\lfloor T/\\Delta\\rfloor + 1$."""
        return int(math.floor(self.duration / self.dt + 1e-9)) + 1

    def manifest(self) -> dict:
        return dict(target=self.target, target_params=self.target_params, input=self.input,
                    input_params=self.input_params, n_paths=self.n_paths, n_t=self.n_t, duration=self.duration,
                    dt=self.dt, seed=self.seed)


def _positive(x, name):
    if not is_real(x):
        raise TypeError(f"{name} must be a real number; got {x!r}.")
    if not (math.isfinite(float(x)) and float(x) > 0):
        raise ValueError(f"{name} must be finite and > 0; got {x!r}.")
    return float(x)


def output_rule(target) -> str:
    """How a target's outputs are computed, in words (for the file's metadata)."""
    if isinstance(target, Lorenz96):
        return ("Lorenz96.outputs: y(t_j) = z_(K/2)(t_j) - F, the ring driven by the piecewise-linear "
                "interpolant of the samples in z_0, z(0) = F; diffrax Dopri8, PID controller rtol=1e-10, "
                "atol=1e-11, steps clipped to the samples")
    return ("jaxmem.linear_outputs: y(t_j) = int_0^t_j rho(s) x~(t_j - s) ds exactly, x~ the piecewise-linear "
            "interpolant of the samples, no input before t = 0; per lag interval in closed form (exponential "
            f"sums) or by {QUADRATURE_NODES}-point Gauss-Legendre, causal convolution by FFT in float64")


def generate_data(settings: DataSettings, *, progress: bool = False):
    """The arrays of a data set: `(ts, xs, ys)` as float64 NumPy arrays of shapes `(n_t,)`,
    `(n_paths, n_t)` and `(n_paths, n_t)` (float64 must be on: the command line turns it on).

    ```python
    import jaxmem
    from jaxmem._experiments.data import generate_data
    ts, xs, ys = generate_data(jaxmem.DataSettings(target="exp", n_paths=2, duration=5.0))
    ```
    """
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import jax.random as jr

    from .._data import outputs

    s = settings
    if not jax.config.jax_enable_x64:
        raise ValueError("generate_data needs float64: call jax.config.update('jax_enable_x64', True) first.")
    n, n_t, dt = s.n_paths, s.n_t, s.dt
    xs = sample_inputs(s.input, jr.key(s.seed), n, n_t, dt, **s.input_params)
    target = make_target(s.target, **s.target_params)
    compute = eqx.filter_jit(outputs)
    bs = min(s.batch_size, n)
    n_batches = math.ceil(n / bs)
    parts = []
    with Progress(n_batches, "data") if progress else contextlib.nullcontext() as bar:
        for i in range(n_batches):
            t0 = time.perf_counter()
            chunk = xs[i * bs:(i + 1) * bs]
            pad = bs - chunk.shape[0]  # the last batch is padded: one compiled program
            if pad:
                chunk = jnp.concatenate([chunk, jnp.zeros((pad, n_t), chunk.dtype)])
            ys = np.asarray(compute(target, chunk, dt))[:bs - pad]
            parts.append(ys)
            if bar is not None:
                bar.update(1, f"{ys.shape[0]} paths, {time.perf_counter() - t0:.1f} s")
    ys = np.concatenate(parts)
    if not np.all(np.isfinite(ys)):
        raise ValueError(f"the outputs of target {s.target!r} are not finite for some paths (the target left its "
                         "stable regime): nothing was written.")
    ts = np.arange(n_t, dtype=np.float64) * dt
    return ts, np.asarray(xs, dtype=np.float64), ys


def run_data(settings: DataSettings, out, *, force: bool = False, progress: bool = True, log=print) -> Path:
    """Generate the data set of `settings` and write it to `out` (a `.npz` file): the arrays
    `ts`, `xs`, `ys` and `meta`, a JSON string (the target and its parameters, the input
    process, the grid, the seed, the output rule, versions). An existing file is refused unless
    `force`; the file is written to a temporary name and moved into place when complete.

    Returns the path written.
    """
    t_run = time.perf_counter()
    out = Path(out)
    if out.suffix != ".npz":
        raise ValueError(f"the output file must end in .npz; got {str(out)!r}.")
    if out.is_dir():
        raise ValueError(f"{out} is a folder; give the path of a .npz file.")
    if out.exists() and not force:
        raise FileExistsError(f"{out} exists; nothing was written (use --force, or force=True, to replace it).")
    s = settings
    log(f"[data] {s.target}: {s.n_paths} paths of {s.n_t} samples (dt = {s.dt:g}), {s.input} input, seed {s.seed} ...")
    t0 = time.perf_counter()
    ts, xs, ys = generate_data(s, progress=progress)
    wall = time.perf_counter() - t0
    target = make_target(s.target, **s.target_params)
    meta = dict(
        command="jaxmem data", settings=s.manifest(),
        target=dict(kind=s.target, params=s.target_params, description=describe_target(s.target, **s.target_params)),
        input=dict(kind=s.input, params=s.input_params, description=INPUT_DESCRIPTIONS[s.input],
                   key=f"jax.random.key({s.seed})"),
        output_rule=output_rule(target), arrays=ARRAYS,
        **({"memory_time": float(target.memory_time)} if isinstance(target, Lorenz96) else {}),
        **provenance(), timings=dict(generate_s=wall, this_run_s=time.perf_counter() - t_run),
    )
    text = json.dumps(meta, allow_nan=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, ts=ts, xs=xs, ys=ys, meta=np.array(text))
            f.flush()
            os.fsync(f.fileno())
        if out.exists() and not force:  # appeared while we worked
            raise FileExistsError(f"{out} exists; nothing was written (use --force to replace it).")
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    log(f"[data] wrote {out}: ts {ts.shape}, xs {xs.shape}, ys {ys.shape}, max |y| = {np.abs(ys).max():.4g} "
        f"({wall:.1f} s)")
    return out


def load_data(path) -> dict:
    """A data file read back: `ts`, `xs`, `ys` (NumPy arrays) and `meta` (the parsed JSON).

    ```python
    import jaxmem, tempfile, os
    path = os.path.join(tempfile.mkdtemp(), "d.npz")
    jaxmem.run_data(jaxmem.DataSettings(n_paths=2, duration=2.0), path, progress=False, log=lambda *a: None)
    jaxmem.load_data(path)["meta"]["target"]["kind"]    # 'exp'
    ```
    """
    with np.load(path, allow_pickle=False) as f:
        missing = [k for k in ("ts", "xs", "ys", "meta") if k not in f.files]
        if missing:
            raise ValueError(f"{path} is not a jaxmem data file (no {missing[0]!r} array).")
        return dict(ts=f["ts"], xs=f["xs"], ys=f["ys"], meta=json.loads(str(f["meta"])))
