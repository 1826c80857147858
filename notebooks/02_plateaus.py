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
# # 02 — Plateaus: the curse of memory in optimisation
#
# A diagonal linear RNN $\hat\rho(t;\theta) = \sum_{i=1}^m a_i e^{-w_i t}$ is trained on the exact
# white-noise risk
#
# $$J(\theta) = \int_0^\infty |\rho(t) - \hat\rho(t;\theta)|^2\,dt
#   = a^\top G a - 2 a^\top b_0(w) + \|\rho\|^2, \qquad G_{ij} = \frac{1}{w_i + w_j},$$
#
# against the plateau family of the paper, $\rho_\omega(t) = e^{-t/2} + \rho_0(t - 1/\omega)$: a short
# memory the initial model already fits, plus a Gaussian bump ($A = 1$, $\sigma = 1/2$) at lag
# $L = 1/\omega$. The canonical initial model has $m = 10$, $a = (1, 0, \dots, 0)$ and
# $w = \mathrm{geomspace}(0.5, 4, 10)$, so $\hat\rho(\theta_0) = e^{-t/2}$ exactly.
#
# Gradient flow $d\theta/d\tau = -\nabla J(\theta)$ starts on a plateau: the loss is $O(1)$ (the
# bump is not fitted at all) but the gradient only sees the bump through the Laplace moments
# $b_0(w) = \int e^{-wt}\rho_0(t - L)\,dt \approx e^{-wL}$, so it is $O(\omega^{-1} e^{-w_{\min}/\omega})$.
# The hitting times
#
# $$\tau_0 = \inf\{\tau : \|\theta(\tau) - \theta(0)\|_2 > \delta\},\qquad
#   \tau_0' = \inf\{\tau : J(\theta(0)) - J(\theta(\tau)) > \delta\}$$
#
# satisfy (JMLR Thm 20) $\tau_0' \ge \tau_0 \gtrsim \omega^2 e^{w_l^0/\omega}\min\{\delta/\sqrt m, \ln(1+\delta)\}$
# with $w_l^0 = 0.5$ the smallest initial rate: **the plateau is exponentially long in the memory
# $1/\omega$**. This notebook measures it: the flow with Diffrax (Rodas4, hitting times as
# event roots), and gradient descent, heavy-ball momentum and Adam with optax on the same exact loss.
#
# **Settings.** `QUICK = True` (the default; `JAXMEM_QUICK=0` turns it off) runs in about a minute
# and a half on 2 CPU cores: flow hitting times for $L = 8, \dots, 18$, optimisers for
# $L = 8, \dots, 18$. Full settings (for a GPU; the test suite runs the quick ones): flow for $L = 8, \dots, 40$ with
# $\delta_{\rm loss} = 0.01$ past $L = 20$ (one recruited mode lowers the loss only by $O(1/L)$), optimisers for $L = 8, \dots, 24$.

# %%
import os
import time
from pathlib import Path

QUICK = os.environ.get("JAXMEM_QUICK", "1") != "0"

import jax

jax.config.update("jax_enable_x64", True)  # plateaus need float64: gradients reach 1e-9
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import jaxmem

FIG_DIR = Path(os.environ.get("JAXMEM_FIG_DIR", "figures"))
FIG_DIR.mkdir(parents=True, exist_ok=True)
T_START = time.perf_counter()
print(f"QUICK={QUICK}")
print(f"jax {jax.__version__} on {jax.devices()[0].platform}, jaxmem {jaxmem.__version__}, x64={jax.config.jax_enable_x64}")

if QUICK:
    CURVE_LAGS = [8.0, 10.0, 14.0, 18.0]
    FLOW_LAGS = list(jaxmem.CANONICAL_LAGS)  # 8, 10, ..., 18
    OPT_LAGS = list(jaxmem.CANONICAL_LAGS)
    MAX_STEPS = 300_000
else:
    CURVE_LAGS = [8.0, 10.0, 12.0, 14.0, 16.0, 18.0]
    FLOW_LAGS = [float(x) for x in range(8, 41, 2)]  # 8, 10, ..., 40 (Rodas4; past 44: jaxmem.long_lag_solver())
    OPT_LAGS = [float(x) for x in range(8, 25, 2)]
    MAX_STEPS = 50_000_000
