"""The experiments of the ``bounds_vs_simulation`` notebook, as functions a test can call.

- :func:`exact_bound_table`: clipped, normalized and fixed-step GD with the step sizes of the exact
  theorems in :mod:`analysis.bounds.l0l1`, on problems with known (L0, L1), over a grid of eps and of L1;
  measured iterations next to the bound for every starting point.
- :func:`ramp` and :func:`exponent_study`: the worst-case-shaped family (a pseudo-Huber ramp whose
  slope is tied to eps), the methods with their best learning rate at each eps, and the fitted
  exponent of T in 1/eps with a bootstrap interval over seeds.
- :func:`effective_steps`: AdamS's and Adam's per-coordinate step lr / sqrt(denominator) along noisy
  runs, next to the safe step 1 / (L0 + L1 ||grad f||).
- :func:`theory_for_trajectory`: the (L0, L1) pair a probe table supports, and what the clipped-GD
  theorem then recommends, next to what a training run used.
- :func:`summarize_exact_table` and :func:`thin_curves`: what the notebook's results JSON keeps of the
  first and third (the counts, the tightest cases, curves at log-spaced steps), not every run.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

import smoothness
from analysis.bounds import catalog as B
from analysis.bounds.simulations import exponent_fit, iterations_to, run, tuned_stop
from analysis.bounds.problems import Cosh, Problem, PseudoHuber, Quartic

MAX_STEPS = 200_000  # the longest exact-bound run; a bound above it cannot be checked

__all__ = ["START_RADII", "GROWTH_SLOPE", "start_distance_study", "start_distance_verdict", "MAX_STEPS", "exact_cases", "exact_bound_table", "ramp", "exponent_study", "effective_steps", "theory_for_trajectory",
           "summarize_exact_table", "thin_curves"]


def _starts(problem: Problem, n: int, scale: float, rng: np.random.Generator) -> np.ndarray:
    return scale * rng.standard_normal((n, problem.d))


def exact_cases(quick: bool) -> list[tuple[Problem, float, float]]:
    """(problem, L1, start scale): quartic along its frontier (L1 free), cosh over its growth rate a."""
    l1s = (0.5, 2.0) if quick else (0.25, 0.5, 1.0, 2.0, 4.0)
    avals = (1.0, 3.0) if quick else (0.5, 1.0, 2.0, 4.0)
    cases = [(Quartic(d=10, c=1.0), l1, 0.7) for l1 in l1s]
    cases += [(Cosh(d=10, a=a), a, 1.5 / a) for a in avals]
    return cases


def _bound(method: str, L0: float, L1: float, delta: float, eps: float, M_run: float, M_start: float) -> float:
    """The bound for one start. Fixed-step GD ran with the step set by M_run (all starts together);
    the start's own sublevel set has gradients at most M_start <= M_run, which the theorem may use."""
    if method == "clipped":
        return B.clipped_gd_iterations(L0, L1, delta, eps)
    if method == "normalized":
        return B.normalized_gd_iterations(L0, L1, delta, eps)
    return B.gd_iterations(L0, L1, delta, eps, M_start, eta=B.default_steps(L0, L1, M=M_run)["gd_eta"])


def _measure(problem, method, x0, L0, L1, eps_grid, M, max_steps) -> np.ndarray:
    """Iterations to each eps (rows) for each start (columns), with the theorem's step sizes."""
    steps = B.default_steps(L0, L1, M=M)
    if method == "normalized":  # the step depends on eps: one run per eps
        out = []
        for e in eps_grid:
            eta = B.default_steps(L0, L1, eps=e)["normalized_eta"]
            tr = run(problem, "normalized", x0, steps=max_steps, lr=eta,
                     stop=lambda G, e=e: bool(np.all(G.min(axis=0) <= e)))
            out.append(iterations_to(tr.grad_norm, [e], "min_norm")[0])
        return np.array(out)
    kwargs = {"lr": steps["gd_eta"]} if method == "gd" else {"lr": steps["clipped_eta"], "gamma": steps["clipped_gamma"]}
    kind = "gd" if method == "gd" or math.isinf(steps["clipped_gamma"]) else "clipped"
    tr = run(problem, kind, x0, steps=max_steps, stop=lambda G: bool(np.all(G.min(axis=0) <= min(eps_grid))),
             **kwargs)
    return iterations_to(tr.grad_norm, eps_grid, "min_norm")


