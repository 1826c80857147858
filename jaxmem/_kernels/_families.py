"""Closed-form kernel families: exponential sums, power laws and Gaussian bumps."""

import math

import jax.numpy as jnp
from jaxtyping import Array, Float

from .._errors import as_float_array, check, check_finite, is_traced, show
from .._special import log_gauss_tail_moment, log_ndtr, scaled_expn
from ._base import AbstractKernel

# math, not jnp: a jnp constant is float32 when jaxmem is imported before x64 is enabled.
_SQRT_2PI = math.sqrt(2 * math.pi)


def _pos(w, name="w"):
    # Checked on concrete input only: inside solvers (implicit stages, root finders) trial
    # rates may leave the domain, and a NaN there makes the solver reject the step, whereas
    # an error would kill the solve. Public entry points check the model's rates themselves.
    w = jnp.asarray(w, dtype=jnp.result_type(w, float))
    if is_traced(w):
        return w
    return check(w, ~(w > 0), f"{name} must be > 0 (a decay rate); got {show(w)}.")


class ExpSum(AbstractKernel):
    r"""An exponential sum $\rho(t) = \sum_k \beta_k e^{-\lambda_k t}$ (finite, short memory).

    **Arguments:**

    - `coeffs`: the $\beta_k$, shape `(K,)`.
    - `rates`: the $\lambda_k > 0$, shape `(K,)`.

    ```python
    import jaxmem
    k = jaxmem.ExpSum([1.0], [0.5])      # e^{-t/2}
    k.laplace(0.5), k.sq_norm()          # 1.0, 1.0
    ```
    """

    coeffs: Float[Array, " K"]
    rates: Float[Array, " K"]

    def __init__(self, coeffs, rates):
        self.coeffs = check_finite(as_float_array(coeffs, "ExpSum coeffs", ndim=1), "ExpSum coeffs")
        rates = check_finite(as_float_array(rates, "ExpSum rates", ndim=1), "ExpSum rates")
        if self.coeffs.shape != rates.shape:
            raise ValueError(
                f"ExpSum coeffs and rates must have the same shape; got {self.coeffs.shape} "
                f"and {rates.shape}."
            )
        self.rates = check(rates, ~(rates > 0), f"ExpSum rates must be > 0; got {show(rates)}.")

    def __call__(self, t):
        t = jnp.asarray(t)
        return jnp.sum(self.coeffs * jnp.exp(-self.rates * t[..., None]), axis=-1)

    def laplace(self, w):
        w = jnp.asarray(w)
        return jnp.sum(self.coeffs / (w[..., None] + self.rates), axis=-1)

    def laplace_t(self, w):
        w = jnp.asarray(w)
        return jnp.sum(self.coeffs / (w[..., None] + self.rates) ** 2, axis=-1)

    def sq_norm(self):
        gram = 1.0 / (self.rates[:, None] + self.rates[None, :])
        return self.coeffs @ gram @ self.coeffs

    def horizon(self):
        return 40.0 / jnp.min(self.rates)

    def _inner(self, other):
        return jnp.sum(self.coeffs * other.laplace(self.rates))


class PowerLaw(AbstractKernel):
    r"""Polynomial memory $\rho(t) = (1 + t/s)^{-(1+\omega)}$, $\omega > 0$.

    Laplace moments through the generalised exponential integral,
    $b_0(w) = s\,e^{ws}E_{1+\omega}(ws)$ and $b_1(w) = s^2 e^{ws}[E_\omega(ws) - E_{1+\omega}(ws)]$;
    $\|\rho\|_{L^2}^2 = s/(1+2\omega)$ and $\|\rho\|_{L^1} = s/\omega$.

    **Arguments:**

    - `omega`: the decay exponent $\omega > 0$ (smaller means longer memory), at most 60.
    - `scale`: the time scale $s > 0$.

    ```python
    import jaxmem
    k = jaxmem.PowerLaw(0.5)
    k.sq_norm(), k.l1_norm()             # 0.5, 2.0
    ```
    """

    omega: Float[Array, ""]
    scale: Float[Array, ""]

    def __init__(self, omega, scale=1.0):
        omega = check_finite(as_float_array(omega, "PowerLaw omega", ndim=0), "PowerLaw omega")
        self.omega = check(
            omega, ~((omega > 0) & (omega <= 60)), f"PowerLaw omega must be in (0, 60]; got {show(omega)}."
        )
        scale = check_finite(as_float_array(scale, "PowerLaw scale", ndim=0), "PowerLaw scale")
        self.scale = check(scale, ~(scale > 0), f"PowerLaw scale must be > 0; got {show(scale)}.")

    def __call__(self, t):
        return (1.0 + jnp.asarray(t) / self.scale) ** (-(1.0 + self.omega))

    def laplace(self, w):
        z = _pos(w) * self.scale
        return self.scale * scaled_expn(1.0 + self.omega, z)

    def laplace_t(self, w):
        z = _pos(w) * self.scale
        return self.scale**2 * (scaled_expn(self.omega, z) - scaled_expn(1.0 + self.omega, z))

    def sq_norm(self):
        return self.scale / (1.0 + 2.0 * self.omega)

    def l1_norm(self):
        return self.scale / self.omega

    def horizon(self):
        return 50.0 * self.scale


