"""The kernel interface, sums and scalings of kernels, and inner products between kernels."""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._errors import as_float_array, check_finite
from .._quadrature import integrate


class AbstractKernel(eqx.Module):
    r"""A memory kernel $\rho : [0, \infty) \to \mathbb{R}$ of a linear functional target.

    The target is $H_t(x) = \int_0^\infty x_{t-s}\,\rho(s)\,ds$; its norm is $\|\rho\|_{L^1}$
    and its white-noise risk against a model is the $L^2$ distance of the kernels.

    Subclasses implement `__call__` (values), `laplace` ($b_0(w) = \int e^{-wt}\rho$),
    `laplace_t` ($b_1(w) = \int t e^{-wt}\rho$), `sq_norm` ($\int \rho^2$) and `horizon` (a
    time past which the kernel is negligible or in its tail; used by fallback quadrature).
    """

    @abc.abstractmethod
    def __call__(self, t: ArrayLike) -> Float[Array, "..."]:
        """Kernel values $\\rho(t)$ at an array of times $t \\geq 0$."""

    @abc.abstractmethod
    def laplace(self, w: ArrayLike) -> Float[Array, "..."]:
        r"""$b_0(w) = \int_0^\infty e^{-wt}\rho(t)\,dt$, elementwise in `w` (`w > 0`)."""

    @abc.abstractmethod
    def laplace_t(self, w: ArrayLike) -> Float[Array, "..."]:
        r"""$b_1(w) = \int_0^\infty t\,e^{-wt}\rho(t)\,dt = -b_0'(w)$, elementwise in `w`."""

    @abc.abstractmethod
    def sq_norm(self) -> Float[Array, ""]:
        r"""$\|\rho\|_{L^2}^2 = \int_0^\infty \rho(t)^2\,dt$."""

    @abc.abstractmethod
    def horizon(self) -> Float[Array, ""]:
        """A time scale covering the kernel's bulk, for quadrature rules."""

    def l1_norm(self) -> Float[Array, ""]:
        r"""$\|\rho\|_{L^1}$, the operator norm of the target (graded quadrature)."""
        return integrate(lambda t: jnp.abs(self(t)), self.horizon())

    def __add__(self, other):
        if not isinstance(other, AbstractKernel):
            return NotImplemented
        return SumKernel((*_terms(self), *_terms(other)))

    def __mul__(self, factor):
        if isinstance(factor, AbstractKernel):
            return NotImplemented
        return ScaledKernel(factor, self)

    __rmul__ = __mul__

    def __neg__(self):
        return ScaledKernel(-1.0, self)

    def __sub__(self, other):
        if not isinstance(other, AbstractKernel):
            return NotImplemented
        return self + (-other)


def _terms(k):
    return k.terms if isinstance(k, SumKernel) else (k,)


class SumKernel(AbstractKernel):
    """$\\rho = \\sum_k \\rho_k$; made by `k1 + k2`."""

    terms: tuple[AbstractKernel, ...]

    def __init__(self, terms):
        terms = tuple(terms)
        if len(terms) == 0 or not all(isinstance(k, AbstractKernel) for k in terms):
            raise TypeError(f"SumKernel needs a non-empty sequence of kernels; got {terms!r}.")
        self.terms = terms

    def __call__(self, t):
        return sum(k(t) for k in self.terms)

    def laplace(self, w):
        return sum(k.laplace(w) for k in self.terms)

    def laplace_t(self, w):
        return sum(k.laplace_t(w) for k in self.terms)

    def sq_norm(self):
        total = 0.0
        for i, ki in enumerate(self.terms):
            total = total + ki.sq_norm()
            for kj in self.terms[i + 1 :]:
                total = total + 2 * inner(ki, kj)
        return total

    def horizon(self):
        return jnp.max(jnp.stack([k.horizon() for k in self.terms]))


