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
*differences* precise; each point's own standard error is unaffected. ``tests/analysis/stationary/test_simulation.py``
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

**Cost, before anything is allocated** (:func:`plan`). Every argument is checked first, then the
peak memory (float64 words: the noise EMAs of every block, the per-pair arrays the statistics are
computed from, the samples if kept, the results) and the work (chain-steps: chains x steps summed
over the (beta1, beta2) pairs, each step of a block also counted as :data:`STEP_COST_CHAINS`
chains for its fixed cost) are estimated. :func:`simulate` refuses with :class:`SimulationTooLarge`
a run past ``max_memory`` bytes, ``max_work`` chain-steps, or ``max_steps`` steps per chain (the
burn-in grows like 1/(1 - beta2)); the message names the estimate, the limit and the keyword.

**Seeds.** Chains come in blocks of :data:`BLOCK`; block k of the pair (beta1, beta2) draws from
``np.random.SeedSequence(seed, spawn_key=(bits(beta1), bits(beta2), k))``. Reruns give identical
numbers, adding grid points does not change the others, and the thread count does not matter.
"""
from __future__ import annotations

import math
import os
import reprlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping

import numpy as np
from tqdm.auto import tqdm

from analysis.stationary.noise import AR1, Gaussian, Noise, StudentT, check_noise

__all__ = ["BLOCK", "Estimate", "Simulation", "SimulationTooLarge", "Plan", "plan", "simulate", "burn_in",
           "reference_chain", "block_rngs", "Gaussian", "StudentT", "AR1"]

BLOCK = 8192  # chains per block: the working arrays of a block stay in the L2 cache
DEFAULT_QUANTILES = (0.01, 0.05, 0.5, 0.95, 0.99)
Z95 = 1.959963984540054
MAX_MEMORY = 4 * 2**30  # bytes; the default of simulate(max_memory=)
MAX_WORK = 4 * 10**9  # chain-steps, about a minute; the notebooks' largest run is 7e8
MAX_STEPS = 10**6  # steps per chain; burn-in reaches it near 1 - beta2 = 1e-5
STEP_COST_CHAINS = 512  # one step of a block costs ~8 us before its chains: the time of ~500 chains
_STATS_WORDS_PER_POINT = 11  # float64 arrays of `chains` alive while one grid point's statistics are computed
_BYTES_PER_PAIR = 4096  # Python objects per (beta1, beta2) pair: generators, tasks, blocks


MAX_QUANTILES = 100  # quantile levels a run may ask for
MAX_MAGNITUDE = 1e30  # |mu| and sigma: fourth powers must stay finite in float64


class SimulationTooLarge(ValueError):
    """A simulation whose estimated memory, work or steps per chain is past the caller's limit."""


