r"""Optimizers run on the problems of :mod:`analysis.bounds.problems`, vectorized over independent runs, and
the iteration counts the bounds of :mod:`analysis.bounds` talk about.

:func:`run` advances ``n`` independent runs at once (rows of an ``(n, d)`` array; each row may have
its own learning rate and clipping) and records the true gradient norm :math:`\|\nabla f(x_t)\|` at
every iterate, whatever gradients the method saw. Methods:

==============  ==========================================================================
``gd``          :math:`x \leftarrow x - \eta g` (SGD when ``sigma > 0``)
``clipped``     :math:`x \leftarrow x - \min(\eta, \gamma/\|g\|)\,g`: steps no longer than
                :math:`\gamma`, i.e. clipping at gradient norm :math:`\gamma/\eta`
``normalized``  :math:`x \leftarrow x - \eta g/\|g\|`
``adam``        Adam with bias correction (Kingma and Ba), no weight decay
``adams``       AdamS, default form (bias-corrected), through :func:`adams.reference.adams_step`
``adams-paper`` AdamS, paper-text form (no bias correction)
==============  ==========================================================================

:func:`iterations_to` turns the recorded norms into the iteration count of each stationarity
measure (``analysis.bounds.MEASURES``); :func:`exponent_fit` fits the slope of log T against
log(1/eps) for the best of several learning rates, with a bootstrap interval over seeds.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from adams.reference import adams_step
from analysis.bounds.problems import Problem, oracle

__all__ = ["METHODS", "Trajectory", "run", "iterations_to", "tuned_iterations", "tuned_stop", "exponent_fit"]

METHODS = ("gd", "clipped", "normalized", "adam", "adams", "adams-paper")
EXPECTATION_MEASURES = ("min_expected_norm", "avg_expected_norm", "avg_sq_norm")


@dataclass
class Trajectory:
    """``grad_norm`` and ``value``: (steps + 1, n), the true ||grad f(x_t)|| and f(x_t) at every iterate
    (``inf`` once a run has left the finite numbers). ``step_median``/``step_q90``: (steps, n), the
    median and 90th percentile over coordinates of the adaptive methods' per-coordinate multiplier
    lr / (sqrt(denominator) + eps) applied to the (bias-corrected) momentum, when recorded."""

    method: str
    grad_norm: np.ndarray
    value: np.ndarray
    step_median: np.ndarray | None = None
    step_q90: np.ndarray | None = None

    @property
    def diverged(self) -> np.ndarray:
        return ~np.isfinite(self.grad_norm[-1])


def _per_row(name: str, value, n: int) -> np.ndarray:
    value = np.asarray(value, dtype=float)
    if value.ndim == 0:
        value = np.full(n, float(value))
    if value.shape != (n,):
        raise ValueError(f"{name} must be a number or have one value per run ({n}), got shape {value.shape}")
    if np.any(~(value > 0)):
        raise ValueError(f"{name} must be > 0")
    return value[:, None]


def _grow(buffer: np.ndarray, capacity: int) -> np.ndarray:
    out = np.empty((capacity,) + buffer.shape[1:])
    out[: len(buffer)] = buffer
    return out


def run(
    problem: Problem, method: str, x0, *, steps: int, lr, sigma: float = 0.0, noise: str = "gaussian",
    seed: int = 0, gamma=None, betas: tuple[float, float] = (0.9, 0.95), eps: float = 1e-8,
    record_step: bool = False, progress: bool | None = False, stop=None, check_every: int = 250,
) -> Trajectory:
    """Run ``method`` from the rows of ``x0`` (shape (n, d)) for ``steps`` steps.

    ``lr`` (and ``gamma`` for ``clipped``) is a number or one value per row. Gradients are
    ``grad f + sigma xi`` (:func:`analysis.bounds.problems.oracle`), drawn from ``np.random.default_rng(seed)``:
    the same seed gives the same numbers. ``stop(grad_norm_so_far)`` is asked every ``check_every``
    steps whether the run can end early (:func:`tuned_stop`); the arrays are then cut there.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps}")
    x = np.array(x0, dtype=float)
    if x.ndim != 2 or x.shape[1] != problem.d:
        raise ValueError(f"x0 must have shape (n, {problem.d}), got {x.shape}")
    n = x.shape[0]
    lr = _per_row("lr", lr, n)
    if method == "clipped":
        if gamma is None:
            raise ValueError("clipped needs gamma, the largest step length")
        gamma = _per_row("gamma", gamma, n)
    beta1, beta2 = betas
    record_step = record_step and method in ("adam", "adams", "adams-paper")
    gradient = oracle(problem, sigma, noise)
    rng = np.random.default_rng(seed)
    capacity = min(steps + 1, 4096)  # buffers grow by doubling, so a run that stops early stays small
    G, F = np.empty((capacity, n)), np.empty((capacity, n))
    med = np.empty((capacity, n)) if record_step else None
    q90 = np.empty((capacity, n)) if record_step else None
    m = np.zeros_like(x)
    v = np.zeros_like(x)
    alive = np.ones(n, dtype=bool)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for t in tqdm(range(steps + 1), disable=not progress, desc=method, leave=False):
            if t == capacity:
                capacity = min(2 * capacity, steps + 1)
                G, F = _grow(G, capacity), _grow(F, capacity)
                med, q90 = (_grow(med, capacity), _grow(q90, capacity)) if record_step else (None, None)
            G[t] = np.where(alive, np.linalg.norm(problem.grad(x), axis=1), np.inf)
            F[t] = np.where(alive, problem.value(x), np.inf)
            alive &= np.isfinite(G[t]) & np.isfinite(F[t])
            if t == steps or (stop is not None and t and t % check_every == 0 and stop(G[: t + 1])):
                G, F = G[: t + 1], F[: t + 1]
                med, q90 = (med[:t], q90[:t]) if record_step else (None, None)
                break
            g = gradient(x, rng)
            if method == "gd":
                x = x - lr * g
            elif method in ("clipped", "normalized"):
                norm = np.linalg.norm(g, axis=1, keepdims=True)
                scale = np.minimum(lr, gamma / norm) if method == "clipped" else lr / norm
                x = x - np.where(norm > 0, scale, 0.0) * g
            elif method == "adam":
                m = beta1 * m + (1 - beta1) * g
                v = beta2 * v + (1 - beta2) * g**2
                mult = lr / (np.sqrt(v / (1 - beta2 ** (t + 1))) + eps)
                x = x - mult * m / (1 - beta1 ** (t + 1))
            else:  # AdamS, the package's reference update (t counted from 1)
                x, m, nu = adams_step(x, g, m, t + 1, lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=0.0,
                                        bias_correction=method == "adams")
                mult = lr / (np.sqrt(nu) + eps)
            if record_step:
                med[t] = np.median(mult, axis=1)
                q90[t] = np.quantile(mult, 0.9, axis=1)
            x = np.where(alive[:, None], x, 0.0)  # frozen once non-finite; recorded as inf above
    return Trajectory(method, G, F, med, q90)


