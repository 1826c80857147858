"""Loss and gradient of the canonical plateau problem: the exact path against adaptive quadrature.

The canonical plateau target at lag L = 18: ρ(t) = e^{-t/2} + exp(-(t-18)²/(2·0.5²)),
the width-10 diagonal model a = (1, 0, …, 0), w = geomspace(0.5, 4, 10) (so that ρ̂ = e^{-t/2}
and the residual is the bump). Both paths compute J = ∫_0^∞ (ρ - ρ̂)² dt and its gradient in
(a, w), jitted, with `jax.value_and_grad`:

- exact: `jaxmem.white_noise_loss` (aᵀGa - 2aᵀb₀(w) + ‖ρ‖², Laplace moments in closed form);
- quadrature: Diffrax integrating dJ/dt = (ρ(t) - ρ̂(t))² on [0, T] with a PIDController,
  differentiated through the solve with diffrax's RecursiveCheckpointAdjoint. Several solvers
  and tolerances are tried and the fastest one reaching the target accuracy (relative error
  ≤ 1e-8 in the loss and, norm-wise, in the gradient, against the exact path) is timed, so the
  ratio is against a tuned quadrature, not a sloppy or an over-tight one. A maximum step
  (`dtmax`) is needed: the integrand is ~0 until the bump, and an unconstrained controller
  steps straight over it. T = 80: past it |ρ - ρ̂| ≤ (1 + Σ|a|) e^{-t/2}, so the neglected
  tail is ≤ (1 + Σ|a|)² e^{-T}, printed below.

Both are also checked against an independent reference (scipy.integrate.quad). Times are per
call of the compiled function (Python dispatch included, as a training loop sees it), and per
model when vmapped over a batch (as a sweep sees it). jaxmem's runtime input checks
(`eqx.error_if`) put a host callback in the program, a fixed ~20-40 µs per call on CPU; run with
`EQX_ON_ERROR=off` to time the exact path without them.

Run: `python benchmarks/loss_exact_vs_quadrature.py [--quick]`.
"""

import argparse
import math
import platform
import statistics
import time
import warnings

import jax

jax.config.update("jax_enable_x64", True)

import diffrax
import jax.numpy as jnp
import numpy as np
import scipy.integrate as si

import jaxmem

LAG, SIGMA, WIDTH, T_END = 18.0, 0.5, 10, 80.0
TARGET_RTOL = 1e-8


def canonical():
    target = jaxmem.ExpSum([1.0], [0.5]) + jaxmem.GaussianBump(LAG, SIGMA)
    model = jaxmem.DiagonalRNN(jnp.zeros(WIDTH).at[0].set(1.0), jnp.geomspace(0.5, 4.0, WIDTH))
    return model, target


def quadrature_loss(model, target, *, solver, rtol, atol, dtmax, max_steps=4096):
    """J by adaptive quadrature: dJ/dt = (ρ - ρ̂)², J(0) = 0, on [0, T_END]."""

    def rhs(t, J, m):
        return (target(t) - m.kernel(t)) ** 2

    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(rhs),
        solver,
        0.0,
        T_END,
        None,
        jnp.zeros(()),
        args=model,
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol, dtmax=dtmax),
        adjoint=diffrax.RecursiveCheckpointAdjoint(),
        max_steps=max_steps,
    )
    return sol.ys[-1], sol.stats["num_steps"]


def flat_grad(g):
    return np.concatenate([np.asarray(g.a), np.asarray(g.v)])


def time_compiled(fn, args, *, calls, repeats):
    """Compile once (timed), then the median over `repeats` of the mean time of `calls` calls."""
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(compiled(*args))  # warm-up
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            out = compiled(*args)
        jax.block_until_ready(out)
        samples.append((time.perf_counter() - t0) / calls)
    return compiled, compile_s, statistics.median(samples)


def in_compiled_loop(value_and_grad_fn, n):
    """`n` gradient steps of size 1e-12 inside one `lax.fori_loop`: the per-step cost without
    per-call dispatch, as a compiled training loop pays it. (The tiny steps make each iteration
    depend on the last, so nothing is hoisted, while the model stays put to ~1e-12.)"""

    def run(model, target):
        def body(i, carry):
            m, acc = carry
            J, g = value_and_grad_fn(m, target)
            m = jax.tree.map(lambda x, y: x - 1e-12 * y, m, g)
            return m, acc + J

        return jax.lax.fori_loop(0, n, body, (model, jnp.zeros(())))

    return run


