"""Special functions in forms that stay finite where naive formulas give 0·∞.

Everything here is pure `jax.numpy`, so it jits, vmaps and differentiates.
"""

import math

import jax
import jax.numpy as jnp
import jax.scipy.special as jss
from equinox import internal as eqxi

_CF_DEPTH = 120
# A Python float, not a jnp array: a module-level jnp constant is created in float32 when
# jaxmem is imported before x64 is switched on, and would cap every result at ~1e-8.
_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
_SQRT_HALF = math.sqrt(0.5)


def scaled_expn(nu, z):
    r"""$e^{z} E_\nu(z)$ for real $\nu \geq 0$ and $z > 0$.

    $E_\nu(z) = \int_1^\infty e^{-zu} u^{-\nu}\,du$ is the generalised exponential integral.
    For $z \geq 1$ a continued fraction evaluated backwards at a fixed depth (no overflow:
    the scaling $e^z$ is built in); for $z < 1$ the incomplete-gamma form
    $E_{\nu_0}(z) = z^{\nu_0 - 1}\Gamma(1-\nu_0)Q(1-\nu_0, z)$ with $\nu_0 = \nu - \lfloor\nu\rfloor$,
    then the stable upward recurrence $E_{\nu+1} = (e^{-z} - zE_\nu)/\nu$.
    """
    nu = jnp.asarray(nu, dtype=jnp.result_type(nu, z, float))
    z = jnp.asarray(z, dtype=nu.dtype)
    nu, z = jnp.broadcast_arrays(nu, z)
    large = z >= 1.0
    # Continued fraction branch (z >= 1): e^z E_nu(z) = 1/(z+nu- 1*nu/(z+nu+2- 2(nu+1)/(...))).
    zl = jnp.where(large, z, 1.0)

    # lax.fori_loop rather than a Python loop: the unrolled 120 steps cost seconds of
    # compilation (and ~10 s per eager gradient); static bounds keep it reverse-differentiable.
    def cf_step(i, f):
        k = (_CF_DEPTH - i).astype(f.dtype)
        return zl + nu + 2.0 * (k - 1) - k * (nu + k - 1) / f

    f = jax.lax.fori_loop(0, _CF_DEPTH, cf_step, zl + nu + 2.0 * _CF_DEPTH)
    cf = 1.0 / f
    # Small-z branch: fractional part via incomplete gamma, integer part by recurrence.
    zs = jnp.where(large, 0.5, z)
    n_int = jnp.floor(nu)
    nu0 = nu - n_int
    is_int = (nu0 == 0.0) & (nu >= 1.0)
    # Non-integer nu: start from E_{nu0}; integer nu >= 1: start from E_1 (the recurrence
    # E_{n+1} = (e^{-z} - z E_n)/n is singular at n = 0).
    a = 1.0 - nu0  # in (0, 1]
    e_frac = jnp.exp((nu0 - 1.0) * jnp.log(zs) + jss.gammaln(a)) * jss.gammaincc(a, zs)
    e = jnp.where(is_int, _exp1_small(zs), e_frac)
    start = jnp.where(is_int, 1.0, nu0)
    steps = jnp.where(is_int, n_int - 1.0, n_int)
    ez = jnp.exp(-zs)

    def up_step(i, e):
        k = i.astype(e.dtype)
        denom = jnp.where(start + k > 0, start + k, 1.0)  # keeps grads NaN-free
        return jnp.where(k < steps, (ez - zs * e) / denom, e)

    e = jax.lax.fori_loop(0, _MAX_INT_ORDER, up_step, e)
    small = jnp.exp(zs) * e
    return jnp.where(large, cf, small)


_MAX_INT_ORDER = 64
_EULER_GAMMA = 0.5772156649015329
# E_1(z) = -γ - log z + Σ_k (-1)^{k+1} z^k / (k·k!); 24 terms reach 1e-25 for z <= 1.
_EXP1_COEFFS = tuple((-1.0) ** (k + 1) / (k * math.factorial(k)) for k in range(1, 25))


def _exp1_small(z):
    r"""$E_1(z)$ for $0 < z \leq 1$ by its power series.

    Not `jax.scipy.special.exp1`: its second derivative fails to lower under jit/vmap
    ("No constant handler for type DynamicJaxprTracer", jax 0.10), which breaks Hessians of
    the loss against integer-ω power laws.
    """
    acc = jnp.zeros_like(z)
    for c in reversed(_EXP1_COEFFS):
        acc = (acc + c) * z
    return acc - _EULER_GAMMA - jnp.log(z)


def _guarded(pred, fn, x):
    """`fn(x)` where `pred` holds, computed only when some element needs it.

    `jnp.where(pred, fn(x), ...)` evaluates `fn` everywhere; these tails (continued fractions,
    ~100 divisions per element) are needed only for arguments far out, which the training
    flows of jaxmem rarely meet. The predicate is reduced over the whole batch
    (`unvmap_any`), so under `jax.vmap` the branch still runs once for all members when any
    member needs it, and costs nothing otherwise.
    """
    return jax.lax.cond(eqxi.unvmap_any(jnp.any(pred)), fn, jnp.zeros_like, x)


