r"""The inequalities of :mod:`analysis.bounds.l0l1` and :mod:`analysis.bounds`, derived with sympy.

Each function returns sympy expressions that the numeric twins are tested against
(``tests/analysis/bounds/test_bounds.py``). Symbols: ``L0, L1`` the smoothness pair, ``G`` the gradient norm at the
start of a segment, ``r`` its length, ``s`` the position along it (0 to 1), ``eta``/``gamma`` the step
and the largest step length of clipped GD.

**Segment and descent.** Along :math:`z(s) = x + s(y - x)` the quantity
:math:`u(s) = L_0 + L_1\|\nabla f(z(s))\|` obeys :math:`u' \le L_1 r u`. The comparison equation
:math:`u' = L_1 r u` is solved by ``dsolve``; integrating :math:`r\,u` once gives the gradient change
(Lemma 1) and integrating that once more gives the descent remainder (Lemma 2).

**Step bound** (``docs/algorithm.md`` §1). With :math:`\epsilon = 0`, the paper-text
form's step is :math:`|m_t|/\sqrt{\nu_t}`, a function of :math:`x = m_{t-1}/g_t` only;
:func:`analysis.stationary.derivations.step_bound_squared` maximizes it over x.
"""
from __future__ import annotations

from functools import lru_cache

import sympy as sp

from analysis.stationary import derivations

__all__ = ["L0", "L1", "G", "r", "s", "eta", "gamma", "segment", "descent_factor", "clipped_kappa_at_defaults",
           "step_bound", "step_bound_default_form", "first_step"]

L0, L1, G, r, s = sp.symbols("L0 L1 G r s", positive=True)
eta, gamma = sp.symbols("eta gamma", positive=True)


@lru_cache(maxsize=None)
def segment() -> dict[str, sp.Expr]:
    """``envelope`` u(s) = (L0 + L1 G) e^{L1 r s}; ``gradient_change`` at s = 1 (Lemma 1);
    ``remainder``, the bound on f(y) - f(x) - <grad f(x), y - x> (Lemma 2)."""
    u = sp.Function("u")
    solution = sp.dsolve(sp.Eq(u(s).diff(s), L1 * r * u(s)), u(s), ics={u(0): L0 + L1 * G})
    envelope = sp.simplify(solution.rhs)
    tau = sp.Symbol("tau", positive=True)
    change = sp.integrate(r * envelope.subs(s, tau), (tau, 0, s))  # ||grad f(z(s)) - grad f(x)|| <= change(s)
    remainder = sp.integrate(r * change, (s, 0, 1))
    return {"envelope": envelope, "gradient_change": sp.simplify(change.subs(s, 1)),
            "remainder": sp.simplify(remainder)}


def descent_factor() -> sp.Expr:
    """phi(u) with remainder = (L0 + L1 G) r^2 phi(L1 r), read off :func:`segment`."""
    u = sp.Symbol("u", positive=True)
    phi = sp.simplify(segment()["remainder"] / ((L0 + L1 * G) * r**2))
    return sp.simplify(phi.subs(r, u / L1))


def clipped_kappa_at_defaults() -> sp.Expr:
    """kappa = 1 - (eta L0 + L1 gamma) phi(L1 gamma) at eta = 1/(2 L0), gamma = 1/(2 L1): 7 - 4 sqrt(e)."""
    u = sp.Symbol("u", positive=True)
    phi = descent_factor()
    kappa = 1 - (eta * L0 + L1 * gamma) * phi.subs(u, L1 * gamma)
    return sp.simplify(kappa.subs({eta: 1 / (2 * L0), gamma: 1 / (2 * L1)}))


def step_bound() -> tuple[sp.Expr, sp.Expr]:
    """sup |m_t| / sqrt(nu_t) at eps = 0 (paper-text form, t >= 2) and the ratio m_{t-1}/g_t attaining it."""
    squared, x_star = derivations.step_bound_squared()
    return sp.sqrt(squared), x_star


def step_bound_default_form() -> tuple[sp.Expr, sp.Symbol]:
    """The default (bias-corrected) form at step t >= 2: sup of |m_t / c_t| / sqrt(nu_t) at eps = 0.

    With M = m_{t-1} / c_t the step is (beta1 M + (1 - beta1) g / c_t) / sqrt(beta2 M^2 + (1 - beta2) g^2),
    the paper-text ratio with 1 - beta1 replaced by (1 - beta1) / c_t; maximized over x = M / g.
    Returns the supremum and the symbol ``c`` standing for c_t = 1 - beta1^t.
    """
    x = sp.Symbol("x", real=True)
    c = sp.Symbol("c", positive=True)
    b1, b2 = derivations.beta1, derivations.beta2
    f = (b1 * x + (1 - b1) / c) ** 2 / (b2 * x**2 + 1 - b2)
    critical = [p for p in sp.solve(sp.diff(f, x), x) if sp.simplify(b1 * p + (1 - b1) / c) != 0]
    (x_star,) = critical
    return sp.sqrt(sp.simplify(f.subs(x, x_star))), c


def first_step(bias_correction: bool) -> sp.Expr:
    """|update| / lr at t = 1 (m_0 = 0, any g_1 != 0): the ratio m_1 / c_1 over sqrt(nu_1)."""
    g = sp.Symbol("g", positive=True)
    b1, b2 = derivations.beta1, derivations.beta2
    c = 1 - b1 if bias_correction else 1
    m1 = (1 - b1) * g
    nu1 = (1 - b2) * g**2  # beta2 m_0^2 vanishes
    return sp.simplify((m1 / c) / sp.sqrt(nu1))
