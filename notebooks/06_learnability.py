# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 06 — Will this memory be learnable? The learnability report
#
# The theory of the curse of memory answers four questions about a target's memory kernel
# $\rho$, and jaxmem can answer each of them with its own tools:
#
# 1. **What is the memory?** From input/output paths, `jaxmem.estimate_kernel` (regularised least
#    squares in a basis of exponentials, bootstrap band over paths); from a trained model, its
#    memory function `jaxmem.memory_function` (exact for linear models, step inputs otherwise).
# 2. **How does it decay?** `jaxmem.decay_class`: exponential ($\log M$ linear in $t$, rate $\beta$)
#    or power law ($\log M$ linear in $\log t$, $M \sim t^{-(1+\omega)}$), chosen by the
#    cross-validated error of the two tail fits. Exponential memory is stably approximable,
#    power-law memory is not (the inverse approximation theorem).
# 3. **How wide must the model be?** The smallest width whose best fit, with rates $\ge$ a
#    stability margin, has relative $L^2$ error $\le \varepsilon$ (`jaxmem.width_needed`'s fits).
# 4. **How long will gradient flow wait?** The hitting times $\tau_0$ (the parameters move) and
#    $\tau_0'$ (the loss drops) of the flow from the canonical start on $\rho/\|\rho\|_2$
#    (`jaxmem.hitting_times`), for each parameterisation of the rates.
#
# `jaxmem memory --data FILE.npz` (or `--model FILE.eqx`) writes the answers to `memory.csv`,
# `memory.json` and `memory.png`; `jaxmem.run_memory` is the same driver. Here it reads data sets
# made by `jaxmem.run_data` (a power law, an exponential memory, and the Lorenz-96 ring near the
# loss of stability of its fixed point) and a model trained by `jaxmem.run_train`.
#
# **Settings.** `QUICK = True` (default; `JAXMEM_QUICK=0` turns it off): 16 paths of $T = 60$,
# widths up to 6, a canonical start of width 4, two parameterisations — under a minute on 2 CPU
# cores. Full settings: 64 paths of $T = 120$, widths up to 16, the canonical start of width 10,
# all four parameterisations.

# %%
import json
import os
import time
from pathlib import Path

QUICK = os.environ.get("JAXMEM_QUICK", "1") != "0"

import jax

jax.config.update("jax_enable_x64", True)
import matplotlib.pyplot as plt
import numpy as np

import jaxmem

FIG_DIR = Path(os.environ.get("JAXMEM_FIG_DIR", "figures"))
FIG_DIR.mkdir(parents=True, exist_ok=True)
RUN_DIR = Path(os.environ.get("JAXMEM_RUN_DIR", FIG_DIR / "runs_06"))
T_START = time.perf_counter()
print(f"QUICK={QUICK}")
print(f"jax {jax.__version__} on {jax.devices()[0].platform}, jaxmem {jaxmem.__version__}, x64={jax.config.jax_enable_x64}")

if QUICK:
    N_PATHS, DURATION = 16, 60.0
    REPORT = dict(n_boot=30, max_width=6, starts=2, plateau_width=4, parameterizations=("identity", "best"))
else:
    N_PATHS, DURATION = 64, 120.0
    REPORT = dict(n_boot=200, max_width=16, starts=8, plateau_width=10)
quiet = lambda *a, **k: None  # noqa: E731

# %% [markdown]
# ## 1. Three data sets
#
# White-noise inputs on a grid of step 0.1. The power law $(1+t)^{-3/2}$ ($\omega = 0.5$) and
# the exponentially damped $e^{-t/2}(1+t)^{-2}$ are linear functionals, computed exactly
# (`jaxmem.linear_outputs`). The Lorenz-96 ring ($K = 8$) has a stable fixed point $z = F$
# for forcing $F < 8/9$; at $F = 0.85$, close to the threshold, the fixed point's least stable
# modes decay slowly while they oscillate, and its memory is long. Its outputs are nonlinear; the
# report estimates the best *linear* kernel from them (an oscillating kernel: its tail fits
# describe the envelope).

# %%
DATA = {
    "power law (omega = 0.5)": dict(target="powerlaw", target_params={"omega": 0.5}),
    "exponential (beta = 0.5)": dict(target="exp", target_params={"beta": 0.5}),
    "Lorenz-96 (F = 0.85)": dict(target="lorenz96", target_params={"dim": 8, "forcing": 0.85}),
}
reports = {}
for k, (label, spec) in enumerate(DATA.items()):
    t0 = time.perf_counter()
    path = RUN_DIR / f"data_{spec['target']}.npz"
    jaxmem.run_data(jaxmem.DataSettings(**spec, n_paths=N_PATHS, duration=DURATION, dt=0.1, seed=k), path,
                    force=True, progress=False, log=quiet)
    reports[label] = jaxmem.run_memory(jaxmem.MemorySettings(data=path, **REPORT), RUN_DIR / f"memory_{spec['target']}",
                                       progress=False, log=quiet)
    print(f"{label} ({time.perf_counter() - t0:.1f} s):\n  {reports[label]['verdict']}")

