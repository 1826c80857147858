"""One target family's training runs as one compiled program: the data, the models of every
configuration (padded to one width with masks and stacked), and the vmapped chunks of training
with their rows and checkpoints."""

import contextlib
import json
import math
import os

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from .._data import apply_filter, output_filter, sample_inputs
from .._learn import (
    _loss as path_loss,
    learn_init,
    learn_result,
    learn_step,
    param_coords,
    record_schedule,
    split,
    take_mean,
    time_weights,
)
from .progress import Progress

#: The parameter a run sweeps, per target family (Lorenz-96's dimension is fixed per run).
SWEPT = {"exp": "beta", "powerlaw": "omega", "bump": "omega", "airy": "scale", "plateau": "lag", "lorenz96": "forcing"}


def param_name(kind: str) -> str:
    """The swept parameter of a target family (`beta`, `omega`, `scale`, `lag` or `forcing`)."""
    return SWEPT[kind]


def make_target(kind: str, value, *, dim=8):
    """The target of family `kind` at its swept parameter `value`."""
    from .targets import make_target as build

    return build(kind, **{SWEPT[kind]: value}, **({"dim": dim} if kind == "lorenz96" else {}))


def save_atomic(path, write):
    """Write a file through `path.tmp`, fsynced, then replace `path` (never half-written)."""
    tmp = f"{os.fspath(path)}.tmp"
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


#: The format of model files: a JSON header line, then the leaves by `eqx.tree_serialise_leaves`.
FORMAT = "jaxmem-model-1"


def save_model(path, model, settings, config, *, max_width=None, extra=None):
    """Write a trained `model` (built by `jaxmem train` from `settings` at `config`'s width, padded to
    `max_width`) to `path`: a JSON header line, then `eqx.tree_serialise_leaves`. Written through
    a temporary file, never half-written."""
    from .provenance import versions

    header = dict(format=FORMAT, model_class=type(model).__name__, settings=settings.manifest(),
                  config={k: config[k] for k in ("param", "width", "seed", "lr")},
                  max_width=int(max_width or config["width"]), versions=versions(("jaxmem", "jax", "equinox")),
                  **(extra or {}))
    tmp = f"{os.fspath(path)}.tmp"
    with open(tmp, "wb") as f:
        f.write((json.dumps(header, allow_nan=False) + "\n").encode())
        eqx.tree_serialise_leaves(f, model)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def build_model(s, width: int, max_width: int, key):
    """The model of one configuration: `s.model` × `s.time` × `s.init` at `width`, padded with
    masked units to `max_width`."""
    from .. import _models as M
    from .._presets import canonical_params

    dtype = jnp.result_type(float)
    if s.init == "canonical":
        a, w, _ = canonical_params(width)
        if s.model == "diagonal":
            model = M.DiagonalRNN(a, w, parameterization=s.parameterization)
        elif s.time == "continuous":
            model = M.LinearRNN(-jnp.diag(w), jnp.ones((width, 1), dtype), a)
        else:  # the zero-order hold of the canonical diagonal model, as a dense linear recurrence
            lam = jnp.exp(-w * s.dt)
            model = M.DiscreteRNN(jnp.diag(lam), ((1 - lam) / w)[:, None], jnp.zeros(width, dtype), a,
                                  activation="identity")
    elif s.model == "diagonal":
        model = M.DiagonalRNN.init(key, width, parameterization=s.parameterization)
    elif s.time == "continuous":
        model = (M.LinearRNN.init(key, width) if s.model == "linear"
                 else M.ContinuousRNN.init(key, width, activation="tanh"))
    else:
        model = M.DiscreteRNN.init(key, width, activation="identity" if s.model == "linear" else "tanh")
    if s.model == "diagonal" and s.time == "discrete":
        model = model.discretize(s.dt)
    return model.pad(max_width) if max_width > width else model


