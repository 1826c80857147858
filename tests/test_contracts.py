"""Contract tests over the registries: every kernel and model jits once, vmaps, differentiates,
and keeps its shapes and dtypes; a float32 smoke test."""

import json
import os
import subprocess
import sys
import textwrap

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
import pytest

import jaxmem

from .helpers import KERNELS, MODELS, target_for, tree_allclose

W = jnp.array([0.3, 1.0, 4.0])
T = jnp.array([[0.0, 0.5], [2.0, 18.0]])


def _perturb(tree, factor=1.01):
    return jtu.tree_map(lambda x: x * factor if eqx.is_inexact_array(x) else x, tree)


def _stack(*trees):
    return jtu.tree_map(lambda *xs: jnp.stack(xs), *trees)


def _kernel_contract(kernel, model):
    loss, (g_model, g_kernel) = eqx.filter_value_and_grad(lambda mk: jaxmem.white_noise_loss(mk[0], mk[1]))(
        (model, kernel)
    )
    return {
        "values": kernel(T),
        "b0": kernel.laplace(W),
        "b1": kernel.laplace_t(W),
        "sq_norm": kernel.sq_norm(),
        "loss": loss,
        "grad_model": g_model,
        "grad_kernel": g_kernel,
    }


_DIAG = jaxmem.DiagonalRNN(jnp.array([0.9, -0.4, 0.25]), jnp.array([0.3, 1.1, 4.0]))

# Shared across tests, so that registry entries of the same structure (PowerLaw(0.25) and
# PowerLaw(2, scale=3)) share one compilation; each test checks that it adds at most one trace.
_counted_kernel_contract = eqx.debug.assert_max_traces(_kernel_contract, max_traces=None)
_jit_kernel_contract = eqx.filter_jit(_counted_kernel_contract)


def _traces(fn):
    return eqx.debug.get_num_traces(fn)


@pytest.mark.parametrize("name", list(KERNELS))
def test_kernel_contract(name):
    kernel = KERNELS[name].make()
    n0 = _traces(_counted_kernel_contract)
    out = _jit_kernel_contract(kernel, _DIAG)
    n1 = _traces(_counted_kernel_contract)
    assert n1 - n0 <= 1
    # a kernel with other values but the same structure reuses the compiled program
    out2 = _jit_kernel_contract(_perturb(kernel), _perturb(_DIAG, 1.05))
    assert _traces(_counted_kernel_contract) == n1, "retraced for new values of the same structure"
    assert out["values"].shape == T.shape and out["b0"].shape == W.shape and out["b1"].shape == W.shape
    assert out["sq_norm"].shape == () and out["loss"].shape == ()
    for leaf in jtu.tree_leaves(out) + jtu.tree_leaves(out2):
        assert leaf.dtype == jnp.float64
        assert np.all(np.isfinite(np.asarray(leaf))), name
    assert not tree_allclose(out["b0"], out2["b0"], atol=0)
    # the eager (op-by-op) path agrees with the compiled one
    np.testing.assert_allclose(kernel.laplace(W), out["b0"], rtol=1e-12)


def _moments(k):
    return k(T), k.laplace(W), k.laplace_t(W), k.sq_norm()


_jit_vmap_moments = eqx.filter_jit(eqx.filter_vmap(_moments))


@pytest.mark.parametrize("name", list(KERNELS))
def test_kernel_vmap(name):
    kernel = KERNELS[name].make()
    kernels = [kernel, _perturb(kernel)]
    batched = _jit_vmap_moments(_stack(*kernels))
    for i, k in enumerate(kernels):
        # one by one through the (shared, already compiled) contract program
        single = _jit_kernel_contract(k, _DIAG)
        for b, key in zip(batched, ("values", "b0", "b1", "sq_norm")):
            np.testing.assert_allclose(b[i], single[key], rtol=1e-12, atol=1e-300)


def test_vmap_over_bump_lags_and_powerlaw_exponents():
    # constructing kernels inside vmap: lags and exponents are traced
    lags = jnp.array([0.5, 10.0, 18.0, 100.0])
    b0 = jax.jit(jax.vmap(lambda L: jaxmem.GaussianBump(L, 0.5).laplace(W)))(lags)
    assert b0.shape == (4, 3) and np.all(np.isfinite(np.asarray(b0)))
    for i, L in enumerate(lags):
        np.testing.assert_allclose(
            b0[i], jaxmem.GaussianBump(float(L), 0.5).laplace(W), rtol=1e-12, atol=1e-300
        )
    omegas = jnp.array([0.25, 1.0, 2.5])
    sq = jax.jit(jax.vmap(lambda o: jaxmem.PowerLaw(o).sq_norm()))(omegas)
    np.testing.assert_allclose(sq, 1 / (1 + 2 * omegas), rtol=1e-14)
    # a sweep over lags of the loss and its gradient, as the plateau experiments run it
    model = jaxmem.DiagonalRNN(jnp.zeros(10).at[0].set(1.0), jnp.geomspace(0.5, 4.0, 10))

    def loss(L, m):
        return jaxmem.white_noise_loss(m, jaxmem.ExpSum([1.0], [0.5]) + jaxmem.GaussianBump(L, 0.5))

    losses, grads = jax.jit(jax.vmap(jax.value_and_grad(loss, argnums=1), in_axes=(0, None)))(lags, model)
    assert losses.shape == (4,) and grads.a.shape == (4, 10)
    assert np.all(np.isfinite(np.asarray(grads.a))) and np.all(np.isfinite(np.asarray(grads.v)))


