"""`jaxmem train`: sequence models trained on sampled data, one compiled program per target
family vmapped over (target parameter, width, seed, learning rate), in bounded chunks, with the
loss curves written as they go and the run resumable from its last chunk."""

import dataclasses
import itertools
import math
import time
from pathlib import Path

from .learn_batch import SWEPT, FamilyRun
from .provenance import provenance
from .store import RowStore

MODELS = ("diagonal", "linear", "tanh")
TIMES = ("continuous", "discrete")
INITS = ("canonical", "random")
INPUTS = ("white", "ou", "smooth")
OPTIMIZERS = ("gd", "momentum", "adam")
COLUMNS = ("kernel", "param_name", "param", "model", "time", "init", "width", "seed", "optimizer", "lr", "step",
           "train_loss", "test_loss", "status")
NUMERIC = ("param", "width", "seed", "lr", "step", "train_loss", "test_loss")
STATE_FILE = "train_state.eqx"
@dataclasses.dataclass
class TrainSettings:
    """The settings of one target family's training runs (`jaxmem train`), validated on
    construction. Every combination of `params` × `widths` × `seeds` × `lrs` is one
    configuration; all of them share one compiled program.

    - `kernel`: the target family (`exp`, `powerlaw`, `bump`, `airy`, `plateau`, `lorenz96`), with
      its memory parameters `params` (β, ω, ω, s, L or F; default per family) and, for
      `lorenz96`, its dimension `dim`.
    - `model`: `diagonal` (modal linear RNN), `linear` (dense linear RNN) or `tanh`; `time`:
      `continuous` or `discrete`; `init`: `canonical` (the plateau experiment's start: diagonal
      and linear models) or `random`; `parameterization` of the rates (diagonal models).
    - `widths`, `seeds` (how many initialisation/minibatch seeds), `optimizer`, `lrs`, `momentum`.
    - `steps`, `batch_size` (paths per minibatch), `n_train`, `n_test`, `paths` (`fixed`:
      minibatches of the `n_train` training paths; `fresh`: new paths every iteration, kernel
      targets only; the training loss at step 0 is then over the `n_train` paths), `duration`, `dt`,
      `input` (`white`, `ou`, `smooth`), `seed` (the data's key), `burn_in` (None: from the
      target's memory), `records` (about how many log-spaced points per curve), `delta_param`,
      `delta_loss` (the escape thresholds), `chunk` (most iterations per compiled call).

    ```python
    import jaxmem
    s = jaxmem.TrainSettings(kernel="exp", params=(1.0,), widths=(4,), steps=100)
    s.n_t
    ```
    """

    kernel: str = "exp"
    params: tuple | None = None
    dim: int = 8
    model: str = "diagonal"
    time: str = "continuous"
    init: str = "random"
    parameterization: str = "identity"
    widths: tuple = (8,)
    seeds: int = 3
    optimizer: str = "adam"
    lrs: tuple = (1e-2,)
    momentum: float = 0.9
    steps: int = 2000
    batch_size: int = 64
    n_train: int = 256
    n_test: int = 64
    paths: str = "fixed"
    duration: float = 40.0
    dt: float = 0.1
    input: str = "white"
    seed: int = 0
    burn_in: float | None = None
    records: int = 60
    delta_param: float = 0.05
    delta_loss: float = 0.05
    chunk: int = 100

    def __post_init__(self):
        from .._errors import (
            check_fraction,
            integer_list,
            is_real,
            number_list,
            positive_int,
        )
        from .targets import TARGETS

        for name, choices in (("kernel", tuple(SWEPT)), ("model", MODELS), ("time", TIMES), ("init", INITS),
                              ("input", INPUTS), ("optimizer", OPTIMIZERS), ("paths", ("fixed", "fresh")),
                              ("parameterization", ("identity", "exp", "softplus", "best"))):
            value = getattr(self, name)
            if value not in choices:
                raise ValueError(f"unknown {name} {value!r}; expected one of {tuple(choices)}.")
        params = () if self.params is None else number_list(self.params, f"{self.kernel} parameters")
        self.params = tuple(dict.fromkeys(float(p) for p in (params or (TARGETS[self.kernel].defaults[SWEPT[self.kernel]],))))
        self.widths = tuple(dict.fromkeys(integer_list(self.widths, "widths")))
        if not self.widths or min(self.widths) < 1:
            raise ValueError(f"widths must be positive integers; got {self.widths}.")
        self.lrs = tuple(dict.fromkeys(number_list(self.lrs, "learning rates")))
        if not self.lrs or not all(lr > 0 for lr in self.lrs):
            raise ValueError(f"learning rates must be > 0; got {self.lrs}.")
        for name in ("seeds", "steps", "batch_size", "n_train", "n_test", "records", "chunk", "dim"):
            setattr(self, name, positive_int(getattr(self, name), name))
        if self.paths == "fresh" and self.kernel == "lorenz96":
            raise ValueError("paths 'fresh' needs a kernel target (its outputs are a convolution); lorenz96 trains "
                             "on fixed paths.")
        if self.batch_size > self.n_train and self.paths == "fixed":
            raise ValueError(f"batch_size must be at most n_train = {self.n_train}; got {self.batch_size}.")
        for name in ("duration", "dt", "delta_param", "delta_loss"):
            v = getattr(self, name)
            if not (is_real(v) and 0 < v < math.inf):
                raise ValueError(f"{name} must be a finite number > 0; got {v!r}.")
            setattr(self, name, float(v))
        if self.duration / self.dt < 2:
            raise ValueError(f"duration / dt must give at least 3 samples; got duration {self.duration}, dt {self.dt}.")
        if self.burn_in is not None:
            if not (is_real(self.burn_in) and 0 <= self.burn_in < self.duration):
                raise ValueError(f"burn_in must be in [0, duration) = [0, {self.duration:g}); got {self.burn_in!r}.")
            self.burn_in = float(self.burn_in)
        if self.optimizer == "momentum":
            check_fraction(self.momentum, "momentum")
        if self.init == "canonical" and self.model == "tanh":
            raise ValueError("init 'canonical' (the plateau experiment's start) is for the linear models "
                             "(model 'diagonal' or 'linear'); use init 'random' for 'tanh'.")
        if self.parameterization != "identity" and self.model != "diagonal":
            raise ValueError(f"parameterization {self.parameterization!r} applies to model 'diagonal' only.")

    @property
    def n_t(self) -> int:
        """Samples per path: the grid 0, dt, ..., duration."""
        return int(round(self.duration / self.dt)) + 1

    def configs(self) -> list[dict]:
        """The configurations in a fixed order: (parameter, width, seed, learning rate)."""
        return [dict(param=p, width=m, seed=s, lr=lr)
                for p, m, s, lr in itertools.product(self.params, self.widths, range(self.seeds), self.lrs)]

    def manifest(self) -> dict:
        """The settings as stored in train.json (a resumed run must match them)."""
        return dataclasses.asdict(self)