def scipy_reference(model):
    """J and dJ/d(a, w) by scipy quadrature, independent of jaxmem."""
    a, w = np.asarray(model.a), np.asarray(model.rates)

    def resid(t):
        return (
            math.exp(-0.5 * t)
            + math.exp(-((t - LAG) ** 2) / (2 * SIGMA**2))
            - float(np.sum(a * np.exp(-w * t)))
        )

    pts = [LAG + k * SIGMA for k in range(-16, 17)]

    def quad(f):
        # Away from the bump the residual is rounding noise (ρ̂ = e^{-t/2} cancels ρ's first
        # term): an absolute floor far below every quantity compared keeps quad from chasing it.
        edges = [0.0, *pts, T_END]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", si.IntegrationWarning)
            return sum(
                si.quad(f, lo, hi, epsabs=1e-22, epsrel=1e-13, limit=500)[0]
                for lo, hi in zip(edges[:-1], edges[1:])
            )

    J = quad(lambda t: resid(t) ** 2)
    # ∂J/∂a_i = -2 ∫ e^{-w_i t} (ρ - ρ̂);  ∂J/∂w_i = 2 a_i ∫ t e^{-w_i t} (ρ - ρ̂)
    da = np.array([-2 * quad(lambda t, wi=wi: math.exp(-wi * t) * resid(t)) for wi in w])
    dw = np.array(
        [
            2 * ai * quad(lambda t, wi=wi: t * math.exp(-wi * t) * resid(t)) if ai else 0.0
            for ai, wi in zip(a, w)
        ]
    )
    return J, np.concatenate([da, dw])