def _model_contract(model, target):
    loss, grad = eqx.filter_value_and_grad(jaxmem.white_noise_loss)(model, target)
    return {"loss": loss, "grad": grad, "kernel": model.kernel(T), "stable": model.is_stable()}


_counted_model_contract = eqx.debug.assert_max_traces(_model_contract, max_traces=None)
_jit_model_contract = eqx.filter_jit(_counted_model_contract)
_jit_vmap_model_contract = eqx.filter_jit(eqx.filter_vmap(_model_contract, in_axes=(eqx.if_array(0), None)))


@pytest.mark.parametrize("name", list(MODELS))
def test_model_contract(name):
    model = MODELS[name]()
    # (the two-input model against exponential sums: the Sylvester path; the quadrature path of
    # dense models is exercised by linear_d1 here and in test_loss)
    base = KERNELS["expsum" if name == "linear_d2" else "canonical_sum"].make()
    target = target_for(model, base)
    contract = _jit_model_contract
    n0 = _traces(_counted_model_contract)
    out = contract(model, target)
    n1 = _traces(_counted_model_contract)
    assert n1 - n0 <= 1
    out2 = contract(_perturb(model), target)
    assert _traces(_counted_model_contract) == n1, "retraced for new values of the same structure"
    d = model.dense()[1].shape[1]
    assert out["kernel"].shape == (T.shape if isinstance(model, jaxmem.DiagonalRNN) else (*T.shape, d))
    assert bool(out["stable"]) and bool(out2["stable"])
    for leaf in jtu.tree_leaves((out, out2)):
        if leaf.dtype != jnp.bool_:
            assert leaf.dtype == jnp.float64
            assert np.all(np.isfinite(np.asarray(leaf))), name
    assert float(out["loss"]) != float(out2["loss"])
    # vmap over a batch of stacked models
    models = [model, _perturb(model), _perturb(model, 0.97)]
    batched = _jit_vmap_model_contract(_stack(*models), target)
    for i, m in enumerate(models):
        single = contract(m, target)
        assert tree_allclose(
            jtu.tree_map(lambda x: x[i], batched["grad"]), single["grad"], rtol=1e-10, atol=1e-14
        )
        np.testing.assert_allclose(batched["loss"][i], single["loss"], rtol=1e-12)


_FLOAT32_SCRIPT = textwrap.dedent(
    """
    import json, warnings
    import jax
    assert not jax.config.jax_enable_x64
    import jax.numpy as jnp
    import jaxmem

    out = {}
    target = jaxmem.ExpSum([1.0], [0.5]) + jaxmem.GaussianBump(18.0, 0.5)
    model = jaxmem.DiagonalRNN(jnp.zeros(10).at[0].set(1.0), jnp.geomspace(0.5, 4.0, 10))
    dense = jaxmem.LinearRNN.init(jax.random.key(0), 3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loss, grad = jax.value_and_grad(jaxmem.white_noise_loss)(model, target)
        out["loss"], out["dtype"] = float(loss), str(loss.dtype)
        out["grad_finite"] = bool(jnp.all(jnp.isfinite(grad.a)) & jnp.all(jnp.isfinite(grad.v)))
        out["powerlaw"] = float(jax.jit(jaxmem.white_noise_loss)(model, jaxmem.PowerLaw(0.5)))
        out["dense"] = float(jaxmem.white_noise_loss(dense, target))
        out["b0"] = float(target.laplace(jnp.float32(0.5)))
    out["warnings"] = [(w.category.__name__, str(w.message)) for w in caught]
    print(json.dumps(out))
    """
)


def test_float32_smoke():
    env = {**os.environ, "JAX_ENABLE_X64": "0", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(
        [sys.executable, "-c", _FLOAT32_SCRIPT], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["dtype"] == "float32"
    # ρ̂ = e^{-t/2} fits the short-memory part exactly: J = ‖bump‖² = sqrt(π)/2
    assert out["loss"] == pytest.approx(0.886226925, rel=1e-4)
    assert out["grad_finite"]
    assert np.isfinite(out["powerlaw"]) and np.isfinite(out["dense"])
    assert out["b0"] == pytest.approx(1.0 + 1.5958e-4, rel=1e-5)
    precision = [m for c, m in out["warnings"] if c == "PrecisionWarning"]
    assert precision, out["warnings"]
    assert "float64" in precision[0] and "jax_enable_x64" in precision[0]
