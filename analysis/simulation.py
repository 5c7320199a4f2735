r"""Monte Carlo of the stationary laws of m, V (AdamS) and S (Adam), vectorized over chains and a grid.

**What is simulated.** Each chain runs the recursions of :mod:`analysis.stationary` on its own noise
sequence xi_1, xi_2, ... and is read once, at its last step; chains are independent, so every
estimate's standard error comes from the spread across chains.

**One noise path serves every mu/sigma.** The recursions are linear in g, so with the noise-only
exponential moving averages

.. math::

    u_t = \beta_1 u_{t-1} + (1-\beta_1)\xi_t, \quad A_t = \beta_2 A_{t-1} + (1-\beta_2)\xi_t, \quad
    B_t = \beta_2 B_{t-1} + (1-\beta_2)\xi_t^2

(started at 0) the chains started at the noise-free fixed point :math:`m_0 = \mu`, :math:`S_0 = \mu^2`
satisfy exactly :math:`m_t = \mu + \sigma u_t` and :math:`S_t = \mu^2 + 2\mu\sigma A_t + \sigma^2 B_t`,
and :math:`V_t = \beta_2 (\mu + \sigma u_{t-1})^2 + (1-\beta_2)(\mu + \sigma\xi_t)^2`. The simulator
advances (u, A, B) once per (beta1, beta2) pair and evaluates every (mu, sigma) of that pair from
them: the grid points of one pair share their noise (common random numbers), which makes their
*differences* precise; each point's own standard error is unaffected. ``tests/test_simulation.py``
checks the identity against a plain per-chain loop (:func:`reference_chain`).

**Burn-in** (:func:`burn_in`). Starting at the noise-free fixed point, only the noise part has to
forget its start. After b steps E[S_b] = mu^2 + sigma^2 (1 - beta2^b), so the bias of E[S] is
sigma^2 beta2^b, while no estimate of E[S] from n chains has a standard error below
sigma^2 sqrt(2 (1 - beta2) / ((1 + beta2) n)) (the part of Var[S] that comes from xi^2 alone). For V
the bias is beta2 a sigma^2 beta1^(2(b-1)) against a standard error of at least (1 - beta2) sigma^2
sqrt(2/n). b is the smallest number of steps that puts both biases below ``tol`` (default 1%) of
those floors; the variances' relative biases are the squares of the means', so they are smaller
still. AR(1) noise multiplies the momentum's variance deficit by at most (1 + rho)/(1 - rho) and
is given the corresponding extra steps.

**Seeds.** Chains come in blocks of :data:`BLOCK`; block k of the pair (beta1, beta2) draws from
``np.random.SeedSequence(seed, spawn_key=(bits(beta1), bits(beta2), k))``. Reruns give identical
numbers, adding grid points does not change the others, and the thread count does not matter.
"""
from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping

import numpy as np
from tqdm.auto import tqdm

from analysis._validate import check_grid
from analysis.noise import AR1, Gaussian, Noise, StudentT

__all__ = ["BLOCK", "Estimate", "Simulation", "simulate", "burn_in", "reference_chain", "block_rngs",
           "Gaussian", "StudentT", "AR1"]

BLOCK = 8192  # chains per block: the working arrays of a block stay in the L2 cache
DEFAULT_QUANTILES = (0.01, 0.05, 0.5, 0.95, 0.99)
Z95 = 1.959963984540054


def burn_in(beta1: float, beta2: float, chains: int, *, tol: float = 0.01, memory: float = 0.0) -> int:
    """Steps after which the start's bias is below ``tol`` standard errors (see the module docstring).

    >>> burn_in(0.9, 0.95, 10_000), burn_in(0.999, 0.999, 10_000)
    (209, 12658)
    """
    if not (0 <= beta1 < 1 and 0 <= beta2 < 1):
        raise ValueError(f"betas must lie in [0, 1), got ({beta1}, {beta2})")
    if chains < 2:
        raise ValueError(f"need at least 2 chains for a standard error, got {chains}")
    if not 0 < tol < 1:
        raise ValueError(f"tol must lie in (0, 1), got {tol}")
    steps = 1
    if beta2 > 0:  # E[S]: beta2^b <= tol * sqrt(2 (1 - beta2) / ((1 + beta2) n))
        floor = tol * math.sqrt(2 * (1 - beta2) / ((1 + beta2) * chains))
        steps = max(steps, math.ceil(math.log(floor) / math.log(beta2)))
    if beta1 > 0 and beta2 > 0:  # E[V]: beta2 a beta1^(2(b-1)) c <= tol (1 - beta2) sqrt(2/n)
        a = (1 - beta1) / (1 + beta1)
        inflation = (1 + memory) / (1 - memory)
        floor = tol * (1 - beta2) * math.sqrt(2 / chains) / (beta2 * a * inflation)
        if floor < 1:
            steps = max(steps, 1 + math.ceil(math.log(floor) / (2 * math.log(beta1))))
    if memory > 0:  # the noise's own start: rho^b <= tol / sqrt(n)
        steps = max(steps, math.ceil(math.log(tol / math.sqrt(chains)) / math.log(memory)))
    return steps