DELTA = 0.05
LR = 1e-2
model0 = jaxmem.canonical_model()
W_MIN = float(model0.rates.min())

# %% [markdown]
# ## 1. Hitting times of the gradient flow
#
# `hitting_times` follows the flow with an L-stable implicit solver and locates $\tau_0$ and
# $\tau_0'$ as roots of event functions. The lag enters only as data, so the first call compiles
# (tens of seconds on CPU) and every further lag costs well under a second. Past $L \approx 20$ one
# recruited mode lowers the loss by only $O(1/L)$, so $\tau_0'$ uses $\delta_{\rm loss} = 0.01$ there.

# %%
t0 = time.perf_counter()
flow_rows = []
for L in FLOW_LAGS:
    dl = DELTA if L <= 20 else 0.01
    h = jaxmem.hitting_times(model0, jaxmem.plateau_target(L), delta_param=DELTA, delta_loss=dl)
    flow_rows.append(dict(lag=L, tau_param=float(h.tau_param), tau_loss=float(h.tau_loss), delta_loss=dl,
                          steps=int(h.steps), ok=bool(h.result == jaxmem.RESULTS.successful), loss0=float(h.loss0)))
print(f"{len(FLOW_LAGS)} lags in {time.perf_counter() - t0:.1f} s (first call includes compilation)")
print(" L     tau_0        tau_0'      delta_loss  steps  ok")
for r in flow_rows:
    print(f"{r['lag']:4.0f}  {r['tau_param']:10.4g}  {r['tau_loss']:10.4g}  {r['delta_loss']:8.2f}  {r['steps']:6d}  {r['ok']}")

# %% [markdown]
# ## 2. Training curves $J(\tau)$
#
# The whole trajectory, from `gradient_flow` (same solver, saved at log-spaced times; one
# compilation serves all lags). The loss sits at $J(\theta_0) = \|\rho_0\|^2 - 2\langle\rho_0, e^{-t/2}\rangle
# \approx \sqrt{\pi}/2$ for a time that grows exponentially with $L$, then drops as a new mode is
# recruited towards the bump. Dots: the hitting times $\tau_0'$ from the events above.

# %%
T1 = 1e4 if QUICK else 1e6
saveat = jnp.concatenate([jnp.zeros(1), jnp.geomspace(1e-3, T1, 300)])
t0 = time.perf_counter()
curves = {}
for L in CURVE_LAGS:
    res = jaxmem.gradient_flow(model0, jaxmem.plateau_target(L), T1, saveat=saveat)
    curves[L] = res
    assert bool(res.result == jaxmem.RESULTS.successful), f"flow failed at L={L}"
print(f"{len(CURVE_LAGS)} flows to tau={T1:g} in {time.perf_counter() - t0:.1f} s (first call includes compilation)")

