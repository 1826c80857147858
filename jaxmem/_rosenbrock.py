r"""Rodas4: a linearly implicit (Rosenbrock) solver for Diffrax, for the stiff gradient flow.

Why not an implicit Runge-Kutta method (Kvaerno5): those solve nonlinear stage equations by a
Newton-type iteration whose tolerance, stopping test and (under `jax.vmap`) slowest batch
member all cost time at every stage; the stage solves were ~80% of a flow step. A Rosenbrock
method replaces them by one LU factorisation of $I/(h\gamma) - J$ per step and one triangular
solve per stage, with the exact Jacobian $J = \partial f/\partial y$ (forward mode, once per
step). There is no iteration, hence no tolerance to tune and no divergence test to trip on the
~1e-16 rounding noise of a gradient that is ~1e-9 on a plateau.

The method is RODAS of Hairer & Wanner (*Solving ODEs II*, §VI.4; their `rodas.f`, METH = 1):
six stages, order 4 with an embedded order-3 solution (the error estimate is the last stage),
L-stable and stiffly accurate. Dense output: the cubic Hermite interpolant of (y, f) at both
ends of a step (f at the new point is the next step's first stage, so it costs nothing).
"""

from collections.abc import Callable
from typing import ClassVar

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
from jax.flatten_util import ravel_pytree

# Hairer & Wanner's rodas.f, ROCOE with METH = 1 (the coefficients of the transformed
# formulation: stage arguments y + Σ a_ij k_j, right-hand sides f + Σ c_ij k_j / h).
_GAMMA = 0.25
_C = (0.0, 0.386, 0.21, 0.63, 1.0, 1.0)
_D = (0.25, -0.1043, 0.1035, -0.03620000000000023, 0.0, 0.0)
_A = (
    (),
    (1.544,),
    (0.9466785280815826, 0.2557011698983284),
    (3.314825187068521, 2.896124015972201, 0.9986419139977817),
    (1.221224509226641, 6.019134481288629, 12.53708332932087, -0.6878860361058950),
    (1.221224509226641, 6.019134481288629, 12.53708332932087, -0.6878860361058950, 1.0),
)
_CC = (
    (),
    (-5.6688,),
    (-2.430093356833875, -0.2063599157091915),
    (-0.1073529058151375, -9.594562251023355, -20.47028614809616),
    (7.496443313967647, -10.24680431464352, -33.99990352819905, 11.70890893206160),
    (8.083246795921522, -7.981132988064893, -31.52159432874371, 16.31930543123136, -6.058818238834054),
)


def _rows(rows):
    return tuple(tuple(r) + (0.0,) * (6 - len(r)) for r in rows)


_A_FULL = _rows(_A)
# Per stage 2..6: a_i·, c_i·, c_i, d_i (padded to 6 columns; stage j > i has k_j = 0 anyway).
_TABLE = (_A_FULL[1:], _rows(_CC)[1:], _C[1:], _D[1:])


class JacobianODETerm(diffrax.ODETerm):
    r"""An `ODETerm` that also knows its Jacobian: `jacobian(t, y, args)` returns the matrix
    $\partial f/\partial y$ for a one-dimensional state `y`. `Rodas4` uses it instead of forward
    mode (`jaxmem.gradient_flow` supplies the Hessian of the loss in closed form)."""

    jacobian: Callable


def _supplied_jacobian(terms):
    """The `JacobianODETerm`'s Jacobian inside diffrax's wrappers (`WrapTerm` evaluates its
    term at t·direction), or None."""
    direction = 1
    while not isinstance(terms, JacobianODETerm):
        inner = getattr(terms, "term", None)
        if inner is None:
            return None
        direction = direction * getattr(terms, "direction", 1)
        terms = inner
    return lambda t, y, args: terms.jacobian(t * direction, y, args)