def rel(x, ref):
    return float(np.linalg.norm(np.asarray(x) - np.asarray(ref)) / np.linalg.norm(np.asarray(ref)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and quadrature configurations")
    args = parser.parse_args()
    calls, repeats = (20, 5) if args.quick else (100, 15)

    model, target = canonical()
    dev = jax.devices()[0]
    print("Loss + gradient of the canonical plateau problem: exact vs adaptive quadrature")
    print(
        f"  jax {jax.__version__}, diffrax {diffrax.__version__}, jaxmem {jaxmem.__version__}, "
        f"python {platform.python_version()}, device {dev.device_kind} ({dev.platform}), float64"
    )
    print(
        f"  target e^(-t/2) + GaussianBump(lag={LAG:g}, width={SIGMA:g}); width {WIDTH}, a = e1, w = geomspace(0.5, 4, {WIDTH})"
    )

    # --- exact path
    exact_fn = jax.value_and_grad(jaxmem.white_noise_loss)
    exact, exact_compile, exact_time = time_compiled(
        exact_fn, (model, target), calls=calls * 10, repeats=repeats
    )
    J_exact, g_exact = exact(model, target)
    J_exact, g_exact = float(J_exact), flat_grad(g_exact)

    J_ref, g_ref = scipy_reference(model)

    # --- quadrature: the fastest configuration that reaches the target accuracy
    # (solver, rtol, atol, dtmax): conventional settings first, then the cheapest ones that a
    # scan over Tsit5/Dopri5/Dopri8 × rtol 1e-4..1e-12 × dtmax 0.25..6 found still reaching 1e-8.
    configs = [
        (diffrax.Tsit5(), 1e-10, 1e-14, 0.5),
        (diffrax.Dopri5(), 1e-10, 1e-14, 1.0),
        (diffrax.Dopri8(), 1e-8, 1e-12, 1.0),
        (diffrax.Dopri8(), 1e-7, 1e-11, 4.0),
        (diffrax.Dopri8(), 1e-6, 1e-10, 4.0),
        (diffrax.Dopri8(), 1e-6, 1e-10, 2.0),
    ]
    if args.quick:
        configs = [configs[0], configs[4]]
    a_sum = float(np.sum(np.abs(np.asarray(model.a))))
    tail = (1 + a_sum) ** 2 * math.exp(-T_END)
    print(
        f"  quadrature on [0, {T_END:g}]; neglected tail ≤ (1 + Σ|a|)² e^(-T) = {tail:.1e} (relative {tail / J_exact:.1e})"
    )
    print()
    print(
        f"  exact path: {exact_time * 1e6:.1f} µs per loss+gradient; quadrature configurations (errors relative to the exact path):"
    )
    print(
        f"  {'solver':8s} {'rtol':>7s} {'atol':>7s} {'dtmax':>5s} {'steps':>6s} {'loss err':>9s} {'grad err':>9s} {'time/call':>10s} {'vs exact':>9s}  ok"
    )
    best = None
    for solver, rtol, atol, dtmax in configs:
        fn = jax.value_and_grad(
            lambda m, t, s=solver, r=rtol, a=atol, d=dtmax: quadrature_loss(
                m, t, solver=s, rtol=r, atol=a, dtmax=d
            ),
            has_aux=True,
        )
        compiled, compile_s, per_call = time_compiled(
            fn, (model, target), calls=max(2, calls // 10), repeats=max(3, repeats // 3)
        )
        (J_q, steps), g_q = compiled(model, target)
        err_J, err_g = abs(float(J_q) / J_exact - 1), rel(flat_grad(g_q), g_exact)
        ok = err_J <= TARGET_RTOL and err_g <= TARGET_RTOL and int(steps) < 4096
        name = type(solver).__name__
        print(
            f"  {name:8s} {rtol:7.0e} {atol:7.0e} {dtmax:5.2g} {int(steps):6d} {err_J:9.1e} {err_g:9.1e} "
            f"{per_call * 1e3:7.2f} ms {per_call / exact_time:8.0f}x  {'yes' if ok else 'no'}"
        )
        if ok and (best is None or per_call < best["time"]):
            best = dict(
                name=name,
                rtol=rtol,
                atol=atol,
                dtmax=dtmax,
                steps=int(steps),
                time=per_call,
                compile=compile_s,
                err_J=err_J,
                err_g=err_g,
                J=float(J_q),
                g=flat_grad(g_q),
                fn=fn,
            )

    print()
    print(
        f"  exact path      : {exact_time * 1e6:9.1f} µs per loss+gradient (median of {repeats} × {calls * 10} calls), compile {exact_compile:.2f} s"
    )
    print(
        f"                    vs scipy reference: loss rel. err {abs(J_exact / J_ref - 1):.1e}, gradient rel. err {rel(g_exact, g_ref):.1e} (norm-wise)"
    )
    if best is None:
        print(f"  quadrature      : no configuration reached relative error ≤ {TARGET_RTOL:g}")
        return
    print(
        f"  quadrature      : {best['time'] * 1e6:9.1f} µs per loss+gradient ({best['name']}, rtol {best['rtol']:g}, atol {best['atol']:g}, "
        f"dtmax {best['dtmax']:g}, {best['steps']} steps), compile {best['compile']:.2f} s"
    )
    print(
        f"                    vs exact path: loss rel. err {best['err_J']:.1e}, gradient rel. err {best['err_g']:.1e}; "
        f"vs scipy reference: {abs(best['J'] / J_ref - 1):.1e}, {rel(best['g'], g_ref):.1e}"
    )
    ratio = best["time"] / exact_time

    # Throughput over a batch of models (how sweeps call it): vmap both over B perturbed models.
    B = 64 if args.quick else 256
    scales = jnp.linspace(1.0, 1.001, B)

    def batched(fn):
        return lambda s, t: jax.vmap(lambda x: fn(jaxmem.DiagonalRNN(model.a, model.rates * x), t))(s)

    _, _, exact_batch = time_compiled(
        batched(exact_fn), (scales, target), calls=max(2, calls // 2), repeats=max(3, repeats // 3)
    )
    _, _, quad_batch = time_compiled(batched(best["fn"]), (scales, target), calls=2, repeats=3)
    # Per step inside a compiled loop (how gradient descent and the gradient flow call it).
    n_exact, n_quad = (200, 5) if args.quick else (2000, 20)
    quad_vg = lambda m, t: (lambda out: (out[0][0], out[1]))(best["fn"](m, t))
    _, _, exact_loop = time_compiled(in_compiled_loop(exact_fn, n_exact), (model, target), calls=1, repeats=3)
    _, _, quad_loop = time_compiled(in_compiled_loop(quad_vg, n_quad), (model, target), calls=1, repeats=3)
    exact_loop, quad_loop = exact_loop / n_exact, quad_loop / n_quad

    print()
    print(f"  {'per loss+gradient':34s} {'exact':>10s} {'quadrature':>12s} {'ratio':>7s}")
    rows = [
        ("one jitted call (dispatch included)", exact_time, best["time"]),
        (f"batch of {B} models (vmap), per model", exact_batch / B, quad_batch / B),
        ("step of a compiled loop (fori_loop)", exact_loop, quad_loop),
    ]
    for label, te, tq in rows:
        print(f"  {label:34s} {te * 1e6:8.1f} µs {tq * 1e6:10.1f} µs {tq / te:6.0f}x")
    print()
    print(
        f"  goal: exact >= 100x faster. One call: {'met' if ratio >= 100 else 'NOT met'} ({ratio:.0f}x); "
        f"in a compiled loop: {'met' if quad_loop / exact_loop >= 100 else 'NOT met'} ({quad_loop / exact_loop:.0f}x)."
    )
    print("  (A single call pays a fixed per-dispatch cost for jaxmem's runtime checks, which put a host")
    print(
        "  callback in the program; inside a compiled loop that cost vanishes. EQX_ON_ERROR=off removes it.)"
    )


if __name__ == "__main__":
    main()