def tuned_stop(eps: float, measure: str, n_lr: int, seeds: int, margin: float = 2.0):
    """A ``stop`` for :func:`run` over rows ordered (learning rate, seed): end once the best learning
    rate has reached ``eps`` in ``measure`` and ``margin`` times as many steps have run, so that
    bootstrap resamples of the seeds, which may need a little longer, are covered too.

    It reads only the iterates added since its last call (running sums), so checking is cheap.
    """
    if measure not in EXPECTATION_MEASURES:
        raise ValueError(f"measure must be one of {EXPECTATION_MEASURES}, got {measure!r}")
    power = 2 if measure == "avg_sq_norm" else 1
    state = {"done": 0, "sum": np.zeros(n_lr), "hit": np.inf}

    def stop(grad_norm: np.ndarray) -> bool:
        new = grad_norm[state["done"]:].reshape(-1, n_lr, seeds)
        if np.isinf(state["hit"]) and new.size:
            mean = (new.astype(float) ** power).mean(axis=-1)  # (k, n_lr)
            if measure == "min_expected_norm":
                curve, offset = mean, 0
            else:
                cum = state["sum"] + np.cumsum(mean, axis=0)
                state["sum"] = cum[-1]
                curve = cum / np.arange(state["done"] + 1, state["done"] + 1 + len(mean))[:, None]
                offset = 1
            hit = (curve <= eps**power).any(axis=1)
            if hit.any():
                state["hit"] = state["done"] + int(hit.argmax()) + offset
        state["done"] = grad_norm.shape[0]
        return bool(np.isfinite(state["hit"]) and grad_norm.shape[0] >= margin * state["hit"])

    return stop


def _first(curve: np.ndarray, eps: np.ndarray) -> np.ndarray:
    """First index along axis 0 where ``curve <= eps`` (one row per eps), ``inf`` where never."""
    hit = curve[None] <= eps.reshape((-1,) + (1,) * curve.ndim)
    first = hit.argmax(axis=1).astype(float)
    return np.where(hit.any(axis=1), first, np.inf)


def iterations_to(grad_norm: np.ndarray, eps, measure: str) -> np.ndarray:
    """Iterations T needed to reach each ``eps`` in ``measure`` (a key of ``analysis.bounds.MEASURES``).

    ``grad_norm`` has shape (steps + 1, ..., seeds). ``min_norm`` is per run (output shape
    (len(eps), ..., seeds)); the expectation measures average over the last axis (seeds), so their
    output has shape (len(eps), ...). T counts iterates x_0..x_{T-1} for the averages, and is the index
    of the first iterate that meets eps for the minima. ``inf`` where ``steps`` did not suffice.
    """
    eps = np.atleast_1d(np.asarray(eps, dtype=float))
    if np.any(~(eps > 0)):
        raise ValueError("eps must be > 0")
    G = np.asarray(grad_norm, dtype=float)
    if measure == "min_norm":
        return _first(G, eps)
    if measure not in EXPECTATION_MEASURES:
        raise ValueError(f"measure must be 'min_norm' or one of {EXPECTATION_MEASURES}, got {measure!r}")
    return _from_mean((G ** _power(measure)).mean(axis=-1), eps, measure)


