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
# # 03 — Reparameterising the rates
#
# The decay rates of a diagonal linear RNN must stay positive, $w_i > 0$, so in practice they are
# stored as an unconstrained parameter $v$ with $w = f(v)$. jaxmem offers four choices, never a
# silent default:
#
# | name | $w = f(v)$ | gradient scale $f'(v)$ as a function of $w$ |
# |---|---|---|
# | `identity` | $v$ | $1$ |
# | `exp` | $e^{v}$ | $w$ |
# | `softplus` | $\log(1 + e^{v})$ | $1 - e^{-w}$ |
# | `best` (StableSSM, $b = 0.1$) | $1/(v^2 + b)$ | $-2v\,w^2 = -2w^2\sqrt{1/w - b}$ (for $v > 0$) |
#
# Training moves $v$, not $w$: $\partial J/\partial v_i = f'(v_i)\,\partial J/\partial w_i$, and the
# gradient flow in $v$ is the flow in $w$ preconditioned by $f'(v)^2$. On the plateau family
# $\rho_\omega = e^{-t/2} + \rho_0(t - 1/\omega)$ the slowest mode ($w_l^0 = 0.5$) is the one that must
# move, and every parameterisation with $|f'(v)| < 1$ there (`exp`: $0.5$, `softplus`: $0.39$, `best`:
# $0.69$) makes its gradient smaller still. Wang & Li (StableSSM, 2023) argue that the "best"
# choice balances the gradient scale across rates $w$; here we measure what each does to the
# plateau. Hitting distances are measured in $(a, w)$ whatever the parameterisation, so the times
# compare.
#
# **Settings.** `QUICK = True` (default; `JAXMEM_QUICK=0` turns it off): plateau lengths from
# gradient descent on the exact loss ($\eta = 10^{-2}$, $\tau = k\eta$; notebook 02 shows it matches
# the flow's times to $<2\%$), $L = 6, 8, \dots, 16$, about a minute on 2 CPU cores. Full settings
# (GPU): the gradient flow's event hitting times for every parameterisation (one compilation each),
# $L = 6, \dots, 24$, beside gradient descent.

# %%
import os
import time
from pathlib import Path

QUICK = os.environ.get("JAXMEM_QUICK", "1") != "0"

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import jaxmem

FIG_DIR = Path(os.environ.get("JAXMEM_FIG_DIR", "figures"))
FIG_DIR.mkdir(parents=True, exist_ok=True)
T_START = time.perf_counter()
print(f"QUICK={QUICK}")
print(f"jax {jax.__version__} on {jax.devices()[0].platform}, jaxmem {jaxmem.__version__}, x64={jax.config.jax_enable_x64}")

PARAMS = ["identity", "exp", "softplus", "best"]
if QUICK:
    LAGS = [6.0, 8.0, 10.0, 12.0, 14.0, 16.0]
    USE_FLOW = False
    MAX_STEPS = 2_000_000
else:
    LAGS = [float(x) for x in range(6, 25, 2)]
    USE_FLOW = True
    MAX_STEPS = 50_000_000
LR, DELTA = 1e-2, 0.05
COLORS = dict(identity="k", exp="C0", softplus="C1", best="C3")

# %% [markdown]
# ## 1. Gradient scales
#
# Left: the factor $|f'(v)|$ by which each parameterisation scales the rate gradient, against the
# rate $w$. Right: $|\partial J/\partial v_1|$ at the canonical initialisation (the slowest mode,
# $w_1 = 0.5$), against the memory $L$: every curve decays like $L e^{-L/2}$, shifted by the
# constant factor $|f'(v_1)|$. No reparameterisation removes the exponential smallness of the
# plateau gradient: it comes from the target, through $b_0(w) \approx e^{-wL}$.

# %%
ws = np.geomspace(0.05, 9.0, 300)
scale = {}
for p in PARAMS:
    par = jaxmem.DiagonalRNN(jnp.ones(1), jnp.ones(1), parameterization=p).parameterization
    fprime = jax.vmap(jax.grad(par))
    scale[p] = np.abs(np.asarray(fprime(par.inverse(jnp.asarray(ws)))))

lags_g = np.arange(4.0, 31.0, 2.0)
grad_v = {p: [] for p in PARAMS}
for p in PARAMS:
    m0 = jaxmem.canonical_model(parameterization=p)
    for L in lags_g:
        g = jax.grad(jaxmem.white_noise_loss)(m0, jaxmem.plateau_target(L))
        grad_v[p].append(abs(float(g.v[0])))
grad_v = {p: np.array(v) for p, v in grad_v.items()}

fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
ax = axes[0]
for p in PARAMS:
    ax.loglog(ws, scale[p], color=COLORS[p], label=p)
ax.axvline(0.5, color="gray", ls=":", lw=1)
ax.set(xlabel="rate w", ylabel="|f′(v)| at w = f(v)", title="Gradient scale of each parameterisation")
ax.legend()
ax = axes[1]
for p in PARAMS:
    ax.semilogy(lags_g, grad_v[p], "o-", ms=3, color=COLORS[p], label=p)