def exact_bound_table(quick: bool, *, seed: int = 0, starts: int | None = None, max_steps: int = MAX_STEPS) -> list[dict]:
    """One row per (problem, L1, method, eps, start): measured T, the exact bound, their ratio.

    Three families: the ramp (pseudo-Huber with slope 1.25 eps and L0 = 1, one start at f - f* = 1;
    the shape that makes the bounds tight), the quartic over a grid of L1 on its frontier
    L0 = 4c/L1^2, and cosh over its growth rate a (L1 = a, L0 = 1). ``inf`` T means ``max_steps``
    did not suffice.
    """
    rng = np.random.default_rng(seed)
    n = starts or (4 if quick else 16)
    rows = []
    methods = ("clipped", "normalized", "gd")
    ramp_eps = (0.3, 0.15) if quick else (0.4, 0.2, 0.1, 0.05)
    for e in ramp_eps:
        p = PseudoHuber(d=10, s=1.25 * e, delta=1.25 * e)
        x0 = p.start(1.0)
        L0, L1 = p.pair()
        M = p.max_grad_norm(1.0)
        for method in methods:
            T = _measure(p, method, x0, L0, L1, [e], M, max_steps)[0]
            rows.append({"problem": p.describe(), "family": "ramp", "method": method, "L0": L0, "L1": L1, "eps": e,
                         "start": 0, "delta": 1.0, "T": float(T[0]), "bound": _bound(method, L0, L1, 1.0, e, M, M)})
    eps_grid = (1.0, 0.1, 0.01) if quick else (1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001)
    for p, l1, scale in exact_cases(quick):
        L0, L1 = p.pair(l1)
        x0 = _starts(p, n, scale, rng)
        delta = p.value(x0) - p.f_star
        M = p.max_grad_norm(float(p.value(x0).max()))
        for method in methods:
            T = _measure(p, method, x0, L0, L1, eps_grid, M, max_steps)
            for i, e in enumerate(eps_grid):
                for j in range(n):
                    M_j = p.max_grad_norm(float(p.value(x0[j:j + 1])[0]))
                    rows.append({"problem": p.describe(), "family": p.name, "method": method, "L0": L0, "L1": L1,
                                 "eps": e, "start": j, "delta": float(delta[j]), "T": float(T[i, j]),
                                 "bound": _bound(method, L0, L1, float(delta[j]), e, M, M_j)})
    return rows


def ramp(eps: float, *, d: int = 10, gap: float = 0.1) -> PseudoHuber:
    """The ramp for eps: slope 2 eps (so E||grad f|| <= eps only near the bottom), L0 = 1."""
    return PseudoHuber(d=d, s=2 * eps, delta=2 * eps)