def memory_horizon(target, duration: float, *, tail=1e-3) -> float:
    """The burn-in: the time after which the kernel keeps less than `tail` of its squared L²
    norm (at most half the duration); for Lorenz-96, five memory times (at most half)."""
    if hasattr(target, "memory_time"):
        return float(min(5.0 * float(target.memory_time), duration / 2))
    t = np.linspace(0.0, max(float(target.horizon()), duration), 20_001)
    r2 = np.asarray(target(jnp.asarray(t))) ** 2
    mass = np.concatenate([[0.0], np.cumsum((r2[1:] + r2[:-1]) / 2 * np.diff(t))])
    left = mass[-1] - mass
    idx = int(np.argmax(left <= tail * mass[-1]))
    return float(min(t[idx], duration / 2))


def _stack(trees):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


@eqx.filter_jit
def _init_all(models, optimizer, hyper, xs, ys, dt, weights, keys, t_idx):
    def one(model, h, w, key, t):
        return learn_init(model, optimizer, h[0], h[1], xs[t], ys[t], dt, w, key)

    return eqx.filter_vmap(one)(models, hyper, weights, keys, t_idx)


@eqx.filter_jit
def _advance_all(static, coords0, states, xs, ys, dt, weights, optimizer, hyper, batch_size, t_idx, stop,
                 fresh=None):
    # `fresh`: None (minibatches of the fixed paths xs, ys) or `(input kind, filters (P, 2, n_t))`:
    # new input paths every iteration, their exact outputs by the targets' convolution filters.
    def one(st, c0, state, w, h, t):
        sampler = None
        if fresh is not None:
            kind, filters = fresh

            def sampler(key):
                bx = sample_inputs(kind, key, batch_size, xs.shape[-1], dt)
                return bx, apply_filter(filters[t], bx)

        return learn_step(st, c0, state, xs[t], ys[t], dt, w, optimizer, h[0], h[1], batch_size, h[2], h[3], stop,
                          sampler)

    return eqx.filter_vmap(one, in_axes=(eqx.if_array(0), 0, 0, 0, 0, 0))(static, coords0, states, weights, hyper,
                                                                            t_idx)


@eqx.filter_jit
def _record_all(static, states, xs_test, ys_test, dt, weights, t_idx):
    def one(st, state, w, t):
        state, mean = take_mean(state)
        return state, mean, path_loss(eqx.combine(state.params, st), xs_test[t], ys_test[t], dt, w)

    return eqx.filter_vmap(one, in_axes=(eqx.if_array(0), 0, 0, 0))(static, states, weights, t_idx)