ax.set(xlabel="memory L = 1/ω", ylabel="|∂J/∂v₁| at θ₀", title="Plateau gradient of the slowest mode")
ax.legend()
fig.tight_layout()
plt.show()
for p in PARAMS:
    s = np.polyfit(lags_g, np.log(grad_v[p] / lags_g), 1)[0]
    print(f"{p:9s} |f'(v)| at w=0.5: {np.interp(0.5, ws, scale[p]):.3f}   "
          f"|dJ/dv_1| at L=16: {grad_v[p][lags_g == 16][0]:.3e}   slope of log(|dJ/dv_1|/L) vs L: {s:.4f}")

# %% [markdown]
# ## 2. Plateau lengths
#
# Gradient descent on the exact loss, one compilation per parameterisation (the
# parameterisation is static; the lag is data). Filled markers: $\tau_0'$ (loss dropped by
# $\delta = 0.05$); open: $\tau_0$ (parameters moved by $\delta$).

# %%
rows = {p: [] for p in PARAMS}
for p in PARAMS:
    t0 = time.perf_counter()
    m0 = jaxmem.canonical_model(parameterization=p)
    for L in LAGS:
        r = jaxmem.train(m0, jaxmem.plateau_target(L), "gd", lr=LR, max_steps=MAX_STEPS,
                         delta_param=DELTA, delta_loss=DELTA)
        rows[p].append(dict(lag=L, tau_param=float(r.tau_param), tau_loss=float(r.tau_loss), steps=int(r.steps)))
    print(f"{p:9s} GD: {time.perf_counter() - t0:5.1f} s")

flow = {}
if USE_FLOW:
    for p in PARAMS:
        t0 = time.perf_counter()
        m0 = jaxmem.canonical_model(parameterization=p)
        hs = [jaxmem.hitting_times(m0, jaxmem.plateau_target(L), delta_param=DELTA, delta_loss=DELTA) for L in LAGS]
        flow[p] = [dict(lag=L, tau_param=float(h.tau_param), tau_loss=float(h.tau_loss)) for L, h in zip(LAGS, hs)]
        print(f"{p:9s} flow: {time.perf_counter() - t0:5.1f} s")

print("\n  L  " + "".join(f"{p:>22s}" for p in PARAMS))
for i, L in enumerate(LAGS):
    print(f"{L:4.0f} " + "".join(f"   {rows[p][i]['tau_param']:8.3g} / {rows[p][i]['tau_loss']:8.3g}" for p in PARAMS))
print("(each entry: tau_0 / tau_0', gradient descent, eta = 0.01)")

# %%
fits = {}
fig, ax = plt.subplots(figsize=(7.5, 5))
for p in PARAMS:
    lags = np.array([r["lag"] for r in rows[p]])
    tl = np.array([r["tau_loss"] for r in rows[p]])
    tp = np.array([r["tau_param"] for r in rows[p]])
    fit = jaxmem.fit_exponential(lags, tl)
    fits[p] = fit
    ax.semilogy(lags, tl, "o", color=COLORS[p], label=f"{p}: slope {fit.slope:.3f}")
    ax.semilogy(lags, fit(lags), "-", color=COLORS[p], lw=0.8)
    ax.semilogy(lags, tp, "o", color=COLORS[p], mfc="none", alpha=0.6)
    if p in flow:
        ax.semilogy(lags, [r["tau_loss"] for r in flow[p]], "x", color=COLORS[p])
ax.set(xlabel="memory L = 1/ω", ylabel="hitting time τ (filled: τ₀′, open: τ₀)",
       title="Plateau length by parameterisation (gradient descent, η = 0.01)")
ax.legend()
fig.tight_layout()
fig.savefig(FIG_DIR / "03_reparameterisations.png", dpi=120)
plt.show()
ref = np.array([r["tau_loss"] for r in rows["identity"]])
for p in PARAMS:
    ratio = np.array([r["tau_loss"] for r in rows[p]]) / ref
    print(f"{p:9s} slope {fits[p].slope:.4f} (R^2 {fits[p].r2:.4f});  tau_0'/tau_0'(identity): "
          + ", ".join(f"{q:.2f}" for q in ratio))

# %% [markdown]
# **Reading the numbers.** Reparameterisation rescales the plateau gradient of the slow mode by
# $|f'(v)|$ at its rate, and the measured plateaus follow the same order: `softplus` ($0.39$ at
# $w = 0.5$) is longest, then `exp` ($0.5$), then `best` ($0.69$), then `identity` ($1$). The
# factor over `identity` shrinks as $L$ grows (the printed ratios), and every curve keeps an
# exponential slope in $L$ well above zero: the plateau's exponential length comes from the
# target's memory through $b_0(w) \approx e^{-wL}$, not from the parameterisation. On this family a
# reparameterisation moves the constant, not the exponential — it does not cure the curse of
# memory in optimisation (StableSSM's "best" choice is about the stability of learning long
# memories, which this initialisation at $w \le 4$ does not probe).

# %%
print(f"notebook wall time: {time.perf_counter() - T_START:.1f} s")