def exponent_study(methods: Sequence[str], eps_grid: Sequence[float], lrs: Sequence[float], *, seeds: int, sigma: float,
                   gap: float = 0.1, max_steps: int = 100_000, measure: str = "avg_expected_norm", seed: int = 0,
                   n_boot: int = 300, betas: dict | None = None) -> dict:
    """For each method: the best learning rate's T(eps) on the ramp family, and the fitted exponent.

    Every method sees noise of the same size sigma (Gaussian, E||noise||^2 = sigma^2); clipped SGD
    clips at gradient norm sigma. Rows are (learning rate, seed); runs stop once the best learning
    rate has reached eps and twice as many steps have run.
    """
    lrs = np.asarray(lrs, dtype=float)
    out = {}
    for method in methods:
        curves = []
        for i, e in enumerate(eps_grid):
            p = ramp(e)
            lr = np.repeat(lrs, seeds)
            kwargs = {"gamma": lr * sigma} if method == "clipped" else {}
            if betas and method in betas:
                kwargs["betas"] = betas[method]
            tr = run(p, method, p.start(gap, lr.size), steps=max_steps, lr=lr, sigma=sigma, seed=seed + i,
                     stop=tuned_stop(e, measure, lrs.size, seeds), **kwargs)
            curves.append(tr.grad_norm.reshape(tr.grad_norm.shape[0], lrs.size, seeds))
        try:
            fit = exponent_fit(curves, eps_grid, measure, n_boot=n_boot, seed=seed)
        except ValueError as err:
            fit = {"slope": float("nan"), "ci": [float("nan")] * 2, "error": str(err)}
        fit["best_lr"] = [float(lrs[i]) for i in fit.get("best_lr_index", [])]
        out[method] = fit
    return out


def effective_steps(problem: Problem, *, sigma: float, lr: float, steps: int, seeds: int, betas=(0.9, 0.95),
                    start_scale: float = 1.0, seed: int = 0) -> dict:
    """Median over coordinates (then over seeds) of lr / sqrt(denominator) for AdamS and Adam, and the
    safe step 1 / (L0 + L1 ||grad f(x_t)||) along each run, with the problem's default (L0, L1)."""
    L0, L1 = problem.pair()
    x0 = start_scale * np.random.default_rng(seed).standard_normal((seeds, problem.d))
    out = {"L0": L0, "L1": L1}
    for method in ("adams", "adam"):
        tr = run(problem, method, x0, steps=steps, lr=lr, sigma=sigma, seed=seed, betas=betas, record_step=True)
        safe = B.safe_step(L0, L1, tr.grad_norm[:-1])
        ratio = tr.step_median / safe
        out[method] = {"step_median": np.median(tr.step_median, axis=1), "step_q90": np.median(tr.step_q90, axis=1),
                       "safe": np.median(safe, axis=1), "grad_norm": np.median(tr.grad_norm, axis=1),
                       "ratio_median": float(np.median(ratio)), "ratio_q90": float(np.quantile(ratio, 0.9)),
                       "fraction_above_safe": float(np.mean(ratio > 1))}
    return out


def theory_for_trajectory(local_smoothness, grad_norm, *, delta: float, eps: float | None = None,
                          l1_grid=None) -> dict:
    """Pick (L0, L1) on the sample frontier of a probe table by minimizing the exact clipped-GD bound
    at ``eps`` (default: the smallest gradient norm in the table), and what the theorem recommends.

    The sample frontier only sees the points probed, so it is a lower bound on the true one: the
    recommended steps are, if anything, too large.
    """
    L = np.asarray(local_smoothness, dtype=float)
    G = np.asarray(grad_norm, dtype=float)
    keep = np.isfinite(L) & np.isfinite(G) & (G > 0)
    if keep.sum() < 2:
        raise ValueError("need at least two probe points with finite local smoothness and gradient norm")
    eps = float(G[keep].min()) if eps is None else float(eps)
    l1_grid = np.logspace(-3, 3, 121) if l1_grid is None else np.asarray(l1_grid, dtype=float)
    L0, L1, value = smoothness.choose_pair(L[keep], G[keep], lambda a, b: B.clipped_gd_iterations(a, b, delta, eps)
                                           if a > 0 else math.inf, l1_grid)
    return {**B.recommend(L0, L1, eps, delta), "eps": eps, "delta": float(delta), "points": int(keep.sum())}


