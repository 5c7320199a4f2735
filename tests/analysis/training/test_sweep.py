"""Learning-rate sweeps: bracketing, automatic extension and divergence, on synthetic loss landscapes
(a runner that returns losses from a formula, so every branch is reached without training)."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from analysis.training import TrainConfig
from analysis.training.sweep import LrPoint, Sweep, lr_grid, replicate_seeds, sweep_lr, sweep_lrs

BASE = TrainConfig(steps=8, warmup=2, batch_size=4, block=16, layers=1, heads=2, width=16)
SEEDS = replicate_seeds(3)


def landscape(optimum, diverge_above=math.inf, seen=None):
    """A runner: loss (log10 lr - log10 optimum)^2 + 2 + a small seed offset; diverged above a rate."""
    def run(configs):
        out = []
        for c in configs:
            if seen is not None:
                seen.append(c)
            diverged = c.lr > diverge_above or (c.lr > diverge_above / 2 and c.seed == 1)  # one seed first
            loss = math.nan if diverged else (math.log10(c.lr / optimum)) ** 2 + 2 + 0.001 * c.seed
            out.append(SimpleNamespace(final_val_loss=loss, diverged=diverged))
        return out
    return run


def test_an_optimum_inside_the_grid_is_bracketed_without_extension():
    seen = []
    sweep = sweep_lr(BASE, lr_grid(3e-3), SEEDS, landscape(2.5e-3, seen=seen))
    assert sweep.bracketed and sweep.extended == [] and sweep.best.lr == pytest.approx(3e-3)
    assert len(seen) == 15 and {(c.seed, c.data_seed) for c in seen} == set(SEEDS)
    assert sweep.best.se > 0 and sweep.best.score == pytest.approx(2 + 0.001 + math.log10(1.2) ** 2)


def test_an_optimum_below_the_grid_extends_it_downwards_until_bracketed():
    sweep = sweep_lr(BASE, lr_grid(3e-3), SEEDS, landscape(2e-4))
    assert sweep.bracketed and sweep.extended == pytest.approx([3.75e-4, 1.875e-4, 9.375e-5])
    assert sweep.best.lr == pytest.approx(1.875e-4) and sweep.lrs == sorted(sweep.lrs)


def test_an_optimum_out_of_reach_is_reported_unbracketed():
    sweep = sweep_lr(BASE, lr_grid(3e-3), SEEDS, landscape(1.0), max_extensions=2)
    assert not sweep.bracketed and len(sweep.extended) == 2 and sweep.best.lr == pytest.approx(4.8e-2)
    assert sweep.to_dict()["bracketed"] is False


def test_diverged_seeds_are_kept_as_diverged_and_never_averaged_in():
    # the optimum is past the stability edge: the best stable rate is bracketed by an unstable one
    sweep = sweep_lr(BASE, lr_grid(3e-3), SEEDS, landscape(1.0, diverge_above=1e-2))
    unstable = [p for p in sweep.points if p.any_diverged]
    assert unstable and all(math.isinf(p.score) and math.isnan(p.se) for p in unstable)
    partly = next(p for p in unstable if not all(p.diverged))  # one seed diverged, the others did not
    assert math.isnan(partly.losses[1]) and all(math.isfinite(x) for x in (partly.losses[0], partly.losses[2]))
    assert sweep.bracketed and sweep.best.lr == pytest.approx(3e-3) and not sweep.best.any_diverged
    record = sweep.to_dict()["points"]
    assert any(p["diverged"] == [False, True, False] for p in record)


def test_a_grid_where_everything_diverges_is_extended_downwards():
    sweep = sweep_lr(BASE, lr_grid(3e-3), SEEDS, landscape(1e-3, diverge_above=1e-4), max_extensions=1)
    assert sweep.best is None and sweep.best_index is None
    assert sweep.extended == pytest.approx([3.75e-4]) and not sweep.bracketed


@pytest.mark.parametrize("lrs, seeds, message", [
    ((1e-3, 3e-3, 6e-3), SEEDS, "at most a factor 2"),
    ((1e-3, 2e-3), SEEDS, "at least 3"),
    ((1e-3, 1e-3, 2e-3), SEEDS, "distinct"),
    ((1e-3, 2e-3, -4e-3), SEEDS, "positive"),
    (lr_grid(3e-3), (0, 1, 2), "pairs"),
    (lr_grid(3e-3), ((0, 1000), (0, 1000)), "distinct"),
])
def test_a_grid_that_cannot_bracket_or_breaks_the_spacing_is_refused(lrs, seeds, message):
    with pytest.raises(ValueError, match=message):
        sweep_lr(BASE, lrs, seeds, landscape(1e-3))


def test_every_configuration_is_checked_before_the_first_run():
    def never(configs):
        pytest.fail("a run started")
    with pytest.raises(ValueError, match="data_seed"):
        sweep_lr(BASE, lr_grid(3e-3), [(0, -1)], never)


def test_helpers():
    assert replicate_seeds(2) == ((0, 1000), (1, 1001))
    with pytest.raises(ValueError):
        replicate_seeds(0)
    with pytest.raises(ValueError, match="factor"):
        lr_grid(1e-3, factor=1.0)
    point = LrPoint(1e-3, SEEDS, (2.0, 2.2, 2.4), (False, False, False))
    assert point.score == pytest.approx(2.2) and point.se == pytest.approx(0.2 / math.sqrt(3))
    tied = Sweep("adams", 2.0, [LrPoint(lr, SEEDS, (2.0,) * 3, (False,) * 3) for lr in (1e-3, 2e-3, 4e-3)], (1e-3,))
    assert not tied.bracketed  # a flat landscape has no bracketed optimum


def test_sweeps_run_together_train_each_round_in_one_call_and_match_single_sweeps():
    calls = []
    inner = landscape(2e-4)

    def run(configs):
        calls.append(len(configs))
        return inner(configs)

    other = TrainConfig(**{**vars(BASE), "optimizer": "adamw"})
    together = sweep_lrs({"a": (BASE, lr_grid(3e-3)), "b": (other, lr_grid(3e-4))}, SEEDS, run)
    # round 1: both grids (2 x 15 runs); then only "a" is unbracketed and extends three times
    assert calls == [30, 3, 3, 3]
    alone = sweep_lr(BASE, lr_grid(3e-3), SEEDS, landscape(2e-4))
    assert together["a"].to_dict() == alone.to_dict() and len(together["a"].runs) == len(alone.runs) == 24
    assert together["b"].bracketed and together["b"].extended == [] and together["b"].optimizer == "adamw"


def test_sweep_lrs_refuses_an_empty_set_of_sweeps():
    with pytest.raises(ValueError, match="no sweeps"):
        sweep_lrs({}, SEEDS, landscape(1e-3))
