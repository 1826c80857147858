"""Training throughput on data, measured side by side in one run.

(a) A discrete-time tanh RNN, width 64, sequences of T = 100 steps, minibatches of 512 paths,
    the mean squared error and Adam (float32, the research code's setting): jaxmem
    (`DiscreteRNN`, `lax.scan`, one compiled program of `--chunk` steps) against the same model,
    loss and optimiser in PyTorch (`torch.nn.RNN`, one step per Python call), the stack of the
    field's research code. Without PyTorch (`pip install 'jaxmem[bench]'`), a JAX loop that dispatches each
    time step from Python stands in, and the script says so.
(b) The diagonal linear recurrence at T = 4096 (width 64, 16 paths, float64): forward and
    gradient by `lax.associative_scan` against `lax.scan`.
(c) 16 seeds x 4 widths of a diagonal RNN trained with Adam on exponential memory: one
    vmapped program (`jaxmem.internal.FamilyRun`'s) against a loop over the 64 configurations
    calling the same jitted single-configuration function.

Prints compile and run times and the ratios. `--quick`: fewer repeats and steps.
"""

import argparse
import time

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax

import jaxmem


def _best(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


# -- (a) discrete tanh RNN ------------------------------------------------------------------------


def jax_tanh(width, T, batch, chunk, repeats):
    key = jr.key(0)
    model = jaxmem.DiscreteRNN.init(key, width, activation="tanh")
    model = jax.tree.map(lambda x: x.astype(jnp.float32) if eqx_inexact(x) else x, model)
    xs = jr.normal(jr.key(1), (batch, T), jnp.float32)
    ys = jr.normal(jr.key(2), (batch, T), jnp.float32)
    opt = optax.adam(1e-3)

    def loss(m):
        pred = jax.vmap(lambda x: m.predict(x))(xs)
        return jnp.mean((pred - ys) ** 2)

    def step(carry, _):
        m, s = carry
        val, g = jax.value_and_grad(loss)(m)
        u, s = opt.update(g, s, m)
        return (optax.apply_updates(m, u), s), val

    @jax.jit
    def run(m, s):
        return jax.lax.scan(step, (m, s), None, length=chunk)

    state = (model, opt.init(model))
    t0 = time.perf_counter()
    jax.block_until_ready(run(*state))
    compile_s = time.perf_counter() - t0
    run_s = _best(lambda: jax.block_until_ready(run(*state)), repeats)
    return chunk / run_s, compile_s


def eqx_inexact(x):
    return isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jnp.floating)


def torch_tanh(width, T, batch, steps, repeats):
    import torch

    torch.manual_seed(0)
    rnn = torch.nn.RNN(1, width, nonlinearity="tanh", batch_first=True)
    readout = torch.nn.Linear(width, 1, bias=False)
    params = list(rnn.parameters()) + list(readout.parameters())
    opt = torch.optim.Adam(params, lr=1e-3)
    xs = torch.randn(batch, T, 1)
    ys = torch.randn(batch, T)

    def step():
        opt.zero_grad()
        h, _ = rnn(xs)  # h_1 ... h_T; the prediction at k reads h_k, h_0 = 0
        h = torch.cat([torch.zeros(batch, 1, width), h[:, :-1]], dim=1)
        loss = torch.mean((readout(h)[..., 0] - ys) ** 2)
        loss.backward()
        opt.step()

    step()
    run_s = _best(lambda: [step() for _ in range(steps)], repeats)
    return steps / run_s, torch.__version__, torch.get_num_threads()


def jax_dispatch_tanh(width, T, batch, steps, repeats):
    """Stand-in without PyTorch: the same model with each time step dispatched from Python."""
    model = jaxmem.DiscreteRNN.init(jr.key(0), width, activation="tanh")
    W, U, b, c = (jnp.asarray(getattr(model, n), jnp.float32) for n in ("W", "U", "b", "c"))
    xs = jr.normal(jr.key(1), (batch, T), jnp.float32)
    ys = jr.normal(jr.key(2), (batch, T), jnp.float32)
    cell = jax.jit(lambda p, h, x: jnp.tanh(h @ p[0].T + x[:, None] * p[1][:, 0] + p[2]))

    def loss(p):
        h = jnp.zeros((batch, width), jnp.float32)
        out = []
        for k in range(T):
            out.append(h @ p[3])
            h = cell(p, h, xs[:, k])
        return jnp.mean((jnp.stack(out, 1) - ys) ** 2)

    grad = jax.value_and_grad(loss)
    p = (W, U, b, c)
    jax.block_until_ready(grad(p))
    run_s = _best(lambda: jax.block_until_ready([grad(p) for _ in range(steps)]), repeats)
    return steps / run_s


# -- (b) associative scan against sequential scan -------------------------------------------------


def scan_compare(T, width, paths, repeats):
    model = jaxmem.DiagonalRNN.init(jr.key(0), width).discretize(0.05)
    xs = jr.normal(jr.key(1), (paths, T))
    out = {}
    for name, seq in (("associative", False), ("sequential", True)):
        def loss(m, seq=seq):
            return jnp.mean(jax.vmap(lambda x: m.predict(x, sequential=seq))(xs) ** 2)

        f = jax.jit(jax.value_and_grad(loss))
        t0 = time.perf_counter()
        jax.block_until_ready(f(model))
        compile_s = time.perf_counter() - t0
        out[name] = (_best(lambda f=f: jax.block_until_ready(f(model)), repeats), compile_s)
    a, s = out["associative"], out["sequential"]
    np.testing.assert_allclose(
        jax.vmap(lambda x: model.predict(x))(xs[:2]), jax.vmap(lambda x: model.predict(x, sequential=True))(xs[:2]),
        rtol=1e-9, atol=1e-12)
    return a, s


