"""analysis.timing.steptime on a tiny parameter set: the structure of its result, not its speed (the
machine is shared and noisy, so no timing is asserted)."""
import json
import math

import pytest

from analysis.timing import steptime


SETS = {"tiny": [(400, 250), (300,), (7, 3, 5)], "flat": steptime.flat_shapes(100_000, 4)}


@pytest.fixture(scope="module")
def result():
    return steptime.run(quick=True, sets=SETS, reps=3, warmup=1)


def test_structure_and_positive_finite_times(result):
    json.dumps(result)  # JSON-ready
    meta = result["meta"]
    for key in ("date", "torch", "threads", "cpu", "quick", "seed", "reps", "warmup", "fused_kernel"):
        assert key in meta
    assert meta["reps"] == 3 and meta["quick"] is True
    assert set(result["sets"]) == set(SETS)
    for name, res in result["sets"].items():
        assert res["num_params"] == sum(math.prod(s) for s in SETS[name])
        assert set(res["optimizers"]) == set(steptime.ROWS)
        for s in res["optimizers"].values():
            assert len(s["times_ms"]) == 3
            assert s["q1_ms"] <= s["median_ms"] <= s["q3_ms"]
            for key in ("ratio_to_adamw_fused", "ratio_to_sgd_foreach", "effective_gbs",
                        "floor_ms", "fraction_of_floor"):
                assert math.isfinite(s[key]) and s[key] > 0
        assert res["optimizers"]["adamw_fused"]["ratio_to_adamw_fused"] == 1.0
        assert res["copy"]["bandwidth_gbs"] > 0
    assert steptime.all_finite_positive(result)


def test_table_names_every_optimizer(result):
    table = steptime.format_table(result)
    for name in steptime.ROWS:
        assert table.count(name) == len(SETS)


def test_gpt_shapes():
    shapes = steptime.gpt_shapes()
    assert sum(math.prod(s) for _, s in shapes) == 30_062_592
    assert len(shapes) == 2 + 12 * 6 + 2
    assert steptime.flat_shapes() == [(250_000,)] * 40


def test_targets_are_paired_ratios_with_a_verdict(result):
    ratios = steptime.paired_ratios(result)
    assert set(ratios) == set(SETS)
    for set_name, per_set in ratios.items():
        assert list(per_set) == [f"{row}/{base}" for row, base, _ in steptime.TARGETS]
        for r in per_set.values():
            assert r.ci_low <= r.median <= r.ci_high and r.rounds == 3
    text = steptime.format_targets(result)
    assert text.count("target <=") == len(SETS) * len(steptime.TARGETS)
    checks = steptime.check_targets(result)
    assert [(c.set_name, c.key) for c in checks] == [(s, k) for s in ratios for k in ratios[s]]
    for c in checks:
        assert c.ratio == ratios[c.set_name][c.key] and c.met == (c.ratio.median <= c.limit)
        assert text.count(f"{c.set_name:10s} {c.key.replace('/', ' / ')}: {c.ratio}") == 1


def test_target_met_is_a_median_below_the_limit():
    from analysis.timing.ratios import PairedRatio

    def ratio(median):
        return PairedRatio(median, median, median, median - 0.1, median + 0.1, 10)

    assert steptime.target_met(ratio(0.75), 0.75) and not steptime.target_met(ratio(0.7501), 0.75)


def test_markdown_table_has_a_row_per_optimizer_and_every_target(result):
    table = steptime.markdown_table(result)
    assert table.count("| AdamS, fused (our kernel) |") == len(SETS)
    assert "quick run" in table
    assert table.count("target <=") == len(SETS) * len(steptime.TARGETS)


def test_the_compiled_functional_core_row_is_opt_in():
    """torch.compile of adams.functional.adams_update: the alternative the kernel was chosen over."""
    result = steptime.run(quick=True, sets={"tiny": [(300,), (7, 3)]}, reps=2, warmup=1, compiled=True)
    rows = result["sets"]["tiny"]["optimizers"]
    assert "adams_compiled" in rows and rows["adams_compiled"]["median_ms"] > 0
    assert "adams_compiled" not in steptime.ROWS