def _bits(x: float) -> int:
    return int(np.float64(x).view(np.uint64))


def block_rngs(seed: int, beta1: float, beta2: float, chains: int) -> list[tuple[int, np.random.Generator]]:
    """(size, generator) for each block of chains of the pair (beta1, beta2)."""
    sizes = [min(BLOCK, chains - start) for start in range(0, chains, BLOCK)]
    return [(n, np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_bits(beta1), _bits(beta2), k))))
            for k, n in enumerate(sizes)]


def _run_block(beta1: float, beta2: float, steps: int, n: int, rng: np.random.Generator, noise: Noise):
    """Advance one block of noise EMAs ``steps`` times; return (xi_t, u_{t-1}, u_t, A_t, B_t)."""
    draw = noise.stream(rng, n)
    xi, tmp = np.empty(n), np.empty(n)
    u, B = np.zeros(n), np.zeros(n)
    A = u if beta1 == beta2 else np.zeros(n)  # with equal betas A_t is u_t
    u_prev = u
    for step in range(steps):
        if step == steps - 1:
            u_prev = u.copy()
        draw(xi)
        np.subtract(xi, u, out=tmp)  # u += (1 - beta1)(xi - u)  <=>  u = beta1 u + (1 - beta1) xi
        tmp *= 1 - beta1
        u += tmp
        if A is not u:
            np.subtract(xi, A, out=tmp)
            tmp *= 1 - beta2
            A += tmp
        np.multiply(xi, xi, out=tmp)  # B += (1 - beta2)(xi^2 - B)
        tmp -= B
        tmp *= 1 - beta2
        B += tmp
    return xi, u_prev, u, A, B


def reference_chain(mu: float, sigma: float, beta1: float, beta2: float, xi) -> tuple[float, float, float, float]:
    """The plain recursions for one chain on the noise sequence ``xi``, from m_0 = mu, S_0 = mu^2.

    Returns (m_{t-1}, m_t, V_t, S_t) at the last step. A slow, obvious twin of the simulator.
    """
    m, S, m_prev, V = mu, mu * mu, mu, math.nan
    for x in xi:
        g = mu + sigma * float(x)
        V = beta2 * m * m + (1 - beta2) * g * g  # uses m_{t-1}
        m_prev = m
        m = beta1 * m + (1 - beta1) * g
        S = beta2 * S + (1 - beta2) * g * g
    return m_prev, m, V, S


@dataclass(frozen=True)
class Estimate:
    """A Monte-Carlo estimate and its standard error (arrays of the grid's shape)."""

    value: np.ndarray
    se: np.ndarray

    def z(self, reference) -> np.ndarray:
        """Standard scores (value - reference) / se."""
        return (self.value - reference) / self.se


def _mean(x):
    return Estimate(x.mean(axis=1), x.std(axis=1, ddof=1) / math.sqrt(x.shape[1]))


def _variance(x):
    n = x.shape[1]
    centered = x - x.mean(axis=1, keepdims=True)
    var = (centered**2).sum(axis=1) / (n - 1)
    m4 = (centered**4).mean(axis=1)
    return Estimate(var, np.sqrt(np.maximum(m4 - var**2, 0.0) / n))  # SE of a sample variance


def _rms(x):
    sq = _mean(x * x)
    rms = np.sqrt(sq.value)
    return Estimate(rms, sq.se / (2 * rms))  # delta method


