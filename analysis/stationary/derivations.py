r"""The stationary moments of AdamS's denominator and of Adam's second moment, derived with sympy.

This module is the source of the closed forms in :mod:`analysis.stationary` (which writes them out
in NumPy and is tested against these expressions). It is meant to be read: every step is one
sympy call, and the only facts used are listed here.

**Model** (one coordinate, ``docs/algorithm.md`` §2). Gradients are
:math:`g_t = \mu + \sigma\xi_t` with i.i.d. standardized noise :math:`\xi_t`:
:math:`E\xi = 0`, :math:`E\xi^2 = 1`, :math:`E\xi^3 = \gamma` (skewness), :math:`E\xi^4 = \kappa`
(kurtosis). Gaussian noise has :math:`\gamma = 0, \kappa = 3`; every result below needs only these
four numbers, so it also covers e.g. Student-t noise with more than 4 degrees of freedom.

.. math::

    m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad
    S_t = \beta_2 S_{t-1} + (1-\beta_2) g_t^2 \;\text{(Adam)}, \qquad
    V_t = \beta_2 m_{t-1}^2 + (1-\beta_2) g_t^2 \;\text{(AdamS)}.

**Facts used.**

F1. *Independence of the past and the present.* :math:`m_{t-1}` and :math:`S_{t-1}` are functions of
    :math:`g_1, \dots, g_{t-1}` only, so they are independent of :math:`g_t`. For independent
    :math:`X, Y`, :math:`E[X^j Y^k] = E[X^j]\,E[Y^k]`: :func:`expectation` applies exactly this rule.

F2. *Stationarity.* In the stationary law, :math:`m_t` and :math:`m_{t-1}` have the same moments (and
    so do :math:`S_t, S_{t-1}`). Taking the k-th moment of both sides of a recursion
    :math:`X_t = a X_{t-1} + Z_t` gives an equation that is linear in :math:`E[X^k]` once the lower
    moments are known; :func:`stationary_moments` solves these equations order by order. (The laws
    exist because :math:`0 \le \beta < 1` makes each recursion a contraction.)

F3. :math:`V_t` needs no recursion of its own: it is a function of the pair
    :math:`(m_{t-1}, g_t)`, which by F1 and F2 is a stationary draw of the momentum and an
    independent fresh gradient.

Nothing here is specific to a Gaussian except the default values of :math:`\gamma, \kappa`.
"""
from __future__ import annotations

from functools import lru_cache

import sympy as sp

__all__ = [
    "mu", "sigma", "beta1", "beta2", "gamma", "kappa", "t", "r",
    "expectation", "stationary_moments", "noise_moments", "stationary", "transient",
    "ratio_limits", "equalizing_beta2", "step_bound_squared",
]

mu = sp.Symbol("mu", real=True)
sigma = sp.Symbol("sigma", positive=True)
beta1 = sp.Symbol("beta1", positive=True)  # the derivations hold on 0 < beta < 1
beta2 = sp.Symbol("beta2", positive=True)
gamma = sp.Symbol("gamma", real=True)  # E[xi^3]
kappa = sp.Symbol("kappa", positive=True)  # E[xi^4]
t = sp.Symbol("t", integer=True, positive=True)  # step count, from 1
r = sp.Symbol("r", positive=True)  # signal-to-noise ratio mu / sigma
GAUSSIAN = {gamma: 0, kappa: 3}


def expectation(expr: sp.Expr, moments: dict[sp.Symbol, dict[int, sp.Expr]]) -> sp.Expr:
    """E[expr] for a polynomial in mutually independent random symbols (fact F1).

    ``moments[X][k]`` is E[X^k]. Each monomial's expectation is the product of its factors' moments.

    >>> X, Y = sp.symbols("X Y")
    >>> expectation((X + 2 * Y) ** 2, {X: {1: 0, 2: 1}, Y: {1: 0, 2: 1}})
    5
    """
    poly = sp.Poly(sp.expand(expr), *moments)
    total = sp.Integer(0)
    for powers, coeff in poly.terms():
        term = coeff
        for symbol, k in zip(moments, powers):
            if k:
                term *= moments[symbol][k]
        total += term
    return sp.expand(total)


