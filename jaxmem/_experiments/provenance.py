"""Where a result came from: package versions, devices, precision (one helper for every driver)."""

import importlib.metadata as md
import platform

PACKAGES = ("jaxmem", "jax", "jaxlib", "equinox", "diffrax", "optax", "optimistix", "numpy", "scipy")


def versions(packages=PACKAGES) -> dict:
    """The Python version and the installed versions of `packages` (None where missing)."""
    out = {"python": platform.python_version()}
    for pkg in packages:
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:  # pragma: no cover
            out[pkg] = None
    return out


def provenance() -> dict:
    """Versions, devices, platform and whether float64 is on, for a run's manifest."""
    import jax

    return dict(versions=versions(), device=str(jax.devices()[0]), devices=[str(d) for d in jax.devices()],
                platform=platform.platform(), x64=bool(jax.config.jax_enable_x64))


def _describe_solver(solver, Rodas4, diffrax) -> str:
    if isinstance(solver, Rodas4):
        return "jaxmem.Rodas4 (Rosenbrock RODAS, order 4(3), exact Jacobian) in diffrax"
    rf = getattr(solver, "root_finder", None)
    if isinstance(solver, diffrax.Kvaerno5) and hasattr(rf, "rtol"):
        return (f"diffrax.Kvaerno5 (ESDIRK, order 5(4)), stages by optimistix.{type(rf).__name__}"
                f"(rtol={rf.rtol:g}, atol={rf.atol:g}) with the Hessian of the loss in closed form")
    return repr(solver)


def describe_search(search) -> dict:
    """A `HittingTimeSearch`'s solver, controller and event location in words."""
    import diffrax
    import jax.numpy as jnp

    from .._rosenbrock import Rodas4

    c = search.stepsize_controller
    tols = ", ".join(f"{k}={getattr(c, k):g}" for k in ("rtol", "atol") if isinstance(getattr(c, k, None), float))
    return dict(
        solver=_describe_solver(search.solver, Rodas4, diffrax),
        time="training time tau (each step taken in its own time, from 0; tau summed with compensation)",
        stepsize_controller=f"{type(c).__name__}({tols})",
        events="one event per solve segment (the largest of the pending conditions, each scaled by its delta), "
               f"optimistix.{type(search.root_finder).__name__}(rtol={search.root_finder.rtol:g}, "
               f"atol={search.root_finder.atol:g}) on the dense output of the step that crosses it",
        dtype=str(jnp.zeros(()).dtype),
    )
