"""The synthetic problems (gradients, Hessian norms, frontiers, noise) and the vectorized simulator."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import adams
from analysis.bounds import experiments as bx
from analysis import bounds as B
from analysis.bounds.simulations import exponent_fit, iterations_to, run, tuned_stop
from analysis.bounds.problems import Cauchy, Cosh, PseudoHuber, Quadratic, Quartic, oracle

PROBLEMS = [Quadratic((0.1, 1.0, 5.0)), Quartic(d=4, c=2.0), Cosh(d=3, a=1.5), Cauchy(d=3), PseudoHuber(d=3, s=0.5, delta=0.2),
            PseudoHuber(d=1, s=2.0, delta=0.5)]


@pytest.mark.parametrize("problem", PROBLEMS, ids=lambda p: f"{p.name}-{p.d}")
def test_gradient_and_hessian_norm_against_autograd(problem):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, problem.d))
    torch_f = _torch_value(problem)
    for row in x:
        xt = torch.tensor(row, dtype=torch.float64)
        grad = torch.func.grad(torch_f)(xt).numpy()
        hess = torch.func.hessian(torch_f)(xt).numpy()
        assert np.allclose(problem.grad(row)[0], grad, rtol=1e-10, atol=1e-12)
        assert problem.hessian_norm(row)[0] == pytest.approx(np.abs(np.linalg.eigvalsh(hess)).max(), rel=1e-9)
        assert problem.value(row)[0] == pytest.approx(float(torch_f(xt)), rel=1e-12)


def _torch_value(p):
    if isinstance(p, Quadratic):
        lam = torch.tensor(p.eigenvalues, dtype=torch.float64)
        return lambda x: 0.5 * (lam * x**2).sum()
    if isinstance(p, Quartic):
        return lambda x: 0.25 * p.c * (x**2).sum() ** 2
    if isinstance(p, Cosh):
        return lambda x: ((torch.cosh(p.a * x) - 1) / p.a**2).sum()
    if isinstance(p, Cauchy):
        return lambda x: torch.log1p(x**2).sum()
    return lambda x: p.s * (torch.sqrt(p.delta**2 + (x**2).sum()) - p.delta)


@pytest.mark.parametrize("problem", PROBLEMS, ids=lambda p: f"{p.name}-{p.d}")
def test_frontier_holds_everywhere_and_is_attained(problem):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((20000, problem.d)) * rng.choice([0.01, 0.3, 1.0, 3.0], size=(20000, 1))
    H, G = problem.hessian_norm(x), np.linalg.norm(problem.grad(x), axis=1)
    for l1 in (0.3, 1.0, 2.0, 5.0):
        L0 = float(problem.frontier(l1))
        if math.isinf(L0):
            assert np.max(H - l1 * G) > 10  # unbounded: far points already pass any small L0
            continue
        gap = H - l1 * G
        assert np.all(gap <= L0 * (1 + 1e-12))
        if isinstance(problem, Quartic):  # attained at ||grad f|| = 8c / L1^3, i.e. ||x|| = 2 / L1
            x_star = np.zeros((1, problem.d))
            x_star[0, 0] = 2 / l1
            top = problem.hessian_norm(x_star)[0] - l1 * np.linalg.norm(problem.grad(x_star))
        else:  # attained at the minimizer, where the gradient vanishes
            top = problem.hessian_norm(np.zeros((1, problem.d)))[0]
        assert top == pytest.approx(L0, rel=1e-12)


@pytest.mark.parametrize("problem", PROBLEMS[:3] + PROBLEMS[4:5], ids=lambda p: p.name)
def test_max_grad_norm_on_sublevel_sets(problem):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((20000, problem.d)) * rng.choice([0.3, 1.0, 2.0], size=(20000, 1))
    level = 1.5
    inside = problem.value(x) <= level
    M = problem.max_grad_norm(level)
    assert np.linalg.norm(problem.grad(x[inside]), axis=1).max() <= M * (1 + 1e-12)
    # The maximizer: along the largest eigenvector (quadratic) or one axis (the rest), on the boundary.
    axis = int(np.argmax(problem.eigenvalues)) if isinstance(problem, Quadratic) else 0
    lo, hi = 0.0, 50.0
    for _ in range(200):
        mid = (lo + hi) / 2
        point = np.zeros((1, problem.d))
        point[0, axis] = mid
        lo, hi = (mid, hi) if problem.value(point)[0] <= level else (lo, mid)
    point[0, axis] = lo
    assert np.linalg.norm(problem.grad(point)) == pytest.approx(M, rel=1e-6)


@pytest.mark.parametrize("noise", ["gaussian", "bounded"])
def test_oracle_noise_has_the_stated_size_and_is_seeded(noise):
    p = Quartic(d=8)
    g = oracle(p, 0.7, noise)
    x = np.ones((20000, 8))
    a, b = g(x, np.random.default_rng(3)), g(x, np.random.default_rng(3))
    assert np.array_equal(a, b)
    err = a - p.grad(x)
    sq = (err**2).sum(axis=1)
    assert abs(err.mean(axis=0)).max() < 4 * 0.7 / math.sqrt(8) / math.sqrt(20000)
    assert abs(sq.mean() - 0.49) < 4 * sq.std() / math.sqrt(20000) + 1e-12
    if noise == "bounded":
        assert np.allclose(np.sqrt(sq), 0.7)
    with pytest.raises(ValueError, match="noise must be one of"):
        oracle(p, 1.0, "cauchy")


def test_adaptive_methods_match_torch_optimizers():
    p = Cosh(d=6, a=1.0)
    x0 = np.random.default_rng(4).standard_normal((3, 6))
    for method, make in (("adams", lambda w: adams.AdamS([w], lr=0.05, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0)),
                         ("adams-paper", lambda w: adams.AdamS([w], lr=0.05, betas=(0.9, 0.95), eps=1e-8,
                                                              weight_decay=0.0, bias_correction=False)),
                         ("adam", lambda w: torch.optim.Adam([w], lr=0.05, betas=(0.9, 0.95), eps=1e-8))):
        tr = run(p, method, x0, steps=30, lr=0.05, betas=(0.9, 0.95))
        w = torch.tensor(x0, dtype=torch.float64, requires_grad=True)
        opt = make(w)
        norms = []
        for _ in range(30):
            norms.append(np.linalg.norm(p.grad(w.detach().numpy()), axis=1))
            w.grad = torch.tensor(p.grad(w.detach().numpy()))
            opt.step()
        norms.append(np.linalg.norm(p.grad(w.detach().numpy()), axis=1))
        assert np.allclose(tr.grad_norm, np.array(norms), rtol=1e-10), method


def test_clipped_and_normalized_steps_by_hand():
    p = Quadratic((1.0, 1.0))
    x0 = np.array([[3.0, 4.0], [0.3, 0.4]])  # gradient norms 5 and 0.5
    clipped = run(p, "clipped", x0, steps=1, lr=0.5, gamma=1.0)
    # first row clipped to length 1 (5 -> 4), second a plain step of 0.5 * 0.5 = 0.25 (0.5 -> 0.25)
    assert np.allclose(clipped.grad_norm[1], [4.0, 0.25])
    normalized = run(p, "normalized", x0, steps=1, lr=0.1)
    assert np.allclose(normalized.grad_norm[1], [4.9, 0.4])


def test_runs_are_reproducible_and_rows_independent():
    p = Quartic(d=5)
    x0 = np.full((4, 5), 0.5)
    a = run(p, "adams", x0, steps=50, lr=0.01, sigma=0.3, seed=7)
    b = run(p, "adams", x0, steps=50, lr=0.01, sigma=0.3, seed=7)
    c = run(p, "adams", x0, steps=50, lr=0.01, sigma=0.3, seed=8)
    assert np.array_equal(a.grad_norm, b.grad_norm) and not np.array_equal(a.grad_norm, c.grad_norm)
    diverging = run(Cosh(d=2, a=3.0), "gd", np.array([[1.0, 1.0], [0.1, 0.1]]), steps=20, lr=np.array([5.0, 0.01]))
    assert list(diverging.diverged) == [True, False]


def test_iterations_to_each_measure_by_hand():
    G = np.array([[4.0, 2.0], [2.0, 2.0], [1.0, 0.5], [0.5, 0.5]])  # (steps + 1, seeds)
    assert iterations_to(G, [1.0], "min_norm").tolist() == [[2.0, 2.0]]
    assert iterations_to(G, [1.5], "min_expected_norm").tolist() == [2.0]  # means 3, 2, 0.75, 0.5
    assert iterations_to(G, [1.6], "avg_expected_norm").tolist() == [4.0]  # running means 3, 2.5, 1.92, 1.56
    assert iterations_to(G, [0.1], "avg_sq_norm").tolist() == [math.inf]
    with pytest.raises(ValueError, match="measure must be"):
        iterations_to(G, [1.0], "median")


def test_exponent_fit_recovers_a_known_exponent():
    t = np.arange(1, 200_001, dtype=float)[:, None, None]
    G = np.broadcast_to(t ** (-1 / 3), (t.size, 2, 4)).copy()  # min E||grad|| <= eps after eps^-3 steps
    G[:, 1] *= 3.0  # a worse learning rate: never the best
    fit = exponent_fit(G, [0.1, 0.05, 0.03, 0.02], "min_expected_norm", n_boot=50)
    assert fit["slope"] == pytest.approx(3.0, abs=0.01) and set(fit["best_lr_index"]) == {0}


def test_tuned_stop_gives_the_same_answer_as_a_full_run():
    p = bx.ramp(0.2)
    lrs = np.array([0.003, 0.03, 0.3])
    lr = np.repeat(lrs, 8)
    full = run(p, "adams", p.start(0.1, lr.size), steps=4000, lr=lr, sigma=1.0, seed=1)
    short = run(p, "adams", p.start(0.1, lr.size), steps=4000, lr=lr, sigma=1.0, seed=1,
                stop=tuned_stop(0.2, "avg_expected_norm", 3, 8), check_every=50)
    assert short.grad_norm.shape[0] < full.grad_norm.shape[0]
    T_full = iterations_to(full.grad_norm.reshape(-1, 3, 8), [0.2], "avg_expected_norm").min()
    T_short = iterations_to(short.grad_norm.reshape(-1, 3, 8), [0.2], "avg_expected_norm").min()
    assert T_full == T_short and np.isfinite(T_full)


def test_theory_for_trajectory_on_points_from_a_known_pair():
    G = np.linspace(0.1, 5.0, 40)
    L = 2.0 + 0.5 * G  # points on the line L0 = 2, L1 = 0.5
    grid = [0.0, 0.25, 0.5, 1.0]
    out = bx.theory_for_trajectory(L, G, delta=3.0, eps=0.1, l1_grid=grid)
    # max over the points of 2 + (0.5 - L1) G: at G = 5 below L1 = 0.5, at G = 0.1 above
    expected = {l1: 2.0 + (0.5 - l1) * (5.0 if l1 < 0.5 else 0.1) for l1 in grid}
    assert out["L0"] == pytest.approx(expected[out["L1"]])
    assert out["iterations"] == pytest.approx(min(B.clipped_gd_iterations(expected[l1], l1, 3.0, 0.1) for l1 in grid))
    assert out["step"] == pytest.approx(1 / (2 * out["L0"]))
    with pytest.raises(ValueError, match="at least two probe points"):
        bx.theory_for_trajectory([np.nan, 1.0], [1.0, np.nan], delta=1.0)


def test_summarize_exact_table_counts_groups_and_keeps_the_tightest_case():
    rows = {
        "family": ["ramp", "ramp", "ramp", "cosh"],
        "method": ["gd", "gd", "gd", "clipped"],
        "T": [10.0, 4.0, float("inf"), 7.0],
        "bound": [20.0, 6.0, 1e9, 70.0],
        "eps": [0.1, 0.2, 0.01, 0.1],
    }
    rows["ratio"] = [b / t for b, t in zip(rows["bound"], rows["T"])]
    out = bx.summarize_exact_table(rows)
    assert (out["cases"], out["reached"]) == (4, 3)
    ramp, cosh = out["by_family_method"]
    assert (ramp["family"], ramp["method"], ramp["cases"], ramp["reached"]) == ("ramp", "gd", 3, 2)
    assert (ramp["ratio_min"], ramp["ratio_max"]) == (1.5, 2.0)  # the unreached case is not in the range
    assert out["tightest"][0] == {"family": "ramp", "method": "gd", "T": 4.0, "bound": 6.0, "eps": 0.2, "ratio": 1.5}
    assert cosh["ratio_min"] == cosh["ratio_max"] == 10.0 and out["tightest"][1]["eps"] == 0.1


def test_summarize_exact_table_refuses_a_table_it_cannot_read():
    with pytest.raises(ValueError, match="lacks the column"):
        bx.summarize_exact_table({"family": ["ramp"], "method": ["gd"], "T": [1.0]})
    with pytest.raises(ValueError, match="differ in length"):
        bx.summarize_exact_table({"family": ["ramp"], "method": ["gd"], "T": [1.0, 2.0], "bound": [1.0],
                                  "ratio": [1.0]})


def test_thin_curves_samples_log_spaced_steps_and_keeps_the_summaries():
    steps = 1000
    result = {"L0": 1.0, "L1": 2.0,
              "adams": {"step_median": np.arange(1, steps + 1, dtype=float), "grad_norm": np.arange(steps + 1.0),
                        "ratio_median": 0.4, "fraction_above_safe": 0.1}}
    out = bx.thin_curves(result, points=10)
    at = out["adams"]["at_step"]
    assert at[0] == 1 and at[-1] == steps and np.all(np.diff(at) > 0) and len(at) <= 10
    assert np.array_equal(out["adams"]["step_median"], at.astype(float))  # step t is entry t - 1
    assert np.array_equal(out["adams"]["grad_norm"], at - 1.0)
    assert (out["L0"], out["adams"]["ratio_median"], out["adams"]["fraction_above_safe"]) == (1.0, 0.4, 0.1)
    assert result["adams"]["step_median"].size == steps  # the input is not changed
    with pytest.raises(ValueError, match="points"):
        bx.thin_curves(result, points=1)
