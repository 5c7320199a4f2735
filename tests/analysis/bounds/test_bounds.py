"""The bounds of analysis.bounds and analysis.bounds.l0l1: sympy twins, registry, and inequalities that no
simulation may cross, checked on many random cases."""
from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp

import adams
from adams.reference import adams_step
from analysis.bounds import derivations as bd
from analysis import bounds as B
from analysis.bounds import l0l1
from analysis.bounds.simulations import iterations_to, run
from analysis.bounds.simulations import run as _run
from analysis.bounds.problems import Cauchy, Cosh, PseudoHuber, Quadratic, Quartic

b1, b2 = bd.derivations.beta1, bd.derivations.beta2
PROBLEMS = [Quadratic((0.1, 1.0, 5.0)), Quartic(d=4, c=2.0), Cosh(d=3, a=1.5), Cauchy(d=3), PseudoHuber(d=3, s=0.5, delta=0.2)]


# --- sympy is the source --------------------------------------------------------------------------

def test_segment_and_descent_match_sympy():
    seg = bd.segment()
    change = sp.lambdify((bd.L0, bd.L1, bd.G, bd.r), seg["gradient_change"])
    remainder = sp.lambdify((bd.L0, bd.L1, bd.G, bd.r), seg["remainder"])
    rng = np.random.default_rng(0)
    for L0, L1, G, r in rng.uniform(0.05, 3.0, size=(200, 4)):
        assert l0l1.segment_bound(L0, L1, G, r) == pytest.approx(change(L0, L1, G, r), rel=1e-12)
        assert l0l1.descent_remainder(L0, L1, G, r) == pytest.approx(remainder(L0, L1, G, r), rel=1e-9)


def test_descent_factor_matches_sympy_and_its_limit():
    u = sp.Symbol("u", positive=True)
    phi = bd.descent_factor()
    assert sp.limit(phi, u, 0) == sp.Rational(1, 2)
    for value in (1e-6, 1e-3, 0.1, 0.5, 1.0, 5.0):
        assert float(l0l1.descent_factor(value)) == pytest.approx(float(phi.evalf(40, subs={u: sp.Rational(str(value))})), rel=1e-9)
    assert sp.simplify(bd.clipped_kappa_at_defaults() - (7 - 4 * sp.sqrt(sp.E))) == 0
    assert float(l0l1.clipped_gd_kappa(3.0, 2.0, 1 / 6, 1 / 4)) == pytest.approx(7 - 4 * math.sqrt(math.e), rel=1e-12)


@pytest.mark.parametrize("betas", [(0.9, 0.95), (0.9, 0.999), (0.5, 0.9), (0.95, 0.95)])
def test_step_bound_matches_sympy_and_adams(betas):
    expr, _ = bd.step_bound()
    sub = {b1: betas[0], b2: betas[1]}
    assert adams.step_bound(*betas) == pytest.approx(float(expr.subs(sub)), rel=1e-12)
    assert adams.step_bound(*betas) == adams.step_bound(*betas)
    default, c = bd.step_bound_default_form()
    for t in (2, 3, 10, 100):
        value = float(default.subs({**sub, c: 1 - betas[0] ** t}))
        assert adams.step_bound(*betas, bias_correction=True, step=t) == pytest.approx(value, rel=1e-12)
    for bc in (True, False):
        assert adams.first_step_size(1.0, *betas, bias_correction=bc) == pytest.approx(float(bd.first_step(bc).subs(sub)))


# --- the inequalities hold, and the attained ones are attained ------------------------------------

@pytest.mark.parametrize("betas", [(0.9, 0.95), (0.9, 0.99), (0.8, 0.999), (0.99, 0.9)])
def test_step_bound_is_attained_at_step_two(betas):
    g1, g2 = B.step_bound_attainer(*betas)
    _, m, _ = adams_step(np.zeros(1), np.array([g1]), np.zeros(1), 1, lr=1.0, beta1=betas[0], beta2=betas[1],
                           eps=0.0, weight_decay=0.0, bias_correction=False)
    w, m2, nu = adams_step(np.zeros(1), np.array([g2]), m, 2, lr=1.0, beta1=betas[0], beta2=betas[1], eps=0.0,
                             weight_decay=0.0, bias_correction=False)
    assert abs(w[0]) == pytest.approx(adams.step_bound(*betas), rel=1e-12)