class Rodas4(diffrax.AbstractAdaptiveSolver):
    r"""The Rosenbrock method RODAS (order 4(3), L-stable, stiffly accurate) for ODEs.

    Each step factorises $I/(h\gamma) - J$ once, with $J$ the exact Jacobian of the vector
    field at the start of the step (`jax.jacfwd`, or the term's own for a `JacobianODETerm`),
    and makes six linear solves and five new evaluations of the vector field (plus one at the
    new point, reused by the next step). Use it
    with `diffrax.PIDController`; it suits small stiff systems (tens to hundreds of states),
    where a dense Jacobian is cheap, such as the gradient flow of `jaxmem.gradient_flow`.

    **Arguments:**

    - `autonomous`: whether the vector field does not depend on t (default True). When False,
      each step also takes $\partial f/\partial t$ by forward mode.

    ```python
    import diffrax, jax, jax.numpy as jnp, jaxmem
    jax.config.update("jax_enable_x64", True)
    term = diffrax.ODETerm(lambda t, y, args: jnp.array([-1e4 * (y[0] - jnp.cos(y[1])), 1.0]))
    sol = diffrax.diffeqsolve(term, jaxmem.Rodas4(), 0.0, 1.0, None, jnp.array([0.0, 0.0]),
                              stepsize_controller=diffrax.PIDController(rtol=1e-8, atol=1e-10))
    sol.ys[-1]          # ≈ [cos(1) + 1e-4 sin(1), 1]
    ```
    """

    autonomous: bool = eqx.field(static=True, default=True)

    term_structure: ClassVar = diffrax.AbstractTerm
    interpolation_cls: ClassVar[Callable[..., diffrax.ThirdOrderHermitePolynomialInterpolation]] = (
        diffrax.ThirdOrderHermitePolynomialInterpolation
    )

    def order(self, terms):
        return 4

    def init(self, terms, t0, t1, y0, args):
        # First same as last: the vector field at the start of the next step.
        return terms.vf(t0, y0, args)

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        f0 = solver_state
        if made_jump is not False:
            f0 = jax.tree_util.tree_map(
                lambda a, b: jnp.where(made_jump, a, b), terms.vf(t0, y0, args), f0
            )
        flat_y0, unravel = ravel_pytree(y0)
        dtype = flat_y0.dtype

        def vf(t, flat_y):
            return ravel_pytree(terms.vf(t, unravel(flat_y), args))[0]

        # The step in the term's control (t1 - t0 for an ODETerm solved forwards; diffrax wraps
        # terms so that backward solves negate it).
        h = terms.contr(t0, t1)
        supplied = _supplied_jacobian(terms)
        if supplied is not None:
            jac = supplied(t0, y0, args).reshape(flat_y0.size, flat_y0.size)
        else:
            jac = jax.jacfwd(lambda y: vf(t0, y))(flat_y0)
        eye = jnp.eye(flat_y0.size, dtype=dtype)
        lu = jsl.lu_factor(eye / (h * _GAMMA) - jac)
        if self.autonomous:
            dfdt = None
        else:
            # d f / d(control): the vector field's t-derivative times dt/dh.
            dfdt = jax.jvp(lambda t: vf(t, flat_y0), (t0,), (jnp.ones_like(t0),))[1] * ((t1 - t0) / h)

        # Stage 1 uses f0; stages 2..6 run in a scan, so the vector field is traced once (the
        # special functions of a kernel's moments make each traced copy costly to compile).
        flat_f0 = ravel_pytree(f0)[0]
        rhs0 = flat_f0 if dfdt is None else flat_f0 + _D[0] * h * dfdt
        ks = jnp.zeros((6, flat_y0.size), dtype).at[0].set(jsl.lu_solve(lu, rhs0))

        def stage(ks, coeffs):
            i, a_row, c_row, c_i, d_i = coeffs
            arg = flat_y0 + a_row @ ks
            rhs = vf(t0 + c_i * (t1 - t0), arg) + (c_row @ ks) / h
            if dfdt is not None:
                rhs = rhs + d_i * h * dfdt
            return ks.at[i].set(jsl.lu_solve(lu, rhs)), None

        ks, _ = jax.lax.scan(stage, ks, (jnp.arange(1, 6), *(jnp.asarray(x, dtype) for x in _TABLE)))
        arg = flat_y0 + jnp.asarray(_A_FULL[5], dtype) @ ks
        ks = list(ks)
        flat_y1 = arg + ks[5]
        y1 = unravel(flat_y1)
        f1 = terms.vf(t1, y1, args)
        flat_f1 = ravel_pytree(f1)[0]
        dense_info = dict(y0=y0, y1=y1, k0=unravel(h * flat_f0), k1=unravel(h * flat_f1))
        y_error = unravel(ks[5])
        return y1, y_error, dense_info, f1, diffrax.RESULTS.successful

    def func(self, terms, t0, y0, args):
        return terms.vf(t0, y0, args)
