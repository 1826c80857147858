"""Exponentially damped kernels: exponential memory with a non-exponential shape."""

import jax.numpy as jnp
from jaxtyping import Array, Float

from .._errors import as_float_array, check, check_finite, show
from .._quadrature import integrate
from ._base import AbstractKernel
from ._families import PowerLaw


class Damped(AbstractKernel):
    r"""$\rho(t) = e^{-\beta t}\rho_0(t)$: memory that decays like $e^{-\beta t}$.

    Its moments are the base kernel's, shifted: $b_k(w) = b_{k,0}(w + \beta)$. The squared norm
    $\int e^{-2\beta t}\rho_0^2$ is closed-form for a `PowerLaw` base
    ($\rho_0^2$ is the power law of exponent $1 + 2\omega$) and by quadrature otherwise.
    `Damped(PowerLaw(1.0), beta)` $= e^{-\beta t}(1+t)^{-2}$ is the analytic, completely
    monotone exponential-memory target of `jaxmem approx --kernel exp`: it is not itself a
    finite exponential sum, and it tends to polynomial memory as $\beta \to 0$.

    **Arguments:**

    - `kernel`: the base kernel $\rho_0$.
    - `beta`: the damping rate $\beta > 0$.

    ```python
    import jaxmem
    k = jaxmem.Damped(jaxmem.PowerLaw(1.0), 0.5)
    k(0.0), k.laplace(1.0), k.sq_norm()
    ```
    """

    kernel: AbstractKernel
    beta: Float[Array, ""]

    def __init__(self, kernel, beta):
        if not isinstance(kernel, AbstractKernel):
            raise TypeError(f"Damped needs a kernel; got {kernel!r}.")
        beta = check_finite(as_float_array(beta, "Damped beta", ndim=0), "Damped beta")
        self.beta = check(beta, ~(beta > 0), f"Damped beta must be > 0; got {show(beta)}.")
        self.kernel = kernel

    def __call__(self, t):
        t = jnp.asarray(t)
        return jnp.exp(-self.beta * t) * self.kernel(t)

    def laplace(self, w):
        return self.kernel.laplace(jnp.asarray(w) + self.beta)

    def laplace_t(self, w):
        return self.kernel.laplace_t(jnp.asarray(w) + self.beta)

    def sq_norm(self):
        k = self.kernel
        if isinstance(k, PowerLaw):
            return PowerLaw(1.0 + 2.0 * k.omega, k.scale).laplace(2.0 * self.beta)
        return integrate(lambda t: self(t) ** 2, self.horizon())

    def horizon(self):
        return jnp.minimum(self.kernel.horizon(), 40.0 / self.beta)