@pytest.mark.parametrize("bias_correction", [False, True])
def test_no_gradient_sequence_exceeds_the_step_bound(bias_correction):
    rng = np.random.default_rng(1)
    for b1_, b2_ in [(0.9, 0.95), (0.9, 0.999), (0.5, 0.6), (0.95, 0.9)]:
        g = rng.standard_t(1.2, size=(500, 60)) * rng.choice([1e-3, 1.0, 1e3], size=(500, 1))
        m = np.zeros(500)
        for t in range(1, 61):
            _, m_new, nu = adams_step(np.zeros(500), g[:, t - 1], m, t, lr=1.0, beta1=b1_, beta2=b2_, eps=0.0,
                                        weight_decay=0.0, bias_correction=bias_correction)
            c = 1 - b1_**t if bias_correction else 1.0
            ratio = np.abs(m_new / c) / np.sqrt(nu)
            assert np.all(ratio <= adams.step_bound(b1_, b2_, bias_correction=bias_correction, step=t) * (1 + 1e-12))
            m = m_new


def test_segment_bound_is_attained_by_the_exponential():
    # f(x) = e^x is (0, 1)-smooth with equality; grad f(y) - grad f(x) = e^x (e^r - 1) for y = x + r.
    for x, r in [(0.0, 0.5), (-1.0, 2.0), (1.5, 0.1)]:
        assert math.exp(x + r) - math.exp(x) == pytest.approx(float(l0l1.segment_bound(0.0, 1.0, math.exp(x), r)))


@pytest.mark.parametrize("problem", PROBLEMS, ids=lambda p: p.name)
def test_segment_and_descent_inequalities_hold_on_random_pairs(problem):
    rng = np.random.default_rng(2)
    l1_values = [problem.default_l1()] + ([0.5, 2.0, 8.0] if problem.name == "quartic" else [])
    x = rng.standard_normal((3000, problem.d)) * rng.choice([0.1, 1.0, 2.0], size=(3000, 1))
    d = rng.standard_normal(x.shape) * rng.choice([0.01, 0.3, 1.0], size=(3000, 1))
    y = x + d
    r = np.linalg.norm(d, axis=1)
    G = np.linalg.norm(problem.grad(x), axis=1)
    change = np.linalg.norm(problem.grad(y) - problem.grad(x), axis=1)
    gap = problem.value(y) - problem.value(x) - (problem.grad(x) * d).sum(axis=1)
    for l1 in l1_values:
        L0, L1 = problem.pair(l1)
        assert np.all(change <= l0l1.segment_bound(L0, L1, G, r) * (1 + 1e-9) + 1e-12)
        assert np.all(gap <= l0l1.descent_remainder(L0, L1, G, r) * (1 + 1e-9) + 1e-12)


def _until_all_reach(eps):
    """``run`` that stops once every start has met eps (a start that never does runs to its bound)."""
    def stop(G):
        return bool(np.all(G.min(axis=0) <= eps))
    return lambda *args, **kwargs: _run(*args, stop=stop, check_every=50, **kwargs)


def _exact_cases():
    rng = np.random.default_rng(3)
    for k in range(6):
        yield Quartic(d=5, c=float(rng.uniform(0.2, 3))), float(rng.uniform(0.2, 5)), 0.8
        a = float(rng.uniform(0.3, 4))
        yield Cosh(d=5, a=a), a * float(rng.uniform(1, 2)), 1.5 / a
    yield Cosh(d=500, a=1.0), 1.0, 0.3  # high-dimensional
    yield Quadratic(tuple(np.logspace(-1, 1, 5))), 0.0, 1.0
    yield Cauchy(d=5), 0.0, 2.0


@pytest.mark.parametrize("method", ["clipped", "normalized", "gd"])
def test_exact_iteration_bounds_are_never_exceeded(method):
    rng = np.random.default_rng(4)
    checked = 0
    for problem, l1, scale in _exact_cases():
        L0, L1 = problem.pair(l1)
        x0 = scale * rng.standard_normal((6, problem.d))
        f0 = problem.value(x0)
        M = problem.max_grad_norm(float(f0.max()))
        for eps in (0.5, 0.05, 0.005):
            steps = B.default_steps(L0, L1, eps=eps, M=M)
            run = _until_all_reach(eps)
            if method == "clipped":
                bounds = [B.clipped_gd_iterations(L0, L1, f - problem.f_star, eps) for f in f0]
                kind = "gd" if L1 == 0 else "clipped"
                tr = run(problem, kind, x0, steps=int(min(max(bounds), 50_000)) + 1, lr=steps["clipped_eta"],
                         gamma=None if L1 == 0 else steps["clipped_gamma"])
            elif method == "normalized":
                bounds = [B.normalized_gd_iterations(L0, L1, f - problem.f_star, eps) for f in f0]
                tr = run(problem, "normalized", x0, steps=int(min(max(bounds), 50_000)) + 1, lr=steps["normalized_eta"])
            else:
                bounds = [B.gd_iterations(L0, L1, f - problem.f_star, eps, problem.max_grad_norm(f), eta=steps["gd_eta"])
                          for f in f0]
                tr = run(problem, "gd", x0, steps=int(min(max(bounds), 50_000)) + 1, lr=steps["gd_eta"])
            T = iterations_to(tr.grad_norm, [eps], "min_norm")[0]
            ran = tr.grad_norm.shape[0] - 1
            for t, bound in zip(T, bounds):
                where = f"{problem.describe()}, {method}, eps {eps}: T = {t}, bound {bound}"
                if math.isfinite(t):
                    assert t <= bound, where
                    checked += 1
                else:  # not reached: only allowed if the bound lies beyond the steps run
                    assert bound > ran, where
    assert checked > 100