def _count(name: str, value, minimum: int) -> int:
    """``value`` as an int >= ``minimum`` (integral floats such as 1e4 are accepted), or a named error."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    whole = (isinstance(value, (int, np.integer))  # any size: a huge count is refused by the limits
             or (math.isfinite(value) and int(value) == value))
    if not (whole and value >= minimum):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {reprlib.repr(value)}")
    if value > 2**62:
        raise SimulationTooLarge(f"{name} = {reprlib.repr(value)} is past any run this machine can do")
    return int(value)


def _limit(name: str, value) -> float:
    """A positive limit (``math.inf`` switches it off)."""
    real = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    if not (real and value > 0):
        raise ValueError(f"{name} must be a positive number (math.inf for no limit), got {value!r}")
    return value


def burn_in(beta1: float, beta2: float, chains: int, *, tol: float = 0.01, memory: float = 0.0) -> int:
    """Steps after which the start's bias is below ``tol`` standard errors (see the module docstring).

    >>> burn_in(0.9, 0.95, 10_000), burn_in(0.999, 0.999, 10_000)
    (209, 12658)
    """
    if not (0 <= beta1 < 1 and 0 <= beta2 < 1):
        raise ValueError(f"betas must lie in [0, 1), got ({beta1}, {beta2})")
    chains = _count("chains", chains, 2)  # at least 2 for a standard error
    if not 0 < tol < 1:
        raise ValueError(f"tol must lie in (0, 1), got {tol}")
    if not 0 <= memory < 1:
        raise ValueError(f"memory (the noise's lag-one correlation) must lie in [0, 1), got {memory}")
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

    def at(self, index) -> tuple[float, float]:
        """``(value, se)`` of one grid point, as floats: ``format_pm(*est.at(0))``."""
        return float(np.asarray(self.value)[index]), float(np.asarray(self.se)[index])


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


def _grid_array(name: str, x) -> np.ndarray:
    """One grid argument as a non-empty, finite float array (its range is checked by the caller)."""
    try:
        raw = np.asarray(x)
        if raw.dtype.kind not in "iufO":  # no strings, booleans, complex numbers or dates
            raise TypeError
        array = raw.astype(float, copy=False)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number or an array of real numbers, got {reprlib.repr(x)}") from None
    if array.size == 0:
        raise ValueError(f"{name} is empty: the grid needs at least one value of it")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite, got {array[~np.isfinite(array)][0]}")
    return array


def _check_grid(mu, sigma, beta1, beta2) -> tuple[list[np.ndarray], tuple[int, ...]]:
    """The four grid arguments as float arrays and their broadcast shape; nothing of that shape is made."""
    arrays = [_grid_array(name, x) for name, x in (("mu", mu), ("sigma", sigma), ("beta1", beta1), ("beta2", beta2))]
    for name, array in (("mu", arrays[0]), ("sigma", arrays[1])):
        if np.any(np.abs(array) > MAX_MAGNITUDE):
            raise ValueError(f"{name} must lie within +-{MAX_MAGNITUDE:g}, got {np.abs(array).max():g}: the variances "
                             "hold fourth powers of the gradients, which would overflow; the statistics scale "
                             "with sigma, so rescale mu and sigma together")
    if not np.all(arrays[1] > 0):
        raise ValueError(f"sigma must be > 0 (with sigma = 0 there is no noise to study), got {arrays[1].min()}")
    for name, beta in (("beta1", arrays[2]), ("beta2", arrays[3])):
        if not np.all((beta >= 0) & (beta < 1)):
            raise ValueError(f"{name} must lie in [0, 1), got values from {beta.min()} to {beta.max()}")
    try:
        shape = np.broadcast_shapes(*(a.shape for a in arrays))
    except ValueError:
        raise ValueError("mu, sigma, beta1 and beta2 do not broadcast together: shapes "
                         f"{', '.join(str(a.shape) for a in arrays)}") from None
    return arrays, shape


def _check_options(seed, quantiles, tol, keep_samples, workers, progress) -> tuple[tuple[float, ...], int]:
    """Checks of the keywords that do not size the run; returns the quantile levels and the worker count."""
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0 (reruns with one seed give identical numbers), got {seed!r}")
    try:
        levels = tuple(float(p) for p in quantiles)
    except (TypeError, ValueError):
        raise ValueError(f"quantiles must be a sequence of levels in (0, 1), got {reprlib.repr(quantiles)}") from None
    if not all(0 < p < 1 for p in levels):
        raise ValueError(f"quantile levels must lie in (0, 1), got {reprlib.repr(quantiles)}")
    if len(levels) > MAX_QUANTILES:
        raise ValueError(f"at most {MAX_QUANTILES} quantile levels, got {len(levels)} (each is a pass over every "
                         "chain at every grid point)")
    if isinstance(tol, bool) or not isinstance(tol, (int, float, np.integer, np.floating)) or not 0 < tol < 1:
        raise ValueError(f"tol must lie in (0, 1), got {tol!r}")
    if not isinstance(keep_samples, (bool, np.bool_)):
        raise ValueError(f"keep_samples must be True or False, got {keep_samples!r}")
    if progress is not None and not isinstance(progress, (bool, np.bool_)):
        raise ValueError(f"progress must be True, False or None, got {progress!r}")
    workers = min(2, os.cpu_count() or 1) if workers is None else _count("workers", workers, 1)
    return levels, workers


def _pairs(beta1: np.ndarray, beta2: np.ndarray, shape) -> tuple[list[tuple[float, float]], list[np.ndarray]]:
    """The distinct (beta1, beta2) of the grid, in order of first appearance, and the flat indices of each."""
    keys = np.stack([np.broadcast_to(b, shape).ravel() + 0.0 for b in (beta1, beta2)], axis=1)  # + 0.0: -0.0 is 0.0
    unique, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    groups = np.split(np.argsort(inverse.ravel(), kind="stable"), np.cumsum(np.bincount(inverse.ravel()))[:-1])
    order = np.argsort(first)
    return [tuple(unique[j].tolist()) for j in order], [groups[j] for j in order]


def _grid_words(size: int, n_keys: int, chains: int, keep_samples: bool) -> int:
    """float64 words that grow with the grid alone: flat copies and indices, results, kept samples."""
    return size * (8 + 2 * n_keys + 3) + (3 * size * chains if keep_samples else 0)


def _peak_bytes(chains, pairs, groups, n_keys, keep_samples, workers) -> int:
    """Estimated peak memory of :func:`simulate`, from the arrays it keeps (see the module docstring)."""
    size = sum(len(g) for g in groups)
    held = sum(chains * (4 if b1 == b2 else 5) for b1, b2 in pairs)  # (xi, u_prev, u, A, B); A is u if b1 = b2
    k = max(len(g) for g in groups)  # grid points of the largest pair
    stats = chains * (5 + _STATS_WORDS_PER_POINT * k) + 2 * n_keys * k  # one pair joined, its points, its results
    in_flight = workers * 3 * min(chains, BLOCK)  # scratch of the blocks being advanced
    words = held + stats + in_flight + _grid_words(size, n_keys, chains, keep_samples)
    return 8 * words + _BYTES_PER_PAIR * len(pairs)


def _work(chains: int, steps) -> int:
    """Chain-steps over the pairs, each step of a block adding STEP_COST_CHAINS for its fixed cost."""
    blocks = -(-chains // BLOCK)
    return sum(n * (chains + blocks * STEP_COST_CHAINS) for n in steps)


def _bytes(n: float) -> str:
    """A byte count for a reader: '3.13 GiB (3,360,398,136 bytes)'."""
    unit = max((u for u in range(1, 4) if n >= 1024**u), default=0)
    return f"{n / 1024**unit:.3g} {('KiB', 'MiB', 'GiB')[unit - 1]} ({n:,} bytes)" if unit else f"{n:,} bytes"


def _refuse(memory: int, work: int, problem: str) -> SimulationTooLarge:
    return SimulationTooLarge(f"simulate would need about {_bytes(memory)} of memory and {work:.3g} chain-steps "
                              f"of work; {problem}")


@dataclass(frozen=True)
class Plan:
    """What :func:`simulate` will run and what it will cost, worked out before anything large exists."""

    shape: tuple[int, ...]  # the broadcast grid
    chains: int
    pairs: list[tuple[float, float]]  # distinct (beta1, beta2), in order of first appearance
    steps: list[int]  # steps per chain of each pair
    memory: int  # estimated peak bytes
    work: int  # chain-steps (each step of a block also counts STEP_COST_CHAINS)
    quantiles: tuple[float, ...]
    workers: int
    groups: list[np.ndarray] = field(repr=False)  # flat grid indices of each pair


def plan(
    mu, sigma, beta1, beta2, *, chains: int = 10_000, steps: int | None = None, seed: int = 0,
    noise: Noise = Gaussian(), quantiles: tuple[float, ...] = DEFAULT_QUANTILES, tol: float = 0.01,
    keep_samples: bool = False, workers: int | None = None, progress: bool | None = None,
    max_memory: float = MAX_MEMORY, max_work: float = MAX_WORK, max_steps: float = MAX_STEPS,
) -> Plan:
    """Check every argument of :func:`simulate` and estimate its memory and work, or refuse the run.

    Raises ``ValueError`` naming a bad argument, and :class:`SimulationTooLarge` (a ``ValueError``)
    when the steps per chain, the memory or the work would pass ``max_steps``, ``max_memory``
    (bytes) or ``max_work`` (chain-steps). Only the grid's distinct (beta1, beta2) pairs and their
    indices are built, after a check that the grid itself fits in ``max_memory``.

    >>> p = plan([0.1, 1.0], 1.0, 0.9, 0.95, chains=10_000)
    >>> p.pairs, p.steps, p.work
    ([(0.9, 0.95)], [209], 2304016)
    """
    arrays, shape = _check_grid(mu, sigma, beta1, beta2)
    chains = _count("chains", chains, 2)
    if steps is not None:
        steps = _count("steps", steps, 1)
    levels, workers = _check_options(seed, quantiles, tol, keep_samples, workers, progress)
    check_noise(noise)
    max_memory, max_work, max_steps = (_limit(k, v) for k, v in
                                       (("max_memory", max_memory), ("max_work", max_work), ("max_steps", max_steps)))
    n_keys = 9 + 2 * (2 + len(levels))
    grid_bytes = 8 * _grid_words(math.prod(shape), n_keys, chains, keep_samples)
    if grid_bytes > max_memory:
        raise SimulationTooLarge(f"simulate would need at least {_bytes(grid_bytes)} of memory for the grid of "
                                 f"shape {shape} alone, past max_memory={max_memory:,} bytes; use fewer grid points "
                                 "(or keep_samples=False), or raise max_memory=")
    pairs, groups = _pairs(arrays[2], arrays[3], shape)
    n_steps = [steps if steps is not None else burn_in(*pair, chains, tol=tol, memory=noise.memory) for pair in pairs]
    memory, work = _peak_bytes(chains, pairs, groups, n_keys, keep_samples, workers), _work(chains, n_steps)
    longest = max(range(len(pairs)), key=n_steps.__getitem__)
    if n_steps[longest] > max_steps:
        (b1, b2), n = pairs[longest], n_steps[longest]
        what = (f"steps={n:,}" if steps is not None else f"(beta1, beta2) = ({b1}, {b2}) needs a burn-in of {n:,} "
                f"steps per chain (it grows like 1/(1 - beta2) = {1 / (1 - b2):.3g})")
        raise _refuse(memory, work, f"{what}, past max_steps={max_steps:,}; raise max_steps= to run it anyway, "
                                    "or pass a smaller steps= to stop before stationarity")
    if memory > max_memory:
        raise _refuse(memory, work, f"the memory is past max_memory={max_memory:,} bytes; use fewer chains or grid "
                                    "points, or raise max_memory=")
    if work > max_work:
        raise _refuse(memory, work, f"the work is past max_work={max_work:.3g} chain-steps (about a minute at "
                                    "7e7 chain-steps per second); use fewer chains, grid points or steps, "
                                    "or raise max_work=")
    return Plan(shape, chains, pairs, n_steps, memory, work, levels, workers, groups)


def simulate(
    mu, sigma, beta1, beta2, *, chains: int = 10_000, steps: int | None = None, seed: int = 0,
    noise: Noise = Gaussian(), quantiles: tuple[float, ...] = DEFAULT_QUANTILES, tol: float = 0.01,
    keep_samples: bool = False, workers: int | None = None, progress: bool | None = None,
    max_memory: float = MAX_MEMORY, max_work: float = MAX_WORK, max_steps: float = MAX_STEPS,
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

    Before anything is allocated, :func:`plan` checks every argument and refuses (with
    :class:`SimulationTooLarge`) a run whose estimated peak memory passes ``max_memory`` bytes
    (default 4 GiB), whose work passes ``max_work`` chain-steps (default 4e9, about a minute), or
    whose steps per chain pass ``max_steps`` (default 1e6); raise a keyword to allow a larger run.
    """
    run = plan(mu, sigma, beta1, beta2, chains=chains, steps=steps, seed=seed, noise=noise, quantiles=quantiles,
               tol=tol, keep_samples=keep_samples, workers=workers, progress=progress, max_memory=max_memory,
               max_work=max_work, max_steps=max_steps)
    chains, shape, quantiles = run.chains, run.shape, run.quantiles
    flat = [np.broadcast_to(np.asarray(x, dtype=float), shape).ravel() for x in (mu, sigma)]
    n_steps = dict(zip(run.pairs, run.steps))
    tasks = [(pair, n, rng) for pair in run.pairs for n, rng in block_rngs(seed, *pair, chains)]
    runner: Callable = lambda task: _run_block(*task[0], n_steps[task[0]], task[1], task[2], noise)
    with ThreadPoolExecutor(run.workers) as pool:
        blocks = list(tqdm(pool.map(runner, tasks), total=len(tasks), disable=None if progress is None else not progress,
                           desc="stationary Monte Carlo", unit="block"))
    by_pair: dict[tuple[float, float], list] = {}
    for (pair, _, _), block in zip(tasks, blocks):
        by_pair.setdefault(pair, []).append(block)

    size = math.prod(shape)
    estimates: dict[str, np.ndarray] = {}
    ses: dict[str, np.ndarray] = {}
    max_abs = {"adams_step": np.empty(size), "adam_step": np.empty(size)}
    samples = {k: np.empty((size, chains)) for k in ("m", "V", "S")} if keep_samples else None
    step_count = np.empty(size, dtype=np.int64)
    for pair, idx in zip(run.pairs, run.groups):
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