def _quantile(sorted_x, p):
    """Order-statistic estimate; SE from the distribution-free 95% interval (binomial ranks) / 3.92."""
    n = sorted_x.shape[1]
    half = Z95 * math.sqrt(n * p * (1 - p))
    lo, hi = max(0, math.floor(n * p - half)), min(n - 1, math.ceil(n * p + half))
    value = np.quantile(sorted_x, p, axis=1)
    return Estimate(value, (sorted_x[:, hi] - sorted_x[:, lo]) / (2 * Z95))


def _ratio_of_means(x, y):
    """E[x]/E[y]; SE from the influence function (x - Ex)/Ey - Ex (y - Ey)/Ey^2 (delta method)."""
    mx, my = x.mean(axis=1, keepdims=True), y.mean(axis=1, keepdims=True)
    influence = (x - mx) / my - mx * (y - my) / my**2
    return Estimate((mx / my)[:, 0], influence.std(axis=1, ddof=1) / math.sqrt(x.shape[1]))


def _ratio_of_variances(x, y):
    """Var[x]/Var[y]; SE from the influence function of a ratio of two variances (delta method)."""
    cx, cy = x - x.mean(axis=1, keepdims=True), y - y.mean(axis=1, keepdims=True)
    vx, vy = (cx**2).mean(axis=1, keepdims=True), (cy**2).mean(axis=1, keepdims=True)
    influence = (cx**2 - vx) / vy - vx * (cy**2 - vy) / vy**2
    return Estimate((vx / vy)[:, 0], influence.std(axis=1, ddof=1) / math.sqrt(x.shape[1]))


def _ratio_of_rms(x, y):
    """sqrt(E[x^2]/E[y^2]); influence R/2 ((x^2 - E x^2)/E x^2 - (y^2 - E y^2)/E y^2) (delta method)."""
    a, b = x * x, y * y
    ma, mb = a.mean(axis=1, keepdims=True), b.mean(axis=1, keepdims=True)
    ratio = np.sqrt(ma / mb)
    influence = ratio / 2 * ((a - ma) / ma - (b - mb) / mb)
    return Estimate(ratio[:, 0], influence.std(axis=1, ddof=1) / math.sqrt(x.shape[1]))


def _statistics(m, m_prev, V, S, quantiles) -> dict[str, Estimate]:
    out = {"E_m": _mean(m_prev), "Var_m": _variance(m_prev), "E_V": _mean(V), "Var_V": _variance(V),
           "E_S": _mean(S), "Var_S": _variance(S),
           "E_ratio": _ratio_of_means(V, S), "Var_ratio": _ratio_of_variances(V, S)}
    steps = {"adams_step": m / np.sqrt(V), "adam_step": m / np.sqrt(S)}
    out["rms_step_ratio"] = _ratio_of_rms(steps["adams_step"], steps["adam_step"])
    for name, step in steps.items():
        out[f"{name}_mean"] = _mean(step)
        out[f"{name}_rms"] = _rms(step)
        ordered = np.sort(step, axis=1)
        for p in quantiles:
            out[f"{name}_q{p:g}"] = _quantile(ordered, p)
    return out


@dataclass(frozen=True)
class Simulation(Mapping):
    """Estimates by key (``sim["E_V"].value``, ``sim["E_V"].se``), plus how they were obtained."""

    estimates: dict[str, Estimate]
    max_abs_step: dict[str, np.ndarray]  # largest |m/sqrt(V)| and |m/sqrt(S)| over the chains
    steps: np.ndarray  # steps per chain at each grid point
    chains: int
    seed: int
    noise: Noise
    quantiles: tuple[float, ...]
    samples: dict[str, np.ndarray] | None = field(default=None, repr=False)  # grid shape + (chains,)

    def __getitem__(self, key: str) -> Estimate:
        return self.estimates[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.estimates)

    def __len__(self) -> int:
        return len(self.estimates)