class FamilyRun:
    """The training runs of one `TrainSettings` (one target family). Its compiled programs,
    vmapped over configurations: `init_all`, `advance_all` (iterations up to a step), and
    `record_all` (running means and test losses); `stack` stacks models."""

    init_all = staticmethod(_init_all)
    advance_all = staticmethod(_advance_all)
    record_all = staticmethod(_record_all)
    stack = staticmethod(_stack)

    def __init__(self, settings, state_path, *, log=print):

        self.s, self.state_path, self.log = settings, state_path, log
        self.param_name = param_name(settings.kernel)
        self.targets = [make_target(settings.kernel, p, dim=settings.dim) for p in settings.params]
        self.configs = settings.configs()

    def data(self):
        """Training and test paths per target: `(xs (P, N, n_t), ys, xs_test, ys_test)`, the
        inputs shared by the targets."""
        from .._data import outputs

        s = self.s
        k_train, k_test = jr.split(jr.key(s.seed))
        xs = sample_inputs(s.input, k_train, s.n_train, s.n_t, s.dt)
        xt = sample_inputs(s.input, k_test, s.n_test, s.n_t, s.dt)
        ys = jnp.stack([outputs(t, xs, s.dt) for t in self.targets])
        yt = jnp.stack([outputs(t, xt, s.dt) for t in self.targets])
        P = len(self.targets)
        return jnp.broadcast_to(xs, (P, *xs.shape)), ys, jnp.broadcast_to(xt, (P, *xt.shape)), yt

    def run(self, store, done, *, progress=True):
        s, configs = self.s, self.configs
        key_of = {self._key(c, k) for c in configs for k in record_schedule(s.steps, s.records)}
        if key_of <= done:
            self.log(f"[train] {s.kernel}: every row is stored already")
            return self._summaries_from_rows(store)
        xs, ys, xt, yt = self.data()
        fresh = None
        if s.paths == "fresh":
            fresh = (s.input, jnp.stack([output_filter(t, s.n_t, s.dt) for t in self.targets]))
        burn = [s.burn_in if s.burn_in is not None else memory_horizon(t, s.duration) for t in self.targets]
        p_index = {p: i for i, p in enumerate(s.params)}
        t_idx = jnp.asarray([p_index[c["param"]] for c in configs])
        weights = jnp.stack([time_weights(s.n_t, s.dt, burn[p_index[c["param"]]]) for c in configs])
        max_width = max(s.widths)
        base = jr.key(s.seed + 1)
        models = [build_model(s, c["width"], max_width, jr.fold_in(base, c["seed"])) for c in configs]
        stacked = _stack(models)
        params, static = split(stacked)
        coords0 = jnp.stack([param_coords(m) for m in models])
        dtype = xs.dtype
        hyper = jnp.asarray([[c["lr"], s.momentum, s.delta_param, s.delta_loss] for c in configs], dtype)
        keys = jnp.stack([jr.fold_in(jr.fold_in(base, c["seed"]), 1) for c in configs])
        with jax.numpy_dtype_promotion("standard"):
            states = _init_all(stacked, s.optimizer, hyper, xs, ys, s.dt, weights, keys, t_idx)
            states = self._resume(states)
            schedule = record_schedule(s.steps, s.records)
            bounds = sorted(set(schedule) | set(range(s.chunk, s.steps, s.chunk)))
            bounds = [b for b in bounds if b >= self._start_step(states)]
            self.log(f"[train] {s.kernel}: {len(configs)} configuration(s) ({len(s.params)} {self.param_name} x "
                     f"{len(s.widths)} widths x {s.seeds} seeds x {len(s.lrs)} lr), {s.model} {s.time} RNNs, "
                     f"{s.optimizer}, {s.steps} steps of {s.batch_size} paths, n_t = {s.n_t}, burn-in "
                     f"{', '.join(f'{b:g}' for b in burn)}")
            ctx = Progress(len(bounds), f"train {s.kernel}", total_work=s.steps) if progress and bounds else None
            with ctx if ctx is not None else contextlib.nullcontext() as bar:
                last = self._start_step(states)
                for b in bounds:
                    states = _advance_all(static, coords0, states, xs, ys, s.dt, weights, s.optimizer, hyper,
                                          s.batch_size, t_idx, jnp.asarray(b), fresh)
                    if b in schedule:
                        states, means, tests = _record_all(static, states, xt, yt, s.dt, weights, t_idx)
                        rows = self._rows(states, means, tests, b, done)
                        store.append(rows)
                        done.update(self._key(c, b) for c in configs)
                    self._save(states)
                    if bar is not None:
                        bar.update(1, f"step {b}", work=b - last)
                    last = b
        self._save_models(states, static)
        return self._summaries(states, store)

    # -- rows, checkpoints, models, summaries ------------------------------------------------------------

    def _key(self, c, step):
        return (self.s.kernel, float(c["param"]), int(c["width"]), int(c["seed"]), float(c["lr"]), int(step))

    def _status(self, states):
        return [str(r) for r in _names(eqx.filter_vmap(learn_result)(states))]

    def _rows(self, states, means, tests, step, done):
        s = self.s
        status = self._status(states)
        loss0 = np.asarray(states.loss0)
        means, tests = np.asarray(means), np.asarray(tests)
        rows = []
        for i, c in enumerate(self.configs):
            if self._key(c, step) in done:
                continue
            train = loss0[i] if step == 0 else means[i]
            rows.append(dict(kernel=s.kernel, param_name=self.param_name, param=c["param"], model=s.model,
                             time=s.time, init=s.init, width=c["width"], seed=c["seed"], optimizer=s.optimizer,
                             lr=c["lr"], step=int(step), train_loss=float(train), test_loss=float(tests[i]),
                             status=status[i]))
        return rows

    def model_name(self, c) -> str:
        """The file name of a configuration's trained model in `DIR/models/`."""
        return (f"{self.s.kernel}_{self.param_name}={c['param']:g}_m={c['width']}_seed={c['seed']}_"
                f"lr={c['lr']:g}.eqx")

    def _save_models(self, states, static):
        folder = os.path.join(os.path.dirname(os.fspath(self.state_path)), "models")
        os.makedirs(folder, exist_ok=True)
        stacked = eqx.combine(states.params, static)
        max_width = max(self.s.widths)
        for i, c in enumerate(self.configs):
            model = jax.tree.map(lambda x, i=i: x[i] if eqx.is_array(x) else x, stacked)
            save_model(os.path.join(folder, self.model_name(c)), model, self.s, c, max_width=max_width,
                       extra=dict(steps=int(np.asarray(states.steps)[i])))

    def _save(self, states):
        raw = eqx.tree_at(lambda st: st.key, states, jr.key_data(states.key))  # typed keys do not serialise
        save_atomic(self.state_path, lambda f: eqx.tree_serialise_leaves(f, raw))

    def _resume(self, states):
        try:
            like = eqx.tree_at(lambda st: st.key, states, jr.key_data(states.key))
            with open(self.state_path, "rb") as f:
                loaded = eqx.tree_deserialise_leaves(f, like)
            loaded = eqx.tree_at(lambda st: st.key, loaded, jr.wrap_key_data(loaded.key))
        except FileNotFoundError:
            return states
        except Exception as e:  # a damaged checkpoint: start this family again (rows are kept)
            self.log(f"[train] {self.s.kernel}: checkpoint {self.state_path} unreadable ({e}); starting again")
            return states
        self.log(f"[train] {self.s.kernel}: resuming from step {int(np.min(np.asarray(loaded.steps)))}")
        return loaded

    @staticmethod
    def _start_step(states):
        steps = np.asarray(states.steps)
        live = ~np.asarray(states.diverged)
        return int(steps[live].min()) if live.any() else int(steps.max())

    def _summaries(self, states, store):
        status = self._status(states)
        kp, kl = np.asarray(states.steps_param), np.asarray(states.steps_loss)
        last = {}
        for r in store.done_rows:
            if r["kernel"] == self.s.kernel:
                k = (float(r["param"]), int(r["width"]), int(r["seed"]), float(r["lr"]))
                if k not in last or r["step"] >= last[k]["step"]:
                    last[k] = r
        out = []
        for i, c in enumerate(self.configs):
            r = last.get((float(c["param"]), int(c["width"]), int(c["seed"]), float(c["lr"])), {})
            out.append(dict(kernel=self.s.kernel, param_name=self.param_name, **c, steps_param=int(kp[i]),
                            steps_loss=int(kl[i]), train_loss=_finite(r.get("train_loss")),
                            test_loss=_finite(r.get("test_loss")), status=status[i]))
        return out

    def _summaries_from_rows(self, store):
        try:
            with open(store.manifest_path) as f:
                stored = json.load(f).get("configs", [])
        except (OSError, ValueError):
            stored = []
        mine = [c for c in stored if c.get("kernel") == self.s.kernel]
        return mine


def _names(result):
    from .._results import names

    return names(result)


def _finite(x):
    return None if x is None or not math.isfinite(float(x)) else float(x)