def summarize_exact_table(rows: dict[str, Sequence]) -> dict:
    """The exact-bound table (columns as lists, as :func:`exact_bound_table` returns them, plus
    ``ratio`` = bound / T) reduced to what a reader checks: per (family, method) the number of cases,
    how many reached eps within the run, and the range of bound / T; and the tightest case (smallest
    ratio among those reached) of each group, whole. A violation is a ratio below 1."""
    columns = {k: np.asarray(v) for k, v in rows.items()}
    missing = {"family", "method", "T", "bound", "ratio"} - set(columns)
    if missing:
        raise ValueError(f"the exact-bound table lacks the column(s) {sorted(missing)}")
    lengths = {k: len(v) for k, v in columns.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"the exact-bound table's columns differ in length: {lengths}")
    reached = np.isfinite(columns["T"].astype(float))
    groups, tightest = [], []
    for family, method in dict.fromkeys(zip(columns["family"].tolist(), columns["method"].tolist())):
        mask = (columns["family"] == family) & (columns["method"] == method)
        ratio = columns["ratio"].astype(float)[mask & reached]
        group = {"family": family, "method": method, "cases": int(mask.sum()), "reached": int((mask & reached).sum())}
        if ratio.size:
            group.update(ratio_min=float(ratio.min()), ratio_median=float(np.median(ratio)), ratio_max=float(ratio.max()))
            i = np.flatnonzero(mask & reached)[int(np.argmin(ratio))]
            tightest.append({k: v[i].item() if hasattr(v[i], "item") else v[i] for k, v in columns.items()})
        groups.append(group)
    return {"cases": int(reached.size), "reached": int(reached.sum()), "by_family_method": groups, "tightest": tightest}


def thin_curves(result: dict, points: int = 25) -> dict:
    """A copy of an :func:`effective_steps` result with every per-step curve kept at ``points``
    log-spaced steps (1 to the last, each step at most once) and ``at_step`` naming them; the
    summaries over all steps (medians, quantiles, the share above the safe step) are kept as they are."""
    if isinstance(points, bool) or not isinstance(points, int) or points < 2:
        raise ValueError(f"points must be an integer >= 2, got {points!r}")
    out: dict = {}
    for key, value in result.items():
        if not isinstance(value, dict):
            out[key] = value
            continue
        curves = {k: np.asarray(v) for k, v in value.items() if np.ndim(v) == 1}
        if not curves:
            out[key] = dict(value)
            continue
        steps = min(len(v) for v in curves.values())  # grad_norm has one more point (the last iterate)
        at = np.unique(np.geomspace(1, steps, points).round().astype(int))
        out[key] = {k: (np.asarray(v)[at - 1] if k in curves else v) for k, v in value.items()}
        out[key]["at_step"] = at
    return out


#: how far out the start-distance study begins: |x_i| = r on every coordinate of the cosh problem
START_RADII = {False: (2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0), True: (2.0, 4.0, 6.0)}
#: the slope of log T against log r (the starting distance) that separates "grows with the initial
#: gradient norm" (fixed-step GD: T ~ |grad f(x_0)| ~ e^r, a local slope of about r, above 2 on every
#: start used) from "grows with the distance" (a step of bounded length: T ~ r, slope 1)
GROWTH_SLOPE = 2.0


