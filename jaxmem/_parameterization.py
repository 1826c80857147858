"""Reparameterisations w = f(v) > 0 of the decay rates of a diagonal linear RNN.

Each is an option, never a silent default: they change the gradient flow (StableSSM,
Wang & Li 2023). `f` maps the stored parameter to the rate, `inverse` maps a rate back.
"""

import abc

import equinox as eqx
import jax.numpy as jnp

from ._errors import check, show


class AbstractParameterization(eqx.Module):
    """A map `w = f(v)` from an unconstrained stored parameter `v` to a decay rate `w`."""

    name: eqx.AbstractClassVar[str]

    @abc.abstractmethod
    def __call__(self, v):
        """The rates `w = f(v)`."""

    @abc.abstractmethod
    def inverse(self, w):
        """A parameter `v` with `f(v) = w` (raises if `w` is out of range)."""


class IdentityParameterization(AbstractParameterization):
    """`w = v`: the rates themselves; positivity is checked, not enforced."""

    name = "identity"

    def __call__(self, v):
        return v

    def inverse(self, w):
        return check(w, ~(w > 0), f"rates must be > 0 for the identity parameterization; got {show(w)}.")


class ExpParameterization(AbstractParameterization):
    """`w = exp(v)`."""

    name = "exp"

    def __call__(self, v):
        return jnp.exp(v)

    def inverse(self, w):
        w = check(w, ~(w > 0), f"rates must be > 0; got {show(w)}.")
        return jnp.log(w)


class SoftplusParameterization(AbstractParameterization):
    """`w = log(1 + exp(v))`."""

    name = "softplus"

    def __call__(self, v):
        return jnp.logaddexp(v, 0.0)

    def inverse(self, w):
        w = check(w, ~(w > 0), f"rates must be > 0; got {show(w)}.")
        return w + jnp.log(-jnp.expm1(-w))


class BestParameterization(AbstractParameterization):
    r"""StableSSM's "best" reparameterisation `w = 1/(v² + b)`, rates in (0, 1/b].

    It makes the gradient scale of a rate proportional to the square of the rate, which is
    what removes the exponential sensitivity of the plain parameterisation.
    """

    b: float = eqx.field(static=True, default=0.1)
    name = "best"

    def __check_init__(self):
        if not self.b > 0:
            raise ValueError(f"Best reparameterization needs b > 0; got {self.b}.")

    def __call__(self, v):
        return 1.0 / (v**2 + self.b)

    def inverse(self, w):
        w = check(
            w,
            ~((w > 0) & (w <= 1.0 / self.b)),  # v = 0 gives w = 1/b exactly
            f"rates must lie in (0, 1/b] = (0, {1.0 / self.b:g}] for the 'best' "
            f"reparameterization with b = {self.b:g}; got {show(w)}.",
        )
        return jnp.sqrt(1.0 / w - self.b)


PARAMETERIZATIONS = {
    "identity": IdentityParameterization,
    "exp": ExpParameterization,
    "softplus": SoftplusParameterization,
    "best": BestParameterization,
}

# The short names, kept as aliases.
Identity, Exp, Softplus, Best = (
    IdentityParameterization, ExpParameterization, SoftplusParameterization, BestParameterization,
)


def get_parameterization(p) -> AbstractParameterization:
    """A parameterization from its name (`identity`, `exp`, `softplus`, `best`) or instance."""
    if isinstance(p, AbstractParameterization):
        return p
    if isinstance(p, str) and p in PARAMETERIZATIONS:
        return PARAMETERIZATIONS[p]()
    raise ValueError(f"unknown parameterization {p!r}; expected one of {sorted(PARAMETERIZATIONS)}.")
