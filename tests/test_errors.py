"""Bad input gets a clear error naming the value and what was expected, eagerly and under jit."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmem

ONES = jnp.ones(2)
TARGET = jaxmem.ExpSum([1.0], [1.0])


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        # unstable W: names the largest real part and the eigenvalues
        (
            lambda: jaxmem.LinearRNN(jnp.array([[0.1, 0.0], [0.0, -1.0]]), jnp.ones((2, 1)), ONES),
            ValueError,
            r"Hurwitz.*largest real part is 0\.1",
        ),
        (
            lambda: jaxmem.LinearRNN(jnp.array([[0.0, 1.0], [-1.0, 0.0]]), jnp.ones((2, 1)), ONES),
            ValueError,
            "Hurwitz",
        ),
        # non-positive rates
        (lambda: jaxmem.DiagonalRNN(ONES, jnp.array([0.5, -1.0])), ValueError, r"rates w must be > 0.*-1\."),
        (lambda: jaxmem.DiagonalRNN(ONES, jnp.array([0.5, 0.0])), ValueError, r"rates w must be > 0.*0\."),
        (
            lambda: jaxmem.DiagonalRNN(ONES, jnp.array([0.5, -1.0]), parameterization="exp"),
            ValueError,
            r"> 0.*-1\.",
        ),
        (lambda: jaxmem.ExpSum([1.0], [-0.5]), ValueError, r"ExpSum rates must be > 0; got \[-0\.5\]"),
        # (on concrete rates; traced trial rates inside solvers are deliberately unchecked)
        (lambda: jaxmem.PowerLaw(1.0).laplace(-1.0), ValueError, r"w must be > 0.*-1"),
        (
            lambda: jaxmem.GaussianBump(1.0, 0.5).laplace(jnp.array([1.0, 0.0])),
            ValueError,
            r"w must be > 0.*0\.",
        ),
        (
            lambda: jaxmem.DiagonalRNN(ONES, jnp.array([1.0, 20.0]), parameterization="best"),
            ValueError,
            r"\(0, 1/b\] = \(0, 10\].*b = 0\.1.*20",
        ),
        # omega <= 0 (and the documented upper limit)
        (lambda: jaxmem.PowerLaw(0.0), ValueError, r"omega must be in \(0, 60\]; got 0"),
        (lambda: jaxmem.PowerLaw(-1.0), ValueError, r"omega must be in \(0, 60\]; got -1"),
        (lambda: jaxmem.PowerLaw(61.0), ValueError, r"omega.*61"),
        (lambda: jaxmem.PowerLaw(1.0, scale=0.0), ValueError, r"scale must be > 0; got 0"),
        # widths
        (lambda: jaxmem.GaussianBump(1.0, 0.0), ValueError, r"width must be > 0; got 0"),
        (
            lambda: jaxmem.DiagonalRNN.init(jax.random.key(0), -1),
            ValueError,
            r"width must be a positive integer; got -1",
        ),
        (
            lambda: jaxmem.LinearRNN.init(jax.random.key(0), 0),
            ValueError,
            r"width must be a positive integer; got 0",
        ),
        (
            lambda: jaxmem.DiagonalRNN(jnp.ones(3), jnp.ones(3)).pad(2),
            ValueError,
            r"width-3 .* smaller width 2",
        ),
        # non-finite parameters
        (
            lambda: jaxmem.DiagonalRNN(jnp.array([jnp.nan, 1.0]), ONES),
            ValueError,
            r"DiagonalRNN a must be finite; got \[nan",
        ),
        (
            lambda: jaxmem.DiagonalRNN(ONES, jnp.array([1.0, jnp.inf])),
            ValueError,
            r"w must be finite; got \[ *1\. +inf\]",
        ),
        (lambda: jaxmem.GaussianBump(jnp.inf, 0.5), ValueError, r"lag must be finite; got inf"),
        (lambda: jaxmem.ExpSum([jnp.nan], [1.0]), ValueError, r"coeffs must be finite; got \[nan\]"),
        (lambda: jaxmem.PowerLaw(jnp.nan), ValueError, r"omega must be finite; got nan"),
        (
            lambda: jaxmem.LinearRNN(-jnp.eye(2), jnp.ones((2, 1)), jnp.array([1.0, jnp.nan])),
            ValueError,
            r"c must be finite",
        ),
        (lambda: jaxmem.GridKernel([0.0, 1.0], [1.0, jnp.nan]), ValueError, r"values must be finite"),
        (lambda: jaxmem.Airy(shift=jnp.inf), ValueError, r"shift must be finite and >= 0; got inf"),
        # mismatched shapes
        (lambda: jaxmem.DiagonalRNN(ONES, jnp.ones(3)), ValueError, r"same shape.*\(2,\) and \(3,\)"),
        (
            lambda: jaxmem.DiagonalRNN(ONES, ONES, mask=jnp.ones(3)),
            ValueError,
            r"mask must have shape \(2,\); got \(3,\)",
        ),
        (lambda: jaxmem.ExpSum([1.0, 2.0], [1.0]), ValueError, r"same shape; got \(2,\) and \(1,\)"),
        (lambda: jaxmem.LinearRNN(-jnp.eye(2), jnp.ones((3, 1)), ONES), ValueError, r"U \(3, 1\)"),
        (lambda: jaxmem.LinearRNN(-jnp.eye(2), jnp.ones((2, 1)), jnp.ones(3)), ValueError, r"c \(3,\)"),
        (
            lambda: jaxmem.GridKernel([0.0, 1.0, 2.0], [1.0, 2.0]),
            ValueError,
            r"same shape.*\(3,\) and \(2,\)",
        ),
        (lambda: jaxmem.GaussianBump(jnp.ones(2), 0.5), ValueError, r"lag must have 0 dimension"),
        (
            lambda: jaxmem.DiagonalRNN(jnp.ones((2, 2)), jnp.ones((2, 2))),
            ValueError,
            r"a must have 1 dimension",
        ),
        (lambda: jnp.ones(2) * jaxmem.PowerLaw(1.0), ValueError, r"scaled by a scalar; got shape \(2,\)"),
        (
            lambda: jaxmem.white_noise_loss(jaxmem.LinearRNN.init(jax.random.key(0), 2, 2), TARGET),
            ValueError,
            r"d = 2 inputs needs d target kernels",
        ),
        # non-increasing grids
        (
            lambda: jaxmem.GridKernel([0.0, 1.0, 1.0], [1.0, 2.0, 3.0]),
            ValueError,
            r"strictly increasing; got \[0\. 1\. 1\.\]",
        ),
        (lambda: jaxmem.GridKernel([0.0, 2.0, 1.0], [1.0, 2.0, 3.0]), ValueError, r"strictly increasing"),
        (
            lambda: jaxmem.GridKernel([-1.0, 1.0], [1.0, 2.0]),
            ValueError,
            r">= 0 and strictly increasing; got \[-1\.",
        ),
        # unknown parameterization, wrong types
        (
            lambda: jaxmem.DiagonalRNN(ONES, ONES, parameterization="tanh"),
            ValueError,
            r"unknown parameterization 'tanh'; expected one of \['best', 'exp', 'identity', 'softplus'\]",
        ),
        (lambda: jaxmem.Best(b=0.0), ValueError, r"b > 0; got 0"),
        (
            lambda: jaxmem.DiagonalRNN("abc", ONES),
            TypeError,
            r"a must be an array of real numbers; got 'abc'",
        ),
        (
            lambda: jaxmem.DiagonalRNN(ONES),
            TypeError,
            r"exactly one of the rates `w` or the stored parameter `v`",
        ),
        (
            lambda: jaxmem.white_noise_loss(jaxmem.DiagonalRNN(jnp.ones(1), jnp.ones(1)), 3.0),
            TypeError,
            r"target must be a kernel.*got 3\.0",
        ),
        # (under the test suite's jaxtyping/beartype hook the annotation rejects it first)
        (
            lambda: jaxmem.white_noise_loss("model", TARGET),
            TypeError,
            r"DiagonalRNN or LinearRNN; got str|AbstractRNN",
        ),
        (lambda: jaxmem.SumKernel([]), TypeError, r"non-empty sequence of kernels"),
        (lambda: jaxmem.ScaledKernel(2.0, 3.0), TypeError, r"needs a kernel; got 3\.0"),
        (
            lambda: jax.jit(lambda s: jaxmem.Airy(shift=s).sq_norm())(1.0),
            TypeError,
            r"concrete Python numbers",
        ),
    ],
)
def test_bad_input_raises_a_clear_error(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_kernel_arithmetic_with_non_kernels():
    with pytest.raises(TypeError):
        jaxmem.PowerLaw(1.0) + 1.0
    with pytest.raises(TypeError):
        jaxmem.PowerLaw(1.0) * jaxmem.PowerLaw(2.0)


# --- Under jit: the checks are compiled in (eqx.error_if) -------------------------------------

_UNDER_JIT = [
    (
        "negative rates",
        lambda w: jaxmem.white_noise_loss(jaxmem.DiagonalRNN(ONES, w), TARGET),
        jnp.array([0.5, -1.0]),
        "DiagonalRNN rates w must be > 0",
    ),
    (
        "omega <= 0",
        lambda o: jaxmem.PowerLaw(o).sq_norm(),
        jnp.array(-1.0),
        r"PowerLaw omega must be in \(0, 60\]",
    ),
    (
        "non-finite coefficients",
        lambda a: jaxmem.white_noise_loss(jaxmem.DiagonalRNN(a, ONES), TARGET),
        jnp.array([jnp.nan, 1.0]),
        "DiagonalRNN a must be finite",
    ),
    (
        "unstable W",
        lambda W: jaxmem.white_noise_loss(jaxmem.LinearRNN(W, jnp.ones((2, 1)), ONES), TARGET),
        jnp.array([[0.1, 0.0], [0.0, -1.0]]),
        "LinearRNN W must be Hurwitz",
    ),
    (
        "non-increasing grid",
        lambda ts: jaxmem.GridKernel(ts, jnp.ones(3)).sq_norm(),
        jnp.array([0.0, 2.0, 1.0]),
        "GridKernel ts must be >= 0 and strictly increasing",
    ),
    (
        "lag <= 0",
        lambda lag: jaxmem.plateau_target(lag).sq_norm(),
        jnp.array(-8.0),
        r"plateau_target lag must be finite and > 0",
    ),
    (
        "a model edited into instability",
        # the stored v of an identity-parameterised model bypasses the constructor's check
        lambda v: jaxmem.white_noise_loss(jaxmem.DiagonalRNN(ONES, v=v), TARGET),
        jnp.array([0.5, -1.0]),
        "DiagonalRNN rates must be > 0",
    ),
]


@pytest.mark.parametrize(("label", "fn", "bad", "match"), _UNDER_JIT, ids=[c[0] for c in _UNDER_JIT])
def test_checks_fire_under_filter_jit(label, fn, bad, match):
    with pytest.raises(eqx.EquinoxRuntimeError, match=match):
        jax.block_until_ready(eqx.filter_jit(fn)(bad))


@pytest.mark.parametrize(("label", "fn", "bad", "match"), _UNDER_JIT[:3], ids=[c[0] for c in _UNDER_JIT[:3]])
def test_checks_fire_under_jax_jit(label, fn, bad, match):
    # plain jax.jit surfaces the same message inside an XLA runtime error
    with pytest.raises(Exception, match=match) as info:
        jax.block_until_ready(jax.jit(fn)(bad))
    assert "Runtime" in type(info.value).__name__


def test_checks_fire_under_vmap():
    with pytest.raises(eqx.EquinoxRuntimeError, match="GaussianBump width must be > 0"):
        jax.vmap(lambda s: jaxmem.GaussianBump(1.0, s).sq_norm())(jnp.array([0.5, -1.0]))


def test_good_input_under_jit_passes_the_checks():
    # the compiled-in checks cost nothing on valid input and do not change results
    fn = eqx.filter_jit(lambda w: jaxmem.white_noise_loss(jaxmem.DiagonalRNN(ONES, w), TARGET))
    w = jnp.array([0.5, 2.0])
    assert float(fn(w)) == pytest.approx(
        float(jaxmem.white_noise_loss(jaxmem.DiagonalRNN(ONES, w), TARGET)), rel=1e-15, abs=0
    )
    assert np.isfinite(float(fn(w)))


def test_values_in_messages_read_as_written():
    from jaxmem._errors import show

    assert show(0.05) == "0.05" and show(-1.0) == "-1.0" and show(1e-10) == "1e-10"
    assert show(jnp.asarray(-8.0)) == "-8.0" and show(float("nan")) == "nan" and show(3) == "3"
    assert show([0.0, -0.01]) == "[0.0, -0.01]"
    assert show(jnp.array([0.5, -1.0])) == "[ 0.5 -1. ]"
    assert show(jnp.arange(10.0)) == "an array of shape (10,) (min 0, max 9)"


def test_under_plain_jax_jit_the_message_is_in_the_error():
    # Under plain `jax.jit` XLA wraps the check's error ("INTERNAL: CpuCallback error ...") and
    # the message ends its traceback; under `equinox.filter_jit` it is the line naming
    # `equinox.EquinoxRuntimeError` (jaxmem/_errors.py: neither is the library's to change).
    fn = lambda w: jaxmem.white_noise_loss(jaxmem.DiagonalRNN(ONES, w), TARGET)
    with pytest.raises(Exception, match="DiagonalRNN rates w must be > 0") as info:
        jax.block_until_ready(jax.jit(fn)(jnp.array([1.0, -1.0])))
    assert "Runtime" in type(info.value).__name__
    with pytest.raises(eqx.EquinoxRuntimeError) as info:
        jax.block_until_ready(eqx.filter_jit(fn)(jnp.array([1.0, -1.0])))
    assert "DiagonalRNN rates w must be > 0" in str(info.value)
