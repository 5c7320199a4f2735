"""Learning-rate sweeps that bracket each optimizer's optimum.

An optimizer compared at a learning rate tuned for another one is not compared at all: AdamS's
step is larger than AdamW's when gradients are noisy, so at a shared learning rate it runs, in
effect, at a larger one. :func:`sweep_lr` trains a configuration at every learning rate of a log
grid (consecutive rates at most ``factor`` apart), over several seeds, and scores each rate by its
mean final validation loss. A rate at which any seed diverged scores as diverged (worse than every
finite loss): it is kept and shown, never averaged in or dropped. The best rate must be *bracketed*,
with a worse rate on each side in the same sweep; while it sits at an end of the grid, the grid is
extended by one ``factor`` step on that side (at most ``max_extensions`` times), and the result says
which rates were added and whether the optimum ended up bracketed.

Seeds are pairs ``(seed, data_seed)``: the model's initialization and the order of the training
batches come from separate streams (:attr:`TrainConfig.data_seed`).

>>> grid = lr_grid(3e-3, below=2, above=2)
>>> [f"{lr:.2e}" for lr in grid]
['7.50e-04', '1.50e-03', '3.00e-03', '6.00e-03', '1.20e-02']
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Callable, Hashable, Mapping, Sequence

import numpy as np

from analysis.training.config import TrainConfig, TrainResult

__all__ = ["LrPoint", "Sweep", "lr_grid", "replicate_seeds", "sweep_lr", "sweep_lrs"]

#: relative slack when checking that consecutive rates are at most ``factor`` apart (float rounding)
_SPACING_SLACK = 1e-9


def lr_grid(center: float, *, factor: float = 2.0, below: int = 2, above: int = 2) -> tuple[float, ...]:
    """``center * factor**k`` for k from ``-below`` to ``above``."""
    if not (math.isfinite(center) and center > 0):
        raise ValueError(f"lr_grid: center must be a positive learning rate, got {center!r}")
    if not (math.isfinite(factor) and factor > 1):
        raise ValueError(f"lr_grid: factor must be a number > 1, got {factor!r}")
    if any(isinstance(n, bool) or not isinstance(n, int) or n < 0 for n in (below, above)):
        raise ValueError(f"lr_grid: below and above must be ints >= 0, got {below!r} and {above!r}")
    return tuple(center * factor**k for k in range(-below, above + 1))


def replicate_seeds(n: int, *, data_offset: int = 1000) -> tuple[tuple[int, int], ...]:
    """``n`` replicates as ``(seed, data_seed)`` pairs: initialization seeds 0..n-1 and data-order
    seeds ``data_offset``..``data_offset + n - 1``, so that no replicate reuses one number for both."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"replicate_seeds: n must be an int >= 1, got {n!r}")
    return tuple((i, data_offset + i) for i in range(n))


@dataclass(frozen=True)
class LrPoint:
    """One learning rate of a sweep: the final validation loss of each seed (nan where it diverged)."""

    lr: float
    seeds: tuple[tuple[int, int], ...]
    losses: tuple[float, ...]
    diverged: tuple[bool, ...]

    @property
    def any_diverged(self) -> bool:
        return any(self.diverged)

    @property
    def score(self) -> float:
        """Mean final loss over the seeds; +inf if any seed diverged (a rate that is not stable is
        worse than any stable one)."""
        return math.inf if self.any_diverged else float(np.mean(self.losses))

    @property
    def se(self) -> float:
        """Standard error of the mean over seeds (nan with one seed or a divergence)."""
        if self.any_diverged or len(self.losses) < 2:
            return math.nan
        return float(np.std(self.losses, ddof=1) / math.sqrt(len(self.losses)))


@dataclass
class Sweep:
    """A finished sweep of one optimizer: the points by increasing learning rate and what was added."""

    optimizer: str
    factor: float
    points: list[LrPoint]
    initial: tuple[float, ...]
    extended: list[float] = field(default_factory=list)
    runs: list = field(default_factory=list, repr=False)  # the TrainResults behind the points

    @property
    def lrs(self) -> list[float]:
        return [p.lr for p in self.points]

    @property
    def best_index(self) -> int | None:
        """Index of the point with the lowest score; None if every rate diverged. Ties go to the
        smaller learning rate."""
        scores = [p.score for p in self.points]
        if all(math.isinf(s) for s in scores):
            return None
        return int(np.argmin(scores))

    @property
    def best(self) -> LrPoint | None:
        i = self.best_index
        return None if i is None else self.points[i]

    @property
    def bracketed(self) -> bool:
        """The best rate has a strictly worse rate on each side (a diverged rate counts as worse)."""
        i = self.best_index
        if i is None or i == 0 or i == len(self.points) - 1:
            return False
        best = self.points[i].score
        return self.points[i - 1].score > best and self.points[i + 1].score > best

    def to_dict(self) -> dict:
        best = self.best
        return {
            "optimizer": self.optimizer, "factor": self.factor, "initial": list(self.initial),
            "extended": list(self.extended), "bracketed": self.bracketed,
            "best_lr": None if best is None else best.lr,
            "points": [{"lr": p.lr, "seeds": [list(s) for s in p.seeds], "losses": list(p.losses),
                        "diverged": list(p.diverged), "score": p.score, "se": p.se} for p in self.points],
        }


Runner = Callable[[Sequence[TrainConfig]], Sequence[TrainResult]]