def start_distance_study(methods: Sequence[str], radii: Sequence[float], lrs: Sequence[float], *, seeds: int,
                         sigma: float = 0.01, eps: float = 0.01, a: float = 1.0, d: int = 10, seed: int = 0,
                         max_steps: int = 50_000, n_boot: int = 300) -> dict:
    """How each method's iteration count grows with the initial gradient norm under (L0, L1)-smoothness.

    The problem is :class:`~analysis.bounds.problems.Cosh` (L0 = 1, L1 = ``a``), started at
    ``|x_i| = r`` on every coordinate (random signs per seed), so |grad f(x_0)| = sqrt(d) sinh(a r) / a
    grows exponentially with ``r``; a seed draws the signs and scales each coordinate's distance by
    a factor from [1/2, 1], so no single learning rate lands every coordinate near 0 in one jump.
    Gradients carry Gaussian noise of size ``sigma``. For each method
    start, every learning rate of ``lrs`` runs over ``seeds`` seeds; T is the first iterate at
    which the seed mean of the true |grad f(x_t)| is at most ``eps``, for the best learning rate.
    Clipped GD takes steps no longer than its learning rate (clipping at gradient norm 1). Two fits
    per method (:func:`analysis.bounds.simulations.exponent_fit`, bootstrap over seeds, re-picking the
    best rate each time): ``fits``, the slope of log T against log r, what the rule judges (1 for a
    count that grows like the distance); ``fits_grad``, the slope against log |grad f(x_0)| (near 0
    then, since |grad f(x_0)| grows like e^r; 1 for a count that grows like the gradient norm).
    """
    lrs = np.asarray(lrs, dtype=float)
    problem = Cosh(d=d, a=a)
    starts = [r * np.random.default_rng([seed, i]).choice([-1.0, 1.0], size=(seeds, d))
              * np.random.default_rng([seed, i, 1]).uniform(0.5, 1.0, size=(seeds, d)) for i, r in enumerate(radii)]
    grad0 = [float(np.linalg.norm(problem.grad(x), axis=1).mean()) for x in starts]
    out, by_grad = {}, {}
    for method in methods:
        curves = []
        for i, r in enumerate(radii):
            lr = np.repeat(lrs, seeds)
            x0 = np.tile(starts[i], (lrs.size, 1))
            kwargs = {"gamma": lr} if method == "clipped" else {}
            tr = run(problem, method, x0, steps=max_steps, lr=lr, sigma=sigma, seed=seed + 1000 * (i + 1),
                     stop=tuned_stop(eps, "min_expected_norm", lrs.size, seeds), **kwargs)
            curves.append(tr.grad_norm.reshape(tr.grad_norm.shape[0], lrs.size, seeds))
        for target, against in ((out, list(radii)), (by_grad, grad0)):
            try:
                fit = exponent_fit(curves, [eps] * len(radii), "min_expected_norm", n_boot=n_boot, seed=seed,
                                   against=against)
            except ValueError as err:
                fit = {"slope": float("nan"), "ci": [float("nan")] * 2, "error": str(err)}
            fit["best_lr"] = [float(lrs[j]) for j in fit.get("best_lr_index", [])]
            target[method] = fit
    return {"fits": out, "fits_grad": by_grad, "radii": list(radii), "grad0": grad0, "eps": eps, "sigma": sigma,
            "a": a, "d": d, "seeds": seeds, "lrs": lrs.tolist()}


def start_distance_verdict(fits: dict, threshold: float = GROWTH_SLOPE, method: str = "adams") -> str:
    """Row 61: does ``method``'s iteration count grow with the initial gradient norm like fixed-step
    GD's, or only with the distance like clipped and normalized GD's? From 95% intervals of the
    slopes of log T against log r (``fits`` of :func:`start_distance_study`):

    * "not testable here" if the family does not show the theory's separation: GD's interval is not
      wholly above ``threshold``, or clipped or normalized GD's is wholly above it;
    * else "holds at our scale" if ``method``'s interval lies below ``threshold`` (it does not grow
      like GD's), "does not hold" if it lies above, "inconclusive" otherwise.

    >>> f = {"gd": {"ci": [3.5, 3.9]}, "clipped": {"ci": [0.9, 1.1]}, "normalized": {"ci": [0.9, 1.0]}}
    >>> start_distance_verdict({**f, "adams": {"ci": [0.9, 1.1]}}), start_distance_verdict({**f, "adams": {"ci": [3.0, 3.6]}})
    ('holds at our scale', 'does not hold')
    """
    def ci(name):
        lo, hi = fits[name]["ci"]
        return (float(lo), float(hi)) if np.isfinite(lo) and np.isfinite(hi) else (float("nan"), float("nan"))

    gd = ci("gd")
    if not gd[0] > threshold or any(ci(m)[0] > threshold for m in ("clipped", "normalized") if m in fits):
        return "not testable here"
    lo, hi = ci(method)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "inconclusive"
    if hi < threshold:
        return "holds at our scale"
    if lo > threshold:
        return "does not hold"
    return "inconclusive"