def stationary_moments(a: sp.Expr, z_moments: dict[int, sp.Expr], order: int) -> dict[int, sp.Expr]:
    """Moments E[X^k], k = 1..order, of the stationary law of X_t = a X_{t-1} + Z_t (fact F2).

    Z_t is independent of X_{t-1} with E[Z^k] = ``z_moments[k]``. The k-th equation is
    E[X^k] = E[(a X + Z)^k], linear in the unknown E[X^k].

    >>> b = sp.Symbol("b", positive=True)
    >>> sp.factor(stationary_moments(b, {1: 0, 2: 1 - b**2}, 2)[2])
    1
    """
    X, Z = sp.symbols("X Z")
    known: dict[int, sp.Expr] = {}
    for k in range(1, order + 1):
        unknown = sp.Symbol(f"M{k}")
        rhs = expectation((a * X + Z) ** k, {X: {**known, k: unknown}, Z: z_moments})
        (known[k],) = sp.solve(sp.Eq(unknown, rhs), unknown)
        known[k] = sp.factor(known[k])
    return known


def noise_moments(order: int = 4) -> dict[int, sp.Expr]:
    """E[g^k] for g = mu + sigma xi, from the four standardized moments of xi."""
    xi = sp.Symbol("xi")
    xi_moments = {1: 0, 2: 1, 3: gamma, 4: kappa}
    return {k: expectation((mu + sigma * xi) ** k, {xi: xi_moments}) for k in range(1, order + 1)}


@lru_cache(maxsize=None)
def stationary() -> dict[str, sp.Expr]:
    """Stationary means and variances of m, S and V (keys ``E_m``, ``Var_m``, ``E_S``, ...)."""
    G = noise_moments(4)
    # Momentum: X = m, Z = (1 - beta1) g.
    M = stationary_moments(beta1, {k: (1 - beta1) ** k * G[k] for k in range(1, 5)}, 4)
    # Adam's second moment: X = S, Z = (1 - beta2) g^2, whose k-th moment is (1 - beta2)^k E[g^(2k)].
    S = stationary_moments(beta2, {1: (1 - beta2) * G[2], 2: (1 - beta2) ** 2 * G[4]}, 2)
    # AdamS's denominator, from the independent pair (m_{t-1}, g_t) (F1, F3).
    m_prev, g_now = sp.symbols("m_prev g_now")
    V_expr = beta2 * m_prev**2 + (1 - beta2) * g_now**2
    pair = {m_prev: M, g_now: G}
    E_V = expectation(V_expr, pair)
    E_V2 = expectation(V_expr**2, pair)
    out = {
        "E_m": M[1], "Var_m": M[2] - M[1] ** 2,
        "E_S": S[1], "Var_S": S[2] - S[1] ** 2,
        "E_V": E_V, "Var_V": E_V2 - E_V**2,
        # the two building blocks of Var_V = beta2^2 Var[m^2] + (1 - beta2)^2 Var[g^2] (F1)
        "Var_m2": M[4] - M[2] ** 2, "Var_g2": G[4] - G[2] ** 2,
    }
    return {k: sp.factor(sp.simplify(v)) for k, v in out.items()}


def _geometric_sum(term: sp.Expr, k: sp.Symbol) -> sp.Expr:
    """sum_{k=0}^{t-1} term, keeping the branch for |ratio| < 1 (sympy also returns the ratio-1 case)."""
    total = sp.summation(term, (k, 0, t - 1))
    if isinstance(total, sp.Piecewise):
        total = total.args[-1][0]  # the general branch; the others are ratio = 1, excluded by beta < 1
    return total