def log_gauss_tail_moment(r):
    r"""$\log(\varphi(r) + r\,\Phi(r))$, i.e. $\log\int_{-\infty}^r \Phi(x)\,dx$.

    For $r \geq -3$ directly, with $\Phi(r) = \tfrac12\mathrm{erfc}(-r/\sqrt2)$. For $r < -3$ the
    difference cancels badly; there it is $\varphi(r)\,(1 - xR(x))$ with $x = -r$ and
    $1 - xR(x) = R(x)\,K(x)$, both from Laplace's continued fraction for the Mills ratio $R$,
    evaluated backwards at a fixed depth (only when some argument needs it).
    """
    r = jnp.asarray(r, dtype=jnp.result_type(r, float))
    neg = r < -3.0
    rd = jnp.where(neg, 0.0, r)
    direct = jnp.log(jnp.exp(-0.5 * rd**2 - _LOG_SQRT_2PI) + rd * (0.5 * jss.erfc(-rd * _SQRT_HALF)))

    def tail(r):
        x = jnp.where(neg, -r, 3.0)
        # 1 - xR = R * K_1 (see _mills_ratio).
        mills, kk = _mills_ratio(x, 64)
        return -0.5 * x**2 - _LOG_SQRT_2PI + jnp.log(mills) + jnp.log(kk)

    return jnp.where(neg, _guarded(neg, tail, r), direct)


def _mills_ratio(x, depth):
    """Mills ratio R(x) = (1 - Φ(x))/φ(x) and K_1(x) by Laplace's continued fraction.

    Evaluated backwards at a fixed depth: 30 terms reach 1e-17 for x >= 5, 60 for x >= 3.
    Unrolled in Python on purpose: the loop fuses into one elementwise kernel (a rolled loop
    is one launch per term on GPU).
    """
    # K_k = k / (x + K_{k+1}); R = 1/(x + K_1).
    kk = jnp.zeros_like(x)
    for k in range(depth, 0, -1):
        kk = k / (x + kk)
    return 1.0 / (x + kk), kk


def log_ndtr(r):
    r"""$\log\Phi(r)$, accurate to ~1e-15 relative in $\Phi$ for every $r$.

    With $e = \tfrac12\mathrm{erfc}(|r|/\sqrt2)$: $\log(1 - e)$ by `log1p` for $r \geq 0$ and
    $\log e$ for $-5 \leq r < 0$. Below $r = -5$ it is $\log\varphi(x) + \log R(x)$, $x = -r$,
    with the Mills ratio from Laplace's continued fraction (computed only when some argument
    needs it). Not `jax.scipy.special.log_ndtr`: that loses up to ~4e-9 (relative, in $\Phi$)
    around $r \approx -20$, where its asymptotic series starts.
    """
    r = jnp.asarray(r, dtype=jnp.result_type(r, float))
    neg = r < -5.0
    rd = jnp.where(neg, 0.0, r)
    e = 0.5 * jss.erfc(jnp.abs(rd) * _SQRT_HALF)
    # The inner where keeps log's gradient finite where erfc underflows (r > 38, log1p branch).
    direct = jnp.where(rd >= 0, jnp.log1p(-e), jnp.log(jnp.where(rd >= 0, 0.5, e)))

    def tail(r):
        x = jnp.where(neg, -r, 5.0)
        mills, _ = _mills_ratio(x, 40)
        return -0.5 * x**2 - _LOG_SQRT_2PI + jnp.log(mills)

    return jnp.where(neg, _guarded(neg, tail, r), direct)


def exp_moments_unit(x):
    r"""$(\psi_0, \psi_1, \psi_2)(x)$ with $\psi_n(x) = \int_0^1 u^n e^{-xu}\,du$, $x \geq 0$.

    Taylor series for $x < 1$, the recurrence $\psi_n = (n\psi_{n-1} - e^{-x})/x$ above.
    """
    x = jnp.asarray(x, dtype=jnp.result_type(x, float))
    small = x < 1.0
    xs = jnp.where(small, x, 0.0)
    xl = jnp.where(small, 1.0, x)
    series = []
    for n in range(3):
        term = jnp.ones_like(xs)
        acc = term / (n + 1)
        for k in range(1, 25):
            term = term * (-xs) / k
            acc = acc + term / (n + k + 1)
        series.append(acc)
    em = jnp.exp(-xl)
    p0 = -jnp.expm1(-xl) / xl
    p1 = (p0 - em) / xl
    p2 = (2 * p1 - em) / xl
    return tuple(jnp.where(small, s, p) for s, p in zip(series, (p0, p1, p2)))