class GaussianBump(AbstractKernel):
    r"""A bump of memory at lag $L$: $\rho(t) = A\exp(-(t-L)^2/(2\sigma^2))$ on $t \geq 0$.

    With $\mu = L - \sigma^2 w$ and $r = \mu/\sigma$,
    $b_0 = A\sigma\sqrt{2\pi}\exp(-wL + \sigma^2w^2/2)\,\Phi(r)$ and
    $b_1 = A\sigma^2\sqrt{2\pi}\exp(-wL + \sigma^2w^2/2)\,(\varphi(r) + r\Phi(r))$, both evaluated
    in log space so that they stay finite and accurate for lags and rates up to the hundreds
    (the naive $\exp(\cdot)\,\mathrm{erfc}(\cdot)$ is $\infty\cdot 0$ there).

    **Arguments:**

    - `lag`: the centre $L$ of the bump (the memory length; $\omega = 1/L$ in the paper).
    - `width`: $\sigma > 0$.
    - `amplitude`: $A$.

    ```python
    import jaxmem
    k = jaxmem.GaussianBump(lag=18.0, width=0.5)
    k.laplace(0.5)                        # ~ 1.6e-4: the bump is felt as e^{-wL}
    ```
    """

    lag: Float[Array, ""]
    width: Float[Array, ""]
    amplitude: Float[Array, ""]

    def __init__(self, lag, width, amplitude=1.0):
        self.lag = check_finite(as_float_array(lag, "GaussianBump lag", ndim=0), "GaussianBump lag")
        width = check_finite(as_float_array(width, "GaussianBump width", ndim=0), "GaussianBump width")
        self.width = check(width, ~(width > 0), f"GaussianBump width must be > 0; got {show(width)}.")
        self.amplitude = check_finite(
            as_float_array(amplitude, "GaussianBump amplitude", ndim=0), "GaussianBump amplitude"
        )

    def __call__(self, t):
        t = jnp.asarray(t)
        return self.amplitude * jnp.exp(-((t - self.lag) ** 2) / (2 * self.width**2))

    def _log_common(self, w):
        w = _pos(w)
        s, L = self.width, self.lag
        r = (L - s**2 * w) / s
        return -w * L + 0.5 * (s * w) ** 2, r

    def laplace(self, w):
        e, r = self._log_common(w)
        return self.amplitude * self.width * _SQRT_2PI * jnp.exp(e + log_ndtr(r))

    def laplace_t(self, w):
        e, r = self._log_common(w)
        return self.amplitude * self.width**2 * _SQRT_2PI * jnp.exp(e + log_gauss_tail_moment(r))

    def sq_norm(self):
        s = self.width
        return self.amplitude**2 * s * jnp.sqrt(jnp.pi) * jnp.exp(log_ndtr(jnp.sqrt(2.0) * self.lag / s))

    def horizon(self):
        return jnp.maximum(self.lag, 0.0) + 40.0 * self.width

    def _inner(self, other):
        if not isinstance(other, GaussianBump):
            return None
        s1, s2 = self.width, other.width
        p = 1 / s1**2 + 1 / s2**2
        m = (self.lag / s1**2 + other.lag / s2**2) / p
        log_c = -((self.lag - other.lag) ** 2) / (2 * (s1**2 + s2**2))
        return (
            self.amplitude
            * other.amplitude
            * jnp.sqrt(2 * jnp.pi / p)
            * jnp.exp(log_c + log_ndtr(m * jnp.sqrt(p)))
        )