# The Airy target Ai(t - 6): oscillating memory, from the same initial model.
airy = jaxmem.Airy(shift=6.0)
t0 = time.perf_counter()
saveat_airy = jnp.concatenate([jnp.zeros(1), jnp.geomspace(1e-3, 1e5, 300)])
airy_flow = jaxmem.gradient_flow(model0, airy, 1e5, saveat=saveat_airy)
print(f"Airy flow in {time.perf_counter() - t0:.1f} s, ok={bool(airy_flow.result == jaxmem.RESULTS.successful)}, "
      f"J: {float(airy_flow.losses[0]):.4f} -> {float(airy_flow.losses[-1]):.4f}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
ax = axes[0]
taus_by_lag = {r["lag"]: r for r in flow_rows}
for L, res in curves.items():
    ts, Js = np.asarray(res.ts)[1:], np.asarray(res.losses)[1:]
    (line,) = ax.semilogx(ts, Js, label=f"L = 1/ω = {L:g}")
    r = taus_by_lag.get(L)
    if r and np.isfinite(r["tau_loss"]):
        ax.plot(r["tau_loss"], float(res.losses[0]) - r["delta_loss"], "o", color=line.get_color())
ax.set(xlabel="training time τ", ylabel="J(θ(τ))", title="Gradient flow on the plateau family (m = 10)")
ax.legend()
ax = axes[1]
tt = np.linspace(0, 20, 800)
ax2 = ax.inset_axes([0.55, 0.5, 0.42, 0.42])
ax2.plot(tt, np.asarray(airy(jnp.asarray(tt))), "k", lw=1)
ax2.set_title("ρ(t) = Ai(t − 6)", fontsize=8)
ax2.tick_params(labelsize=7)
ax.semilogx(np.asarray(airy_flow.ts)[1:], np.asarray(airy_flow.losses)[1:], color="C4")
ax.set(xlabel="training time τ", ylabel="J(θ(τ))", title="Gradient flow on an Airy target")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 3. Discrete optimisers on the same loss
#
# `jaxmem.train` runs optax's SGD (plain gradient descent on the exact loss), heavy-ball momentum
# 0.9 and Adam, all with $\eta = 10^{-2}$, in a jitted loop that stops at both hitting conditions;
# times are reported as $\tau = k\eta$. Gradient descent is the explicit Euler scheme of the flow,
# so its $\tau$ should match the flow's.

# %%
opt_rows = {}
for opt in ("gd", "momentum", "adam"):
    t0 = time.perf_counter()
    rows = []
    for L in OPT_LAGS:
        r = jaxmem.train(model0, jaxmem.plateau_target(L), opt, lr=LR, max_steps=MAX_STEPS,
                         delta_param=DELTA, delta_loss=DELTA)
        rows.append(dict(lag=L, tau_param=float(r.tau_param), tau_loss=float(r.tau_loss), steps=int(r.steps)))
    opt_rows[opt] = rows
    print(f"{opt:9s} {time.perf_counter() - t0:5.1f} s   tau_0' = " +
          ", ".join(f"{x['tau_loss']:.3g}" for x in rows))

gd_vs_flow = [(g["lag"], g["tau_loss"] / taus_by_lag[g["lag"]]["tau_loss"]) for g in opt_rows["gd"]
              if g["lag"] in taus_by_lag]
print("GD tau_0' / flow tau_0':", ", ".join(f"L={L:g}: {q:.3f}" for L, q in gd_vs_flow))

# %% [markdown]
# ## 4. The plateau map: $\log\tau$ against the memory $1/\omega$
#
# The exponential law appears as a straight line on a log scale. The dashed line is the Thm 20
# bound $\omega^2 e^{w_l^0/\omega}\min\{\delta/\sqrt m, \ln(1+\delta)\}$ (up to its constant), with slope
# $w_l^0 = 0.5$; the fitted slopes of $\log\tau_0'$ against $L$ are in the legend.

# %%
fits = {}
fig, ax = plt.subplots(figsize=(7.5, 5))
series = [("gradient flow", flow_rows, "k", "o")] + [
    (name, opt_rows[key], c, mk) for name, key, c, mk in
    (("GD", "gd", "C0", "s"), ("momentum 0.9", "momentum", "C1", "^"), ("Adam", "adam", "C2", "v"))]
for name, rows, color, marker in series:
    lags = np.array([r["lag"] for r in rows])
    tl = np.array([r["tau_loss"] for r in rows])
    use = lags <= 20 if name == "gradient flow" and lags.max() > 20 else np.ones_like(lags, bool)
    fit = jaxmem.fit_exponential(lags[use], tl[use])
    fits[name] = fit
    ax.semilogy(lags, tl, marker, color=color, label=f"{name}: τ₀′, slope {fit.slope:.3f}")
    ax.semilogy(lags[use], fit(lags[use]), "-", color=color, lw=0.8)
    tp = np.array([r["tau_param"] for r in rows])
    ax.semilogy(lags, tp, marker, color=color, mfc="none", alpha=0.6)
Ls = np.linspace(min(FLOW_LAGS), max(FLOW_LAGS), 100)
bound = np.asarray(jaxmem.plateau_bound(1.0 / Ls, W_MIN, delta=DELTA, width=model0.width))
ax.semilogy(Ls, bound, "k--", label=f"Thm 20 bound (slope {W_MIN:g}), up to a constant")
ax.set(xlabel="memory L = 1/ω", ylabel="hitting time τ (filled: τ₀′, open: τ₀)",
       title="Plateau length grows exponentially with the memory")
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(FIG_DIR / "02_plateaus.png", dpi=120)
plt.show()
for name, fit in fits.items():
    print(f"{name:14s} slope of log tau_0' vs L: {fit.slope:.4f}  (R^2 = {fit.r2:.4f}, n = {fit.n});  theory: >= {W_MIN}")

# %% [markdown]
# ## 5. The mechanism: $O(1)$ loss, exponentially small gradient
#
# Along the flow at the longest curve lag, the loss stays at its initial value while
# $\|\nabla J\|$ is tiny; the escape is the moment the gradient grows by orders of magnitude.
# Right: at $\theta_0$ the gradient is $O(\omega^{-1}e^{-w_{\min}/\omega}) = O(L\,e^{-L/2})$ (the
# $w$-derivative carries $b_1 = \int t\,e^{-wt}\rho\,dt \approx L\,b_0$), so $\log(\|\nabla J(\theta_0)\|/L)$ has
# slope $-w_{\min} = -0.5$ against $L$: the plateau is not a region of small loss but of small gradient.

# %%
def grad_norm(a, w, target):
    _, ga, gw = jaxmem.diagonal_terms(a, w, target)
    return jnp.sqrt(jnp.sum(ga**2) + jnp.sum(gw**2))

L_mech = max(CURVE_LAGS)
res = curves[L_mech]
target = jaxmem.plateau_target(L_mech)
gnorm = np.asarray(jax.vmap(lambda a, w: grad_norm(a, w, target))(res.a, res.w))
lags_g = np.arange(4.0, 41.0, 2.0)
g0 = np.array([float(grad_norm(model0.a, model0.rates, jaxmem.plateau_target(L))) for L in lags_g])
slope_g = np.polyfit(lags_g, np.log(g0 / lags_g), 1)[0]

fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
ax = axes[0]
ts = np.asarray(res.ts)[1:]
ax.loglog(ts, np.asarray(res.losses)[1:], "C0", label="loss J(θ(τ))")
ax.loglog(ts, gnorm[1:], "C3", label="gradient norm ‖∇J(θ(τ))‖")
r = taus_by_lag[L_mech]
ax.axvline(r["tau_param"], color="gray", ls=":", label="τ₀ (parameters moved by δ)")
ax.axvline(r["tau_loss"], color="gray", ls="--", label="τ₀′ (loss dropped by δ)")
ax.set(xlabel="training time τ", title=f"Along the flow, L = {L_mech:g}")
ax.legend(fontsize=8)
ax = axes[1]
ax.semilogy(lags_g, g0, "o-", label="‖∇J(θ₀)‖")
ax.semilogy(lags_g, g0[-1] * lags_g / lags_g[-1] * np.exp(-W_MIN * (lags_g - lags_g[-1])), "k--",
            label="∝ L e^{−w_min L}")
ax.set(xlabel="memory L = 1/ω", title=f"Gradient at the start: log(‖∇J‖/L) slope {slope_g:.3f}")
ax.legend()
fig.tight_layout()
plt.show()
print(f"L = {L_mech:g}: J(θ0) = {float(res.losses[0]):.4f}, ||grad J(θ0)|| = {gnorm[0]:.3e}, "
      f"max ||grad J|| along the flow = {gnorm.max():.3e}")
print(f"slope of log(||grad J(θ0)|| / L) against L: {slope_g:.4f} (theory: -w_min = {-W_MIN})")

# %% [markdown]
# **Reading the numbers.** The loss on the plateau is the same $O(1)$ value for every lag, while
# the gradient at the start shrinks like $e^{-L/2}$, and the time to leave grows at least that fast:
# for the gradient flow and gradient descent the fitted slope of $\log\tau_0'$ against $L$ is at or
# above $w_l^0 = 0.5$, as Thm 20 predicts (it bounds the flow, hence GD with a small step, which
# reproduces the flow's times: it is its Euler discretisation). Momentum shortens the plateau by a
# large factor and Adam, which rescales the gradient coordinate-wise, also lowers the slope (in
# quick mode to below 0.5: Thm 20 says nothing about Adam), but both still grow exponentially
# with the memory.

# %%
print(f"notebook wall time: {time.perf_counter() - T_START:.1f} s")