# -- (c) one vmapped program against a loop over configurations ------------------------------------


def grid_compare(steps, repeats):
    from jaxmem.internal import (
        FamilyRun,
        build_model,
        param_coords,
        split,
        time_weights,
    )

    s = jaxmem.TrainSettings(kernel="exp", params=(0.5,), widths=(2, 4, 6, 8), seeds=16, steps=steps, batch_size=32,
                             n_train=64, n_test=8, duration=20.0, dt=0.1, optimizer="adam", lrs=(1e-2,))
    _advance_all, _init_all, _stack = FamilyRun.advance_all, FamilyRun.init_all, FamilyRun.stack
    fam = FamilyRun(s, "/dev/null", log=lambda *a: None)
    xs, ys, _, _ = fam.data()
    configs = s.configs()
    base = jr.key(s.seed + 1)
    models = [build_model(s, c["width"], max(s.widths), jr.fold_in(base, c["seed"])) for c in configs]
    weights = jnp.stack([time_weights(s.n_t, s.dt, 2.0)] * len(configs))
    hyper = jnp.asarray([[1e-2, 0.9, 0.05, 0.05]] * len(configs))
    keys = jnp.stack([jr.fold_in(base, i) for i in range(len(configs))])
    t_idx = jnp.zeros(len(configs), int)
    stacked = _stack(models)
    _, static = split(stacked)
    coords0 = jnp.stack([param_coords(m) for m in models])
    stop = jnp.asarray(steps)

    def batched():
        states = _init_all(stacked, "adam", hyper, xs, ys, s.dt, weights, keys, t_idx)
        return jax.block_until_ready(_advance_all(static, coords0, states, xs, ys, s.dt, weights, "adam", hyper,
                                                  s.batch_size, t_idx, stop))

    def one(i):  # the same program, one configuration (vmap of one), called in a loop
        sl = lambda x: x[i:i + 1]
        states = _init_all(jax.tree.map(sl, stacked), "adam", hyper[i:i + 1], xs, ys, s.dt, weights[i:i + 1],
                           keys[i:i + 1], t_idx[i:i + 1])
        return _advance_all(jax.tree.map(lambda x: x[i:i + 1] if isinstance(x, jax.Array) else x, static),
                            coords0[i:i + 1], states, xs, ys, s.dt, weights[i:i + 1], "adam", hyper[i:i + 1],
                            s.batch_size, t_idx[i:i + 1], stop)

    def looped():
        return jax.block_until_ready([one(i) for i in range(len(configs))])

    with jax.numpy_dtype_promotion("standard"):
        t0 = time.perf_counter()
        batched()
        cb = time.perf_counter() - t0
        t0 = time.perf_counter()
        one(0)
        cl = time.perf_counter() - t0
        tb = _best(batched, repeats)
        tl = _best(looped, repeats)
    return len(configs), tb, tl, cb, cl


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    repeats = 2 if args.quick else 3
    print(f"devices: {jax.devices()}")

    jax.config.update("jax_enable_x64", False)
    chunk = 10 if args.quick else 30
    jsps, jc = jax_tanh(64, 100, 512, chunk, repeats)
    print(f"(a) discrete tanh RNN, m=64, T=100, batch 512, Adam, float32 ({chunk} steps per compiled call)")
    print(f"    jaxmem: {jsps:8.1f} steps/s   (compile {jc:.1f} s)")
    try:
        tsps, tver, threads = torch_tanh(64, 100, 512, chunk, repeats)
        print(f"    PyTorch {tver} nn.RNN ({threads} threads): {tsps:8.1f} steps/s")
        print(f"    ratio jaxmem / PyTorch: {jsps / tsps:.2f}x")
    except ImportError:
        dsps = jax_dispatch_tanh(64, 100, 512, 3 if args.quick else 10, repeats)
        print("    PyTorch is not installed (pip install torch); compared instead with a JAX loop that")
        print(f"    dispatches each time step from Python: {dsps:8.2f} steps/s")
        print(f"    ratio jaxmem / per-step dispatch: {jsps / dsps:.2f}x")

    jax.config.update("jax_enable_x64", True)
    (ta, ca), (ts, cs) = scan_compare(4096, 64, 16, repeats)
    print("(b) diagonal linear recurrence, T=4096, m=64, 16 paths, value and gradient, float64")
    print(f"    associative scan: {ta * 1e3:8.2f} ms (compile {ca:.1f} s)   sequential scan: {ts * 1e3:8.2f} ms "
          f"(compile {cs:.1f} s)")
    print(f"    ratio sequential / associative: {ts / ta:.2f}x  (on {jax.devices()[0].platform})")

    steps = 50 if args.quick else 200
    n, tb, tl, cb, cl = grid_compare(steps, repeats)
    print(f"(c) {n} configurations (16 seeds x 4 widths), {steps} Adam steps of 32 paths each, float64")
    print(f"    one vmapped program: {tb:.2f} s (compile {cb:.1f} s)   loop over configurations: {tl:.2f} s "
          f"(compile {cl:.1f} s)")
    print(f"    ratio loop / vmapped: {tl / tb:.2f}x")


if __name__ == "__main__":
    main()