@lru_cache(maxsize=None)
def transient() -> dict[str, sp.Expr]:
    """E[m_t], Var[m_t], E[S_t], E[V_t] at step t from m_0 = S_0 = 0 (no bias correction).

    m_t = (1 - beta1) sum_{k<t} beta1^k g_{t-k} is a weighted sum of independent gradients, so its
    mean is mu times the sum of the weights and its variance sigma^2 times the sum of their squares.
    Dividing by c_t = 1 - beta1^t (m) or 1 - beta2^t (S) gives the bias-corrected versions.
    """
    k = sp.Symbol("k", integer=True, nonnegative=True)
    G = noise_moments(2)
    w1 = (1 - beta1) * beta1**k
    w2 = (1 - beta2) * beta2**k
    E_m = sp.simplify(mu * _geometric_sum(w1, k))
    Var_m = sp.simplify(sigma**2 * _geometric_sum(w1**2, k))
    E_S = sp.simplify(G[2] * _geometric_sum(w2, k))
    E_m_prev_sq = (Var_m + E_m**2).subs(t, t - 1)
    E_V = beta2 * E_m_prev_sq + (1 - beta2) * G[2]
    return {"E_m": E_m, "Var_m": Var_m, "E_S": E_S, "E_V": sp.simplify(E_V)}


def _gaussian_ratios() -> tuple[sp.Expr, sp.Expr]:
    """E[V]/E[S] and Var[V]/Var[S] for Gaussian noise, as functions of r = mu / sigma."""
    st = {k: v.subs(GAUSSIAN).subs(mu, r * sigma) for k, v in stationary().items()}
    return sp.simplify(st["E_V"] / st["E_S"]), sp.simplify(st["Var_V"] / st["Var_S"])


@lru_cache(maxsize=None)
def ratio_limits() -> dict[str, sp.Expr]:
    """The two ratios in the large-batch (r -> oo) and noise-dominated (r -> 0) limits."""
    mean_ratio, var_ratio = _gaussian_ratios()
    return {
        "E_large_batch": sp.factor(sp.limit(mean_ratio, r, sp.oo)),
        "E_noise": sp.factor(sp.limit(mean_ratio, r, 0)),
        "Var_large_batch": sp.factor(sp.limit(var_ratio, r, sp.oo)),
        "Var_noise": sp.factor(sp.limit(var_ratio, r, 0)),
    }


@lru_cache(maxsize=None)
def equalizing_beta2() -> sp.Expr:
    """The beta2 in (0, 1) at which Var[V] = Var[S] (any noise with the four moments above).

    Var[S] - Var[V] factors as beta2^2 times an expression linear in beta2 (after multiplying by
    1 + beta2), so apart from the trivial root beta2 = 0 there is exactly one root.
    """
    st = stationary()
    b = sp.Symbol("b", positive=True)
    diff = sp.together((st["Var_S"] - st["Var_V"]).subs(beta2, b))
    roots = [root for root in sp.solve(sp.numer(diff), b) if root != 0]
    if len(roots) != 1:
        raise AssertionError(f"expected one nonzero root, sympy found {roots}")
    return sp.factor(roots[0])


@lru_cache(maxsize=None)
def step_bound_squared() -> tuple[sp.Expr, sp.Expr]:
    """The sup over (m_{t-1}, g_t) of m_t^2 / V_t at eps = 0, and where it is attained.

    With x = m_{t-1} / g_t (g_t != 0) the ratio is f(x) = (beta1 x + 1 - beta1)^2 /
    (beta2 x^2 + 1 - beta2); g_t = 0 gives the limit x -> oo, beta1^2 / beta2. The maximum is at the
    nonzero critical point of f, which is returned with the value.
    """
    x = sp.Symbol("x", real=True)
    f = (beta1 * x + 1 - beta1) ** 2 / (beta2 * x**2 + 1 - beta2)
    critical = [c for c in sp.solve(sp.diff(f, x), x) if sp.simplify(beta1 * c + 1 - beta1) != 0]
    (x_star,) = critical
    return sp.factor(sp.simplify(f.subs(x, x_star))), sp.factor(x_star)
