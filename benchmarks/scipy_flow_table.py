"""The canonical flow table of `jaxmem plateau`, computed independently with numpy and scipy.

The plateau family ρ(t) = e^{-t/2} + A·exp(-(t-L)²/(2σ²)) (A = 1, σ = 0.5) is fitted by
ρ̂(t) = Σ a_i e^{-w_i t}, starting from the canonical a = e₁, w = geomspace(0.5, 4, m). The
white-noise loss J = ∫₀^∞ (ρ - ρ̂)² dt and its gradient are written out in closed form (Gram
matrix 1/(w_i + w_j), the target's Laplace moments through the normal CDF), the gradient flow
dθ/dτ = -∇J is integrated by scipy's `solve_ivp` (Radau, a stiff method, with the exact
Hessian as Jacobian), and its events give the hitting times:

- τ₀ = inf{τ : ‖(a, w)(τ) - (a, w)(0)‖₂ > δ_param},
- τ₀′ = inf{τ : J(0) - J(τ) > δ_loss}.

No jaxmem code is used. Prints the table as CSV (lag, tau_param, tau_loss, nfev); with
`--compare plateau.csv` also the relative differences from a jaxmem table.

```bash
python benchmarks/scipy_flow_table.py --lags 8 10 12 14 16 18
```
"""

import argparse
import csv
import math
import sys
import time

import numpy as np
from scipy.integrate import solve_ivp
from scipy.special import ndtr

SQRT2PI = math.sqrt(2 * math.pi)


def moments(w, lag, sigma=0.5, amplitude=1.0, base=0.5):
    """b_k(w) = ∫₀^∞ t^k ρ(t) e^{-wt} dt for k = 0, 1, 2 (each an array over the modes)."""
    s = 1.0 / (w + base)
    mu = lag - sigma**2 * w  # the bump times e^{-wt} is a Gaussian centred at mu, times e^{...}
    r = mu / sigma
    scale = amplitude * sigma * SQRT2PI * np.exp(-w * lag + 0.5 * sigma**2 * w**2)
    cdf, pdf = ndtr(r), np.exp(-0.5 * r**2) / SQRT2PI
    b0 = s + scale * cdf
    b1 = s**2 + scale * (mu * cdf + sigma * pdf)
    b2 = 2 * s**3 + scale * ((mu**2 + sigma**2) * cdf + mu * sigma * pdf)
    return b0, b1, b2


def loss_grad_hess(theta, lag):
    """J (up to the constant ‖ρ‖²), its gradient and Hessian in θ = (a, w)."""
    m = theta.size // 2
    a, w = theta[:m], theta[m:]
    G = 1.0 / (w[:, None] + w[None, :])
    G2, G3 = G * G, G * G * G
    b0, b1, b2 = moments(w, lag)
    Ga = G @ a
    J = a @ Ga - 2 * a @ b0
    grad = np.concatenate([2 * (Ga - b0), -2 * a * (G2 @ a - b1)])
    h_aa = 2 * G
    h_aw = -2 * np.diag(G2 @ a - b1) - 2 * G2 * a[None, :]
    h_ww = 4 * np.diag(a * (G3 @ a)) + 4 * np.outer(a, a) * G3 - 2 * np.diag(a * b2)
    return J, grad, np.block([[h_aa, h_aw], [h_aw.T, h_ww]])


def hitting_times(lag, width=10, delta_param=0.05, delta_loss=0.05, rtol=1e-8, atol=1e-10, horizon=1e15):
    """(τ₀, τ₀′, number of right-hand-side evaluations) of the canonical problem at `lag`."""
    theta0 = np.concatenate([np.eye(1, width)[0], np.geomspace(0.5, 4.0, width)])
    J0 = loss_grad_hess(theta0, lag)[0]

    def rhs(t, y):
        return -loss_grad_hess(y, lag)[1]

    def jac(t, y):
        return -loss_grad_hess(y, lag)[2]

    def moved(t, y):
        return np.linalg.norm(y - theta0) - delta_param

    def dropped(t, y):
        return J0 - loss_grad_hess(y, lag)[0] - delta_loss

    taus, nfev, t0, y0 = {}, 0, 0.0, theta0
    events = {"param": moved, "loss": dropped}
    while len(taus) < 2:
        pending = [k for k in events if k not in taus]
        fns = []
        for k in pending:
            fn = events[k]
            fn.terminal, fn.direction = True, 1.0
            fns.append(fn)
        sol = solve_ivp(rhs, (t0, horizon), y0, method="Radau", jac=jac, rtol=rtol, atol=atol, events=fns)
        nfev += sol.nfev
        if sol.status != 1:  # the horizon, or a failure: what is left is not reached
            break
        first = min(range(len(pending)), key=lambda i: sol.t_events[i][0] if len(sol.t_events[i]) else np.inf)
        for i, k in enumerate(pending):
            if len(sol.t_events[i]) and sol.t_events[i][0] <= sol.t_events[first][0]:
                taus[k] = float(sol.t_events[i][0])
        t0, y0 = sol.t[-1], sol.y[:, -1]
    return taus.get("param", math.inf), taus.get("loss", math.inf), nfev


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lags", type=float, nargs="+", default=[8.0, 10.0, 12.0, 14.0, 16.0, 18.0])
    p.add_argument("--width", type=int, default=10)
    p.add_argument("--delta-param", type=float, default=0.05)
    p.add_argument("--delta-loss", type=float, default=0.05)
    p.add_argument("--rtol", type=float, default=1e-8)
    p.add_argument("--atol", type=float, default=1e-10)
    p.add_argument("--compare", help="a jaxmem plateau.csv: print the relative differences")
    args = p.parse_args(argv)
    t = time.perf_counter()
    rows = [(lag, *hitting_times(lag, args.width, args.delta_param, args.delta_loss, args.rtol, args.atol))
            for lag in args.lags]
    elapsed = time.perf_counter() - t
    out = csv.writer(sys.stdout)
    out.writerow(["lag", "tau_param", "tau_loss", "nfev"])
    for row in rows:
        out.writerow([repr(x) for x in row])
    print(f"# computed in {elapsed:.3f} s", file=sys.stderr)
    if args.compare:
        with open(args.compare) as f:
            ref = {float(r["lag"]): r for r in csv.DictReader(f) if r["optimizer"] == "flow"}
        worst = 0.0
        for lag, tp, tl, _ in rows:
            r = ref.get(lag)
            if r is None:
                continue
            for mine, theirs in ((tp, float(r["tau_param"])), (tl, float(r["tau_loss"]))):
                worst = max(worst, abs(mine - theirs) / abs(theirs))
        print(f"# largest relative difference from {args.compare}: {worst:.2e}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
