r"""Exact one-step maps of linear hidden-state ODEs over one grid interval, and the scans that
chain them.

On $[t_j, t_j + \Delta]$ the first-order hold (FOH) input is $x(t_j + s) = x_j(1 - s/\Delta) +
x_{j+1}s/\Delta$, and $\dot h = -wh + x$ gives exactly

$$h_{j+1} = \lambda h_j + p\,x_j + q\,x_{j+1},\qquad \lambda = e^{-w\Delta},\quad
p = \Delta\,\psi(w\Delta),\quad q = \Delta\,(\varphi(w\Delta) - \psi(w\Delta)),$$

with $\varphi(z) = \int_0^1 e^{-zv}dv = (1 - e^{-z})/z$ and $\psi(z) = \int_0^1 v\,e^{-zv}dv =
(\varphi(z) - e^{-z})/z$. The zero-order hold (ZOH) input $x_j$ gives $h_{j+1} = \lambda h_j +
\Delta\varphi(w\Delta)x_j$, the input weight $\Delta\varphi(w\Delta) = (1 - \lambda)/w$.
"""

import math

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl

# Below |z| = 1 the closed forms lose digits to cancellation (psi about eps/z); their Taylor
# series, summed to 20 terms (remainder < 1e-19), are exact to rounding there.
_SMALL = 1.0
_TERMS = 20
_PHI = [(-1.0) ** k / math.factorial(k + 1) for k in range(_TERMS)]
_PSI = [(-1.0) ** k / (math.factorial(k) * (k + 2)) for k in range(_TERMS)]


def _series(coeffs, z):
    out = jnp.zeros_like(z) + coeffs[-1]
    for a in reversed(coeffs[:-1]):
        out = out * z + a
    return out


def hold_functions(z):
    r"""$\varphi(z) = (1 - e^{-z})/z$ and $\psi(z) = (\varphi(z) - e^{-z})/z$, accurate for every
    $z$ (with finite gradients at $z = 0$)."""
    small = jnp.abs(z) < _SMALL
    zs = jnp.where(small, 1.0, z)  # the closed form never sees z = 0, so its gradient stays finite
    phi_direct = -jnp.expm1(-zs) / zs
    psi_direct = (phi_direct - jnp.exp(-zs)) / zs
    phi = jnp.where(small, _series(_PHI, z), phi_direct)
    psi = jnp.where(small, _series(_PSI, z), psi_direct)
    return phi, psi


def foh_diagonal(w, dt):
    r"""$(\lambda, p, q)$ of the exact FOH step of $\dot h = -wh + x$ (elementwise in `w`)."""
    z = w * dt
    phi, psi = hold_functions(z)
    return jnp.exp(-z), dt * psi, dt * (phi - psi)


def zoh_diagonal(w, dt):
    r"""$(\lambda, (1 - \lambda)/w)$ of the exact ZOH step of $\dot h = -wh + x$."""
    z = w * dt
    phi, _ = hold_functions(z)
    return jnp.exp(-z), dt * phi


def foh_dense(W, U, dt):
    r"""$(A, P, Q)$ with $h_{j+1} = Ah_j + Px_j + Qx_{j+1}$ the exact FOH step of
    $\dot h = Wh + Ux$, from one block exponential (Van Loan 1978):

    $$\exp\left(\Delta\begin{bmatrix} W & U & 0\\ 0 & 0 & I/\Delta\\ 0 & 0 & 0\end{bmatrix}\right)
    = \begin{bmatrix} e^{W\Delta} & E_{12} & E_{13}\\ 0 & I & I\\ 0 & 0 & I\end{bmatrix},$$

    the state $(h, x, \delta)$ with $\dot x = \delta/\Delta$: $E_{12} = \int_0^\Delta e^{Wu}du\,U$
    and $E_{13} = \int_0^\Delta e^{Wu}(1 - u/\Delta)du\,U$, so $P = E_{12} - E_{13}$, $Q = E_{13}$.
    """
    m, d = U.shape
    n = m + 2 * d
    M = jnp.zeros((n, n), W.dtype)
    M = M.at[:m, :m].set(W * dt).at[:m, m : m + d].set(U * dt)
    M = M.at[m : m + d, m + d :].set(jnp.eye(d, dtype=W.dtype))
    E = jsl.expm(M)
    A, E12, E13 = E[:m, :m], E[:m, m : m + d], E[:m, m + d :]
    return A, E12 - E13, E13


def _compose(first, second):
    # h -> a1 h + b1, then h -> a2 h + b2: h -> a2 a1 h + (a2 b1 + b2)
    a1, b1 = first
    a2, b2 = second
    return a2 * a1, a2 * b1 + b2


def linear_recurrence(lam, bs, *, sequential: bool | None = None):
    r"""The states $h_1, \dots, h_n$ of $h_{k+1} = \lambda \odot h_k + b_k$, $h_0 = 0$, for
    `bs` of shape `(n, m)` and `lam` of shape `(m,)`.

    `sequential=False` chains them with `jax.lax.associative_scan` over the affine maps (depth
    $O(\log n)$, the S5/LRU way); `sequential=True` runs the same recurrence with
    `jax.lax.scan` (depth $n$). The default, `None`, is `lax.scan` on a CPU (where it is several
    times faster: the associative scan does about twice the work with no parallelism to use)
    and the associative scan on accelerators.
    """
    if sequential is None:
        sequential = jax.default_backend() == "cpu"
    if sequential:

        def step(h, b):
            h = lam * h + b
            return h, h

        return jax.lax.scan(step, jnp.zeros_like(bs[0]), bs)[1]
    lams = jnp.broadcast_to(lam, bs.shape)
    return jax.lax.associative_scan(_compose, (lams, bs))[1]


def dense_recurrence(A, bs):
    r"""The states $h_1, \dots, h_n$ of $h_{k+1} = Ah_k + b_k$, $h_0 = 0$, by `jax.lax.scan`."""

    def step(h, b):
        h = A @ h + b
        return h, h

    return jax.lax.scan(step, jnp.zeros_like(bs[0]), bs)[1]


def with_rest(hs, m: int):
    """The states `hs` (n-1, m) preceded by the rest state h_0 = 0."""
    return jnp.concatenate([jnp.zeros((1, m), hs.dtype), hs])