def _power(measure: str) -> int:
    return 2 if measure == "avg_sq_norm" else 1


def _from_mean(mean: np.ndarray, eps: np.ndarray, measure: str) -> np.ndarray:
    """T for an expectation measure from the seed mean of ||grad f||^power (axis 0 is time)."""
    if measure == "min_expected_norm":
        return _first(mean, eps)
    power = _power(measure)
    running = np.cumsum(mean, axis=0) / np.arange(1, mean.shape[0] + 1).reshape((-1,) + (1,) * (mean.ndim - 1))
    return _first(running, eps**power) + 1  # the running mean at index k averages k + 1 iterates


def tuned_iterations(grad_norm: np.ndarray, eps, measure: str) -> tuple[np.ndarray, np.ndarray]:
    """With ``grad_norm`` of shape (steps + 1, n_lr, seeds): T(eps) of the best learning rate for each
    eps in an expectation measure, and the index of that learning rate."""
    T = iterations_to(grad_norm, eps, measure)  # (n_eps, n_lr)
    best = np.argmin(T, axis=1)
    return T[np.arange(T.shape[0]), best], best


def exponent_fit(grad_norm, eps, measure: str, *, n_boot: int = 500, seed: int = 0, level: float = 0.95,
                 against=None) -> dict:
    """Slope p of log T = c + p log(1/eps) for the best learning rate at each eps, with a bootstrap
    interval that resamples seeds (the last axis) and re-picks the best learning rate each time.
    ``against`` (one positive value per entry) replaces 1/eps as the quantity T is fitted against,
    e.g. the initial gradient norm of problems started farther out, with ``eps`` then fixed.

    ``grad_norm`` is one array of shape (steps + 1, n_lr, seeds) used for every eps, or a list with
    one such array per eps (when the problem itself depends on eps). Only eps values reached by the
    full sample enter the fit; at least three are needed. The interval covers seed-to-seed noise,
    not the coarseness of the learning-rate grid.
    """
    eps = np.atleast_1d(np.asarray(eps, dtype=float))
    curves = list(grad_norm) if isinstance(grad_norm, (list, tuple)) else [np.asarray(grad_norm)] * eps.size
    if len(curves) != eps.size:
        raise ValueError(f"got {len(curves)} gradient-norm arrays for {eps.size} values of eps")
    seeds = curves[0].shape[-1]
    if any(c.ndim != 3 or c.shape[-1] != seeds for c in curves):
        raise ValueError("each gradient-norm array must have shape (steps + 1, n_lr, seeds) with the same seeds")
    powered = [np.asarray(c, dtype=float) ** _power(measure) for c in curves]
    # a seed left out of a resample contributes nothing, even where it diverged (inf * 0 would be nan):
    # the finite part is averaged, and a mean is inf where a drawn seed is
    finite = [np.where(np.isfinite(c), c, 0.0) for c in powered]
    infinite = [(~np.isfinite(c)).astype(float) for c in powered]

    def tuned(weights):  # a bootstrap resample of the seeds is a vector of counts
        per_lr = [_from_mean(np.where(inf @ weights > 0, np.inf, fin @ weights / seeds), np.array([e]), measure)[0]
                  for fin, inf, e in zip(finite, infinite, eps)]
        return np.array([T.min() for T in per_lr]), np.array([int(T.argmin()) for T in per_lr])

    T, best = tuned(np.ones(seeds))
    ok = np.isfinite(T) & (T > 0)
    if ok.sum() < 3:
        raise ValueError(f"only {int(ok.sum())} eps values were reached within the steps run; need 3")
    if against is None:
        x = np.log(1 / eps)
    else:
        against = np.asarray(against, dtype=float)
        if against.shape != eps.shape or not np.all(against > 0):
            raise ValueError(f"against needs one positive value per eps ({eps.size}), got {against.tolist()}")
        x = np.log(against)
    slope = float(np.polyfit(x[ok], np.log(T[ok]), 1)[0])
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_boot):
        Tb, _ = tuned(np.bincount(rng.integers(0, seeds, seeds), minlength=seeds).astype(float))
        good = ok & np.isfinite(Tb) & (Tb > 0)
        if good.sum() >= 3:
            draws.append(np.polyfit(x[good], np.log(Tb[good]), 1)[0])
    alpha = (1 - level) / 2
    lo, hi = np.quantile(draws, [alpha, 1 - alpha]) if draws else (np.nan, np.nan)
    return {"slope": slope, "ci": [float(lo), float(hi)], "eps": eps[ok].tolist(), "T": T[ok].tolist(),
            "x": np.exp(x[ok]).tolist(),
            "best_lr_index": best[ok].tolist(), "n_boot": len(draws), "seeds": int(seeds)}