def test_exact_bound_is_tight_on_the_ramp():
    # Slope s = 1.25 eps: GD gains eta s^2 per step while the bound counts kappa eta eps^2 with
    # kappa = 3/4, so bound / measured -> s^2 / (kappa eps^2) = 2.083 as the ramp gets long.
    eps = 0.1
    p = PseudoHuber(d=10, s=1.25 * eps, delta=1.25 * eps)
    L0, L1 = p.pair()
    tr = run(p, "gd", p.start(1.0), steps=2000, lr=B.default_steps(L0, L1)["clipped_eta"])
    T = iterations_to(tr.grad_norm, [eps], "min_norm")[0, 0]
    assert B.clipped_gd_iterations(L0, L1, 1.0, eps) / T == pytest.approx(1.5625 / 0.75, rel=0.03)


# --- the registry -----------------------------------------------------------------------------

def test_every_bound_names_its_source_measure_and_status():
    for key, bound in B.BOUNDS.items():
        assert bound.key == key and bound.citation.strip()
        assert bound.measure in B.MEASURES
        assert bound.constants in ("exact", "order-only") and bound.kind in ("upper", "lower")
        assert bound.setting in ("deterministic", "stochastic")
        value = bound(L0=2.0, L1=1.0, delta=1.0, eps=0.01, sigma=1.0, M=5.0)
        assert value > 0 and math.isfinite(value)
        assert bound(L0=2.0, L1=1.0, delta=1.0, eps=0.001, sigma=1.0, M=5.0) / value == pytest.approx(
            10 ** bound.eps_exponent, rel=0.2)
    exact = {k for k, b in B.BOUNDS.items() if b.constants == "exact"}
    assert exact == {"ours-clipped-gd", "ours-normalized-gd", "ours-gd"}
    assert B.BOUNDS["adams-2025"].constants == "order-only" and "not" in B.BOUNDS["adams-2025"].note


def test_a_bound_asks_for_missing_constants():
    with pytest.raises(ValueError, match="needs M"):
        B.BOUNDS["ours-gd"](L0=1.0, L1=1.0, delta=1.0, eps=0.1)


def test_measure_conversions():
    assert B.implies("avg_sq_norm", "min_expected_norm")
    assert B.implies("min_expected_norm", "avg_sq_norm") is None
    assert B.implies("min_norm", "min_expected_norm") is None
    assert B.implies("min_norm", "min_expected_norm", deterministic=True)
    assert B.implies("avg_sq_norm_whp", "avg_expected_norm") is None
    assert B.convert(10.0, "avg_sq_norm", "avg_expected_norm") == 10.0
    with pytest.raises(ValueError, match="gives no bound"):
        B.convert(10.0, "min_expected_norm", "avg_sq_norm")
    with pytest.raises(ValueError, match="unknown measure"):
        B.implies("grad_small", "avg_sq_norm")


def test_recommend_and_bad_input():
    rec = B.recommend(2.0, 4.0, eps=0.1, delta=1.0)
    assert rec["step"] == 0.25 and rec["clip_threshold"] == pytest.approx(0.5) and rec["max_step_length"] == 0.125
    with pytest.raises(ValueError, match="L0 must be finite and > 0"):
        B.recommend(0.0, 1.0, eps=0.1, delta=1.0)
    with pytest.raises(ValueError, match="eps must be finite and > 0"):
        B.clipped_gd_iterations(1.0, 1.0, 1.0, 0.0)
    assert B.normalized_gd_iterations(1.0, 1.0, 1.0, 0.1, eta=10.0) == math.inf  # void, not negative