def simulate(
    mu, sigma, beta1, beta2, *, chains: int = 10_000, steps: int | None = None, seed: int = 0,
    noise: Noise = Gaussian(), quantiles: tuple[float, ...] = DEFAULT_QUANTILES, tol: float = 0.01,
    keep_samples: bool = False, workers: int | None = None, progress: bool | None = None,
) -> Simulation:
    """Monte-Carlo estimates of the stationary statistics at every point of the broadcast grid.

    ``steps=None`` runs each (beta1, beta2) pair for :func:`burn_in` steps; an explicit ``steps`` is
    used as given (for studying the approach to stationarity). Keys of the result: ``E_m``,
    ``Var_m`` (of m_{t-1}), ``E_V``, ``Var_V``, ``E_S``, ``Var_S``, the ratios ``E_ratio`` =
    E[V]/E[S] and ``Var_ratio`` = Var[V]/Var[S] (SEs by the delta method, which accounts for V and
    S sharing their noise), and for the normalized steps
    ``adams_step`` = m_t/sqrt(V_t) and ``adam_step`` = m_t/sqrt(S_t): ``_mean``, ``_rms`` and
    ``_q<p>`` for each quantile level p, and ``rms_step_ratio`` = RMS(adams_step)/RMS(adam_step). ``workers`` threads (default: up to 2) share the blocks;
    ``progress=None`` shows a bar only on a terminal.
    """
    mu, sigma, beta1, beta2 = check_grid(mu, sigma, beta1, beta2)
    if int(chains) != chains or chains < 2:
        raise ValueError(f"chains must be an integer >= 2, got {chains}")
    if steps is not None and (int(steps) != steps or steps < 1):
        raise ValueError(f"steps must be a positive integer or None, got {steps}")
    if not all(0 < p < 1 for p in quantiles):
        raise ValueError(f"quantile levels must lie in (0, 1), got {quantiles}")
    chains, shape = int(chains), mu.shape
    flat = [x.ravel() for x in (mu, sigma, beta1, beta2)]
    pairs: dict[tuple[float, float], list[int]] = {}
    for i, key in enumerate(zip(flat[2].tolist(), flat[3].tolist())):
        pairs.setdefault(key, []).append(i)
    n_steps = {pair: int(steps) if steps is not None else burn_in(*pair, chains, tol=tol, memory=noise.memory)
               for pair in pairs}
    tasks = [(pair, n, rng) for pair in pairs for n, rng in block_rngs(seed, *pair, chains)]
    workers = workers or min(2, os.cpu_count() or 1)
    runner: Callable = lambda task: _run_block(*task[0], n_steps[task[0]], task[1], task[2], noise)
    with ThreadPoolExecutor(workers) as pool:
        blocks = list(tqdm(pool.map(runner, tasks), total=len(tasks), disable=None if progress is None else not progress,
                           desc="stationary Monte Carlo", unit="block"))
    by_pair: dict[tuple[float, float], list] = {}
    for (pair, _, _), block in zip(tasks, blocks):
        by_pair.setdefault(pair, []).append(block)

    size = mu.size
    estimates: dict[str, np.ndarray] = {}
    ses: dict[str, np.ndarray] = {}
    max_abs = {"adams_step": np.empty(size), "adam_step": np.empty(size)}
    samples = {k: np.empty((size, chains)) for k in ("m", "V", "S")} if keep_samples else None
    step_count = np.empty(size, dtype=np.int64)
    for pair, idx in pairs.items():
        b2 = pair[1]
        xi, u_prev, u, A, B = (np.concatenate(parts) for parts in zip(*by_pair[pair]))
        m_ = flat[0][idx, None]
        s_ = flat[1][idx, None]
        m_prev = m_ + s_ * u_prev
        m = m_ + s_ * u
        V = b2 * m_prev**2 + (1 - b2) * (m_ + s_ * xi) ** 2
        S = m_**2 + 2 * m_ * s_ * A + s_**2 * B  # = S_t started at mu^2 (exact identity)
        for key, est in _statistics(m, m_prev, V, S, quantiles).items():
            estimates.setdefault(key, np.empty(size))[idx] = est.value
            ses.setdefault(key, np.empty(size))[idx] = est.se
        max_abs["adams_step"][idx] = np.abs(m / np.sqrt(V)).max(axis=1)
        max_abs["adam_step"][idx] = np.abs(m / np.sqrt(S)).max(axis=1)
        step_count[idx] = n_steps[pair]
        if samples is not None:
            samples["m"][idx], samples["V"][idx], samples["S"][idx] = m, V, S
    return Simulation(
        estimates={k: Estimate(v.reshape(shape), ses[k].reshape(shape)) for k, v in estimates.items()},
        max_abs_step={k: v.reshape(shape) for k, v in max_abs.items()},
        steps=step_count.reshape(shape), chains=chains, seed=seed, noise=noise, quantiles=tuple(quantiles),
        samples=None if samples is None else {k: v.reshape(shape + (chains,)) for k, v in samples.items()},
    )
