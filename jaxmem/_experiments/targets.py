"""The named targets of the command line (`jaxmem data`, and the training drivers): one
registry of names, parameters, defaults and descriptions.

The kernel families mean what they mean in `jaxmem approx`: `exp` is `Damped(PowerLaw(1), β)`,
`powerlaw` is `PowerLaw(ω)`, `bump` is `GaussianBump(1/ω, 0.5)` and `airy` is `Airy(6, s)`;
`plateau` is `plateau_target(L)`, and `lorenz96` the nonlinear `Lorenz96(dim, forcing)`.
"""

import dataclasses
import math
from collections.abc import Callable

from .._data import Lorenz96
from .._errors import is_integer, is_real
from .._kernels import Airy, Damped, GaussianBump, PowerLaw
from .._presets import plateau_target


@dataclasses.dataclass(frozen=True)
class TargetSpec:
    """A named target: its parameters with their defaults, a builder and a description."""

    name: str
    defaults: dict
    build: Callable
    description: str
    integer_params: tuple = ()
    #: Parameters without a default, passed only when given (e.g. Lorenz-96's `allow_unstable`).
    flags: tuple = ()


TARGETS = {
    "exp": TargetSpec("exp", {"beta": 0.5}, lambda beta: Damped(PowerLaw(1.0), beta),
                      "exponential memory e^(-beta t) (1+t)^-2 = Damped(PowerLaw(1), beta), beta = {beta:g}"),
    "powerlaw": TargetSpec("powerlaw", {"omega": 0.5}, lambda omega: PowerLaw(omega),
                           "polynomial memory (1+t)^-(1+omega) = PowerLaw(omega), omega = {omega:g}"),
    "bump": TargetSpec("bump", {"omega": 0.1}, lambda omega: GaussianBump(1.0 / omega, 0.5),
                       "a Gaussian bump of width 0.5 and height 1 at lag 1/omega = GaussianBump(1/omega, 0.5), "
                       "omega = {omega:g}"),
    "airy": TargetSpec("airy", {"scale": 1.0}, lambda scale: Airy(6.0, float(scale)),
                       "Airy memory Ai(s (t - 6)) = Airy(6, s), s = {scale:g}"),
    "plateau": TargetSpec("plateau", {"lag": 10.0}, lambda lag: plateau_target(lag),
                          "the plateau target e^(-t/2) + a Gaussian bump of width 0.5 at lag L = "
                          "plateau_target(L), L = {lag:g}"),
    "lorenz96": TargetSpec("lorenz96", {"dim": 8, "forcing": 0.5},
                           lambda dim, forcing, allow_unstable=0: Lorenz96(dim, forcing,
                                                                            allow_unstable=bool(allow_unstable)),
                           "the forced Lorenz-96 ring, input into z_0, output z_(K/2) - F = Lorenz96(K, F), "
                           "K = {dim}, F = {forcing:g}", integer_params=("dim", "allow_unstable"), flags=("allow_unstable",)),
}
#: The names of the targets, in the order of the command line's choices.
TARGET_NAMES = tuple(TARGETS)


def _spec(kind) -> TargetSpec:
    if not isinstance(kind, str) or kind not in TARGETS:
        raise ValueError(f"unknown target {kind!r}; expected one of {TARGET_NAMES}.")
    return TARGETS[kind]


def target_params(kind: str, **params) -> dict:
    """The complete parameters of target `kind`: `params` over the defaults, each checked to be
    a number (an integer where the target needs one). A name the target does not take, or
    `None`, is an error."""
    spec = _spec(kind)
    unknown = sorted(set(params) - set(spec.defaults) - set(spec.flags))
    if unknown:
        raise ValueError(f"target {kind!r} takes no parameter {unknown[0]!r} (its parameters: "
                         f"{', '.join(spec.defaults)}).")
    out = dict(spec.defaults)
    for name, value in params.items():
        if name in spec.integer_params:
            if not is_integer(value):
                raise TypeError(f"{name} of target {kind!r} must be an integer; got {value!r}.")
            out[name] = int(value)
        else:
            if not is_real(value) or not math.isfinite(float(value)):
                raise TypeError(f"{name} of target {kind!r} must be a finite real number; got {value!r}.")
            out[name] = float(value)
    return out


def make_target(kind: str, **params):
    """The target named `kind` (a kernel, or a `Lorenz96`) with `params` over its defaults; a
    parameter outside the family's domain is a `ValueError` naming it.

    ```python
    from jaxmem._experiments.targets import make_target
    make_target("exp", beta=1.0)          # Damped(PowerLaw(1), 1.0), as in jaxmem approx
    ```
    """
    full = target_params(kind, **params)
    try:
        return _spec(kind).build(**full)
    except (ValueError, TypeError) as e:
        shown = ", ".join(f"{k} = {v:g}" for k, v in full.items())
        raise ValueError(f"{shown} is not a valid parameter of target {kind!r} ({str(e).rstrip('.')}).") from None


def describe_target(kind: str, **params) -> str:
    """A one-line description of target `kind` with its complete parameters."""
    return _spec(kind).description.format(**target_params(kind, **params))