def _row_key(kernel, c, step):
    return (kernel, float(c["param"]), int(c["width"]), int(c["seed"]), float(c["lr"]), int(step))


def run_train(settings, out_dir, *, progress=True, log=print, figure_title=None):
    """Train every configuration of `settings` (a `TrainSettings` or a list of them: one compiled
    program each) and write `train.csv` (rows as the curves are recorded), `train.json` (settings,
    provenance, escape steps), `train.png` (loss curves) and the trained models
    (`models/*.eqx`, read back by `load_model`) to `out_dir`. A run interrupted
    resumes from its last finished chunk when the same command is run again.

    Returns the per-configuration summaries (also in train.json)."""
    t_run = time.perf_counter()
    runs = [settings] if isinstance(settings, TrainSettings) else list(settings)
    if not runs or not all(isinstance(s, TrainSettings) for s in runs):
        raise TypeError("run_train needs a TrainSettings or a list of them.")
    kernels = [s.kernel for s in runs]
    if len(set(kernels)) != len(kernels):
        raise ValueError(f"each target family may appear once in a run; got {kernels}.")
    out = Path(out_dir)
    manifest = {"runs": [s.manifest() for s in runs]}
    store = RowStore(str(out), manifest, COLUMNS, rows_name="train.csv", manifest_name="train.json",
                     other_outputs=("train.png", "models", "theory.csv", "theory.csv.tmp", "theory.png", *[f"{k}_{STATE_FILE}" for k in kernels],
                                    *[f"{k}_{STATE_FILE}.tmp" for k in kernels]),
                     numeric=NUMERIC)
    store.require_writable()
    done = {_row_key(r["kernel"], r, r["step"]) for r in store.done_rows}
    if done:
        log(f"[train] resuming: {len(done)} rows already in {out}")
    summaries = []
    for s in runs:
        family = FamilyRun(s, out / f"{s.kernel}_{STATE_FILE}", log=log)
        summaries.extend(family.run(store, done, progress=progress))
    from .curves import plot_training

    plot_training(store.done_rows, out / "train.png", title=figure_title)
    store.update_manifest(command="jaxmem train", configs=summaries, **provenance(),
                          timings=dict(this_run_s=time.perf_counter() - t_run))
    log(f"[train] wrote {out / 'train.csv'} ({len(store.done_rows)} rows), {out / 'train.json'}, {out / 'train.png'}")
    for line in format_summary(summaries):
        log(line)
    return summaries


def format_summary(summaries) -> list[str]:
    """One line per configuration: final losses and escape steps."""
    esc = lambda k: "-" if k is None or k < 0 else str(k)
    num = lambda x: "-" if x is None else f"{x:.4g}"
    return [f"  {c['kernel']:<9} {c['param_name']}={c['param']:<6g} m={c['width']:<3} seed={c['seed']} "
            f"lr={c['lr']:<8g} train {num(c['train_loss'])}  test {num(c['test_loss'])}  escape: "
            f"param@{esc(c['steps_param'])} loss@{esc(c['steps_loss'])}  {c['status']}" for c in summaries]

