"""Ready-made `jaxmem train` runs: the paper's figure 1 on jaxmem's own settings, and training
on data held against training on the exact loss."""

import dataclasses
import time
from pathlib import Path

from .training import TrainSettings, run_train

#: Lags of the `theory` preset (short enough that gradient descent escapes in a few thousand
#: iterations at the preset's learning rate).
THEORY_LAGS = (8.0, 10.0, 12.0, 14.0)


def train_presets(name: str, **over) -> list[TrainSettings]:
    """The `TrainSettings` of a preset (`figure1` or `theory`), with `over` replacing fields.

    - `figure1`: the phenomenon of the paper's figure 1 on jaxmem's own settings (the paper's
      are not public): Adam on minibatches of white-noise paths for exponential memory
      (`exp`, β = 0.5: the loss falls smoothly) and Airy memory (`airy`, s = 1: plateaus) with
      diagonal linear RNNs, and for Lorenz-96 (K = 8, F = 0.75, near the edge 8/9 of fading
      memory) with continuous-time tanh RNNs; 3 seeds each.
    - `theory`: full-batch gradient descent on data from the canonical start of the plateau
      experiment, for the lags `THEORY_LAGS`, beside gradient descent on the exact loss.

    ```python
    import jaxmem
    [s.kernel for s in jaxmem.train_presets("figure1", steps=100)]   # ['exp', 'airy', 'lorenz96']
    ```
    """
    if name == "figure1":
        common = dict(widths=(8,), seeds=3, optimizer="adam", lrs=(1e-2,), steps=3000, batch_size=32, n_train=256,
                      n_test=64, duration=32.0, dt=0.1, input="white", records=60, init="random", time="continuous")
        runs = [TrainSettings(kernel="exp", params=(0.5,), model="diagonal", **common),
                TrainSettings(kernel="airy", params=(1.0,), model="diagonal", **common),
                TrainSettings(kernel="lorenz96", params=(0.75,), dim=8, model="tanh", **common)]
    elif name == "theory":
        runs = [TrainSettings(kernel="plateau", params=THEORY_LAGS, model="diagonal", time="continuous",
                              init="canonical", widths=(4,), seeds=1, optimizer="gd", lrs=(0.2,), steps=1500,
                              batch_size=256, n_train=256, n_test=64, duration=40.0, dt=0.05, input="white",
                              records=60, delta_param=0.05, delta_loss=0.05)]
    else:
        raise ValueError(f"unknown preset {name!r}; expected 'figure1' or 'theory'.")
    return [dataclasses.replace(s, **over) for s in runs]


def exact_escape(settings: TrainSettings) -> list[dict]:
    """Gradient descent on the exact white-noise loss from the same canonical start, at the same
    learning rate, thresholds and iteration budget: its escape iterations per lag."""
    import jax.numpy as jnp

    from .._presets import canonical_model, plateau_target
    from .._results import name
    from .._train import train

    s = settings
    out = []
    for L in s.params:
        for m in s.widths:
            for lr in s.lrs:
                res = train(canonical_model(m), plateau_target(L), s.optimizer, lr=lr, momentum=s.momentum,
                            max_steps=s.steps, delta_param=s.delta_param, delta_loss=s.delta_loss, throw=False)
                out.append(dict(lag=L, width=m, lr=lr, exact_steps_param=int(res.steps_param),
                                exact_steps_loss=int(res.steps_loss), exact_status=name(res.result),
                                exact_loss0=float(jnp.asarray(res.loss0))))
    return out


def run_theory(settings, out_dir, *, progress=True, log=print):
    """The `theory` preset: train on data (`run_train`), then gradient descent on the exact loss,
    and write `theory.csv` (per lag: escape iterations on data and on the exact loss) and
    `theory.png` beside the training outputs."""
    from .curves import plot_theory

    (s,) = settings
    summaries = run_train(settings, out_dir, progress=progress, log=log)
    t0 = time.perf_counter()
    exact = exact_escape(s)
    log(f"[train] exact-loss gradient descent: {time.perf_counter() - t0:.1f} s")
    rows = []
    for e in exact:
        data = [c for c in summaries if c["param"] == e["lag"] and c["width"] == e["width"] and c["lr"] == e["lr"]]
        for c in data:
            rows.append(dict(lag=e["lag"], width=e["width"], lr=e["lr"], seed=c["seed"],
                             data_steps_param=c["steps_param"], data_steps_loss=c["steps_loss"],
                             exact_steps_param=e["exact_steps_param"], exact_steps_loss=e["exact_steps_loss"],
                             data_status=c["status"], exact_status=e["exact_status"]))
    out = Path(out_dir)
    _write_csv(out / "theory.csv", rows)
    plot_theory(rows, out / "theory.png")
    log("  lag  data: param  loss   exact: param  loss")
    for r in rows:
        log(f"  {r['lag']:>4g}  {r['data_steps_param']:>11} {r['data_steps_loss']:>5}   {r['exact_steps_param']:>12} "
            f"{r['exact_steps_loss']:>5}")
    log(f"[train] wrote {out / 'theory.csv'}, {out / 'theory.png'}")
    return rows


def _write_csv(path, rows):
    import csv

    from .learn_batch import save_atomic

    cols = ("lag", "width", "lr", "seed", "data_steps_param", "data_steps_loss", "exact_steps_param",
            "exact_steps_loss", "data_status", "exact_status")

    def write(f):
        import io

        text = io.StringIO()
        w = csv.DictWriter(text, fieldnames=cols, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        f.write(text.getvalue().encode())

    save_atomic(path, write)