class ScaledKernel(AbstractKernel):
    """$\\rho = c\\,\\rho_0$; made by `c * k`."""

    factor: Float[Array, ""]
    kernel: AbstractKernel

    def __init__(self, factor, kernel):
        if not isinstance(kernel, AbstractKernel):
            raise TypeError(f"ScaledKernel needs a kernel; got {kernel!r}.")
        factor = as_float_array(factor, "a kernel's scale factor")
        if factor.ndim != 0:
            raise ValueError(f"a kernel can only be scaled by a scalar; got shape {factor.shape}.")
        self.factor = check_finite(factor, "a kernel's scale factor")
        self.kernel = kernel

    def __call__(self, t):
        return self.factor * self.kernel(t)

    def laplace(self, w):
        return self.factor * self.kernel.laplace(w)

    def laplace_t(self, w):
        return self.factor * self.kernel.laplace_t(w)

    def sq_norm(self):
        return self.factor**2 * self.kernel.sq_norm()

    def l1_norm(self):
        # |c| ‖ρ₀‖₁ keeps the wrapped kernel's closed form (PowerLaw: s/ω) instead of falling
        # back to the generic graded quadrature of |cρ₀| (only ~1e-5 accurate for slow tails).
        return jnp.abs(self.factor) * self.kernel.l1_norm()

    def horizon(self):
        return self.kernel.horizon()


def inner(k1: AbstractKernel, k2: AbstractKernel) -> Float[Array, ""]:
    r"""$\int_0^\infty \rho_1(t)\rho_2(t)\,dt$: closed forms where the pair has one, else quadrature."""
    if k1 is k2:
        return k1.sq_norm()
    if isinstance(k1, ScaledKernel):
        return k1.factor * inner(k1.kernel, k2)
    if isinstance(k2, ScaledKernel):
        return k2.factor * inner(k1, k2.kernel)
    if isinstance(k1, SumKernel):
        return sum(inner(k, k2) for k in k1.terms)
    if isinstance(k2, SumKernel):
        return sum(inner(k1, k) for k in k2.terms)
    pair = getattr(k1, "_inner", None)
    if pair is not None:
        out = pair(k2)
        if out is not None:
            return out
    pair = getattr(k2, "_inner", None)
    if pair is not None:
        out = pair(k1)
        if out is not None:
            return out
    horizon = jnp.maximum(k1.horizon(), k2.horizon())
    return integrate(lambda t: k1(t) * k2(t), horizon)


@jax.custom_jvp
def laplace_moments(kernel: AbstractKernel, w):
    r"""$(b_0(w), b_1(w))$ with the exact derivative $\partial_w b_0 = -b_1$.

    Differentiating $b_0$'s closed form directly cancels badly for far bumps and large rates;
    this supplies the closed-form first moment instead, and keeps derivatives
    in the kernel's own parameters.
    """
    return kernel.laplace(w), kernel.laplace_t(w)


def _is_symbolic_zero(x):
    return isinstance(x, jax.custom_derivatives.SymbolicZero)


def _instantiate(x):
    return np.zeros(x.shape, x.dtype) if _is_symbolic_zero(x) else x


def _laplace_moments_jvp(primals, tangents):
    # Symbolic zeros: a gradient in the model's rates only (training) must not push tangents
    # through the kernel's own parameters, e.g. the incomplete-gamma derivative in a PowerLaw's
    # exponent, which would be computed and multiplied by zero (and compiled) at every step.
    kernel, w = primals
    dkernel, dw = tangents
    kernel_moves = not all(_is_symbolic_zero(t) for t in jax.tree.leaves(dkernel, is_leaf=_is_symbolic_zero))
    w_moves = not _is_symbolic_zero(dw)
    dkernel = jax.tree.map(_instantiate, dkernel, is_leaf=_is_symbolic_zero)
    if kernel_moves:
        b0, db0 = jax.jvp(lambda k: k.laplace(w), (kernel,), (dkernel,))
    else:
        b0 = kernel.laplace(w)
        db0 = jnp.zeros_like(b0)
    if kernel_moves and w_moves:
        b1, db1 = jax.jvp(lambda k, v: k.laplace_t(v), (kernel, w), (dkernel, dw))
    elif kernel_moves:
        b1, db1 = jax.jvp(lambda k: k.laplace_t(w), (kernel,), (dkernel,))
    elif w_moves:
        b1, db1 = jax.jvp(lambda v: kernel.laplace_t(v), (w,), (dw,))
    else:
        b1 = kernel.laplace_t(w)
        db1 = jnp.zeros_like(b1)
    if w_moves:
        db0 = db0 - b1 * dw
    return (b0, b1), (db0, db1)


laplace_moments.defjvp(_laplace_moments_jvp, symbolic_zeros=True)