# %% [markdown]
# ## 2. Reading a report
#
# `memory.json` holds the four answers; its `verdict` says them in one sentence.
#
# - `decay`: `class` (`exponential` or `power-law`), `rate` and `omega` with their bootstrap
#   intervals (`rate_interval`, `omega_interval`), the tail `window` both fits were made on, and
#   the cross-validated errors that chose the class. The intervals measure the resampling
#   variance over paths only, not the bias of the tail model: on $(1+t)^{-(1+\omega)}$ the slope of
#   $\log M$ against $\log t$ on a finite window is $(1+\omega)\,t/(1+t)$, a little below
#   $1 + \omega$.
# - `width_needed`: the best relative error per width with rates $\ge$ `min_rate`, and the first
#   width reaching `eps` (`null`: none up to `max_width`; then `error_at_max_width` says how far).
#   A power law keeps needing width: with a rate floor its error stalls.
# - `plateau`: the canonical start (its `rates`, `coeffs`, and `loss0`, the part of the unit-norm
#   kernel its rates cannot fit), and per parameterisation `tau0`, `tau0_prime` and `status`.
#   `"inf"` with status `loss_not_reached` means the flow did not lower the loss within the horizon.

# %%
for label, r in reports.items():
    d, w, p = r["decay"], r["width_needed"], r["plateau"]
    taus = ", ".join(f"{row['parameterization']}: {row['tau0_prime']:.3g}" if isinstance(row["tau0_prime"], float)
                     else f"{row['parameterization']}: {row['tau0_prime']}" for row in p["rows"])
    print(f"{label:26s} {d['class']:12s} rate {d['rate']:.3g}  omega {d['omega']:.3g}  "
          f"width {w['width']}  loss0 {p['loss0']:.2g}  tau0' [{taus}]")

# %% [markdown]
# The figure of each report: the memory function with its band and the two tail fits (log-log),
# the best error per width, and the hitting times per parameterisation. The estimates against the
# exact kernels of the two linear targets:

# %%
fig, axes = plt.subplots(1, 3, figsize=(15, 4))
truth = {"power law (omega = 0.5)": jaxmem.PowerLaw(0.5),
         "exponential (beta = 0.5)": jaxmem.Damped(jaxmem.PowerLaw(1.0), 0.5)}
for ax, (label, spec) in zip(axes, DATA.items()):
    rows = np.genfromtxt(RUN_DIR / f"memory_{spec['target']}" / "memory.csv", delimiter=",", names=True)
    t = rows["t"]
    ax.fill_between(t[1:], np.abs(rows["lo"][1:]), np.abs(rows["hi"][1:]), alpha=0.3, label="bootstrap band")
    ax.loglog(t[1:], np.abs(rows["rho"][1:]), label="estimate")
    if label in truth:
        ax.loglog(t[1:], np.asarray(truth[label](t[1:])), "k--", lw=1, label="exact kernel")
    ax.set_title(f"{label}: {reports[label]['decay']['class']}")
    ax.set_xlabel("t")
    ax.legend(fontsize=8)
axes[0].set_ylabel("|rho(t)|")
fig.tight_layout()
fig.savefig(FIG_DIR / "06_learnability_kernels.png", dpi=110)
plt.show()

# %% [markdown]
# ## 3. The report of a trained model
#
# `jaxmem memory --model DIR/models/NAME.eqx` reads a model written by `jaxmem train`
# (`jaxmem.load_model`). A linear model's memory function is its kernel, exactly; a diagonal
# model's is a finite sum of exponentials, so its decay class is always exponential at long times,
# with the slowest rate it has learnt. Comparing the model's report with the target's tells how
# much of the memory was learnt.

# %%
t0 = time.perf_counter()
train_dir = RUN_DIR / "train"
jaxmem.run_train(jaxmem.TrainSettings(kernel="powerlaw", params=(0.5,), widths=(4,), seeds=1,
                                      steps=40 if QUICK else 1000, lrs=(0.05,), batch_size=16, n_train=32, n_test=8,
                                      duration=30.0, dt=0.1, records=5), train_dir, progress=False, log=quiet)
(model_path,) = sorted((train_dir / "models").glob("*.eqx"))
# quick mode: one parameterisation (a new kernel structure compiles the flow again)
model_settings = REPORT | {"parameterizations": ("identity",)} if QUICK else REPORT
model_report = jaxmem.run_memory(jaxmem.MemorySettings(model=model_path, **model_settings),
                                 RUN_DIR / "memory_model", progress=False, log=quiet)
print(f"trained model ({time.perf_counter() - t0:.1f} s): {model_report['memory']['kind']}")
print(model_report["verdict"])
print(json.dumps(model_report["decay"], indent=1)[:400])

# %% [markdown]
# ## 4. The report's figure
#
# The figure `jaxmem memory` writes (`memory.png`), for the power law.

# %%
img = plt.imread(RUN_DIR / "memory_powerlaw" / "memory.png")
fig, ax = plt.subplots(figsize=(16, 5))
ax.imshow(img)
ax.axis("off")
fig.savefig(FIG_DIR / "06_learnability_report.png", dpi=110)
plt.show()
print(f"total {time.perf_counter() - T_START:.1f} s")

# %% [markdown]
# **How to read it.** Exponential memory (rate $\beta$ with an interval away from 0): a small
# width suffices with rates $\ge \beta$, the fits are stable under perturbation, and a canonical
# start whose rates span the memory already fits it — no plateau. Power-law memory: the width
# needed grows as $\varepsilon$ shrinks, and a rate floor caps the accuracy (the fits must recruit
# ever slower rates, which is what makes them unstable); gradient flow from a start that fits the
# fast part waits on a plateau until a rate slows down, and a parameterisation such as `best`
# (rates $1/(v^2 + b)$) shortens the wait.