def _check_sweep_arguments(base, lrs, seeds, factor, max_extensions) -> tuple[float, ...]:
    if not isinstance(base, TrainConfig):
        raise TypeError(f"sweep_lr: base must be a TrainConfig, got {type(base).__name__}")
    if not (isinstance(factor, (int, float)) and not isinstance(factor, bool) and math.isfinite(factor) and factor > 1):
        raise ValueError(f"sweep_lr: factor must be a number > 1, got {factor!r}")
    if isinstance(max_extensions, bool) or not isinstance(max_extensions, int) or max_extensions < 0:
        raise ValueError(f"sweep_lr: max_extensions must be an int >= 0, got {max_extensions!r}")
    grid = sorted(float(lr) for lr in lrs)
    if len(grid) < 3:
        raise ValueError(f"sweep_lr: a grid that can bracket an optimum has at least 3 rates, got {len(grid)}")
    if any(not (math.isfinite(lr) and lr > 0) for lr in grid) or len(set(grid)) != len(grid):
        raise ValueError(f"sweep_lr: learning rates must be distinct positive numbers, got {list(lrs)}")
    gaps = [b / a for a, b in zip(grid, grid[1:])]
    if max(gaps) > factor * (1 + _SPACING_SLACK):
        raise ValueError(f"sweep_lr: consecutive learning rates must be at most a factor {factor:g} apart; the grid "
                         f"has a gap of {max(gaps):.3g}")
    if not seeds or any(not (isinstance(s, tuple) and len(s) == 2) for s in seeds):
        raise ValueError(f"sweep_lr: seeds must be (seed, data_seed) pairs, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"sweep_lr: seed pairs must be distinct (a repeated pair would understate the spread), "
                         f"got {seeds!r}")
    return tuple(grid)


def sweep_lr(base: TrainConfig, lrs: Sequence[float], seeds: Sequence[tuple[int, int]], run: Runner, *,
             factor: float = 2.0, max_extensions: int = 3) -> Sweep:
    """Train ``base`` at every rate of ``lrs`` and seed of ``seeds`` with ``run`` (for example
    :func:`analysis.training.experiments.runs`, which caches), extending the grid until the best rate
    is bracketed or ``max_extensions`` rates have been added. Every configuration is checked before
    the first run. One sweep of :func:`sweep_lrs`."""
    return sweep_lrs({0: (base, lrs)}, seeds, run, factor=factor, max_extensions=max_extensions)[0]


def sweep_lrs(specs: Mapping[Hashable, tuple[TrainConfig, Sequence[float]]], seeds: Sequence[tuple[int, int]],
              run: Runner, *, factor: float = 2.0, max_extensions: int = 3) -> dict[Hashable, Sweep]:
    """Several sweeps at once: ``specs`` maps a name to ``(base, lrs)``. Every round hands ``run`` the
    configurations of all sweeps together (the first grids, then each unbracketed sweep's next rate),
    so that a pool of workers stays busy while single sweeps extend one rate at a time. The result of
    each sweep is the one :func:`sweep_lr` would give alone."""
    if not specs:
        raise ValueError("sweep_lrs: no sweeps given")
    grids = {name: _check_sweep_arguments(base, lrs, seeds, factor, max_extensions)
             for name, (base, lrs) in specs.items()}
    seeds = tuple(tuple(int(x) for x in s) for s in seeds)
    bases = {name: base for name, (base, _) in specs.items()}

    def configs(name, rates):
        return [dataclasses.replace(bases[name], lr=lr, seed=s, data_seed=d) for lr in rates for s, d in seeds]

    def measure(rounds: dict) -> dict[Hashable, tuple[list[LrPoint], list]]:
        """Train every (name, rates) of this round in one call of ``run``: each name's points and runs."""
        batch = [c for name, rates in rounds.items() for c in configs(name, rates)]
        results = list(run(batch))
        if len(results) != len(batch):
            raise RuntimeError(f"sweep_lrs: the runner returned {len(results)} results for {len(batch)} configurations")
        out, at = {}, 0
        for name, rates in rounds.items():
            block, at = results[at:at + len(rates) * len(seeds)], at + len(rates) * len(seeds)
            points = []
            for i, lr in enumerate(rates):
                chunk = block[i * len(seeds):(i + 1) * len(seeds)]
                diverged = tuple(bool(r.diverged) or not math.isfinite(r.final_val_loss) for r in chunk)
                losses = tuple(math.nan if d else float(r.final_val_loss) for r, d in zip(chunk, diverged))
                points.append(LrPoint(lr, seeds, losses, diverged))
            out[name] = (points, block)
        return out

    for name, grid in grids.items():  # every configuration is checked (TrainConfig validates) first
        configs(name, grid)
    sweeps = {name: Sweep(bases[name].optimizer, float(factor), points, initial=grids[name], runs=list(block))
              for name, (points, block) in measure(grids).items()}
    while True:
        pending = {}
        for name, sweep in sweeps.items():
            if sweep.bracketed or len(sweep.extended) >= max_extensions:
                continue
            i = sweep.best_index
            if i is None or i == 0:  # every rate diverged, or the best is the smallest: look below
                pending[name] = [sweep.lrs[0] / factor]
            elif i == len(sweep.points) - 1:
                pending[name] = [sweep.lrs[-1] * factor]
            # else: the best is inside the grid but tied with a neighbour; nothing to extend
        if not pending:
            return sweeps
        for name, (points, block) in measure(pending).items():
            sweep = sweeps[name]
            sweep.points = sorted(sweep.points + points, key=lambda p: p.lr)
            sweep.extended.extend(pending[name])
            sweep.runs.extend(block)
