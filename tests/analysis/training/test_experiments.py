"""Statistics and configurations shared by the training notebooks."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from analysis.training import experiments as ex


def test_summary_matches_scipy_t_interval_and_counts_failures():
    x = [2.1, 2.3, 2.2, 2.6]
    s = ex.summary(x + [float("nan")])
    lo, hi = stats.t.interval(0.95, 3, loc=np.mean(x), scale=stats.sem(x))
    assert s["n"] == 4 and s["n_failed"] == 1
    assert s["ci"] == pytest.approx([lo, hi])
    with pytest.raises(ValueError, match="no values"):
        ex.summary([])


def test_paired_gap_removes_the_shared_seed_effect():
    seed_effect = np.array([0.0, 0.5, -0.4, 0.9])
    gap = ex.paired_gap(2.0 + seed_effect, 2.1 + seed_effect)
    assert gap["mean"] == pytest.approx(-0.1) and gap["sd"] == pytest.approx(0.0, abs=1e-12)
    unpaired = ex.summary(2.0 + seed_effect)
    assert unpaired["se"] > 0.1  # the seeds alone would swamp a 0.1 difference
    with pytest.raises(ValueError, match="differ in length"):
        ex.paired_gap([1.0], [1.0, 2.0])


def test_ratio_ci_covers_the_true_ratio_and_is_seeded():
    rng = np.random.default_rng(0)
    a = 2.0 * rng.lognormal(0, 0.1, 200)
    b = rng.lognormal(0, 0.1, 200)
    ci = ex.ratio_ci(a, b, seed=1)
    assert ci[0] < 2.0 < ci[1] and ci == ex.ratio_ci(a, b, seed=1)
    with pytest.raises(ValueError, match="paired"):
        ex.ratio_ci(a, b[:10])


def test_log_correlation_and_ratio_summary():
    x = np.exp(np.linspace(0, 2, 12))
    perfect = ex.log_correlation(x, 3 * x**2)
    assert perfect["r"] == pytest.approx(1.0) and perfect["ci"][0] == pytest.approx(1.0)
    assert ex.log_correlation(x, 1 / x)["r"] == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="at least 3"):
        ex.log_correlation([1.0, 2.0], [1.0, 2.0])
    r = ex.ratio_summary([1.0, 2.0, float("nan"), 4.0], [1.0, 1.0, 1.0, 1.0])
    assert r["n"] == 3 and r["median"] == 2.0 and math.isclose(r["mean"], 7 / 3)


def test_loss_spike():
    assert ex.loss_spike({"train_loss": [3.0, 2.0, 1.0]}) == 0.0
    assert ex.loss_spike({"train_loss": [3.0, 2.0, 2.8, 1.0, 1.5]}) == pytest.approx(0.8)


def test_quick_and_full_configs():
    quick, full = ex.base_config(True), ex.base_config(False)
    assert quick.steps < full.steps and quick.width < full.width
    assert ex.base_config(False, optimizer="adamw").optimizer == "adamw"
    assert len(ex.seeds(False)) >= 3 and ex.BETA_PAIRS[0] == (0.9, 0.95)


@pytest.mark.parametrize("inherited, own, verdict", [
    ([2.005, 2.012, 2.003], [2.000, 2.010, 2.000], "holds at our scale"),  # loses ~0.003, CI below the margin
    ([2.060, 2.071, 2.065], [2.000, 2.010, 2.000], "does not hold"),       # loses ~0.06, CI above the margin
    ([2.000, 2.060, 2.003], [2.000, 2.010, 2.000], "inconclusive"),        # too noisy to decide with 3 seeds
    ([float("nan"), 2.01, 2.00], [2.000, 2.010, 2.000], "does not hold"),  # diverged at the inherited rate
])
def test_inherit_verdict_returns_each_of_its_verdicts(inherited, own, verdict):
    out = ex.inherit_verdict(inherited, own)
    assert out["verdict"] == verdict
    assert (out["gap"] is None) == (verdict == "does not hold" and out["diverged"] > 0)


def test_inherit_verdict_is_inconclusive_when_a_sweep_is_not_bracketed():
    out = ex.inherit_verdict([2.060, 2.071, 2.065], [2.000, 2.010, 2.000], bracketed=False)
    assert out["verdict"] == "inconclusive" and out["gap"]["mean"] > 0.05


def test_inherit_verdict_refuses_a_best_rate_that_diverged_and_unpaired_lists():
    with pytest.raises(ValueError, match="own best rate diverged"):
        ex.inherit_verdict([2.0, 2.0], [2.0, float("nan")])
    with pytest.raises(ValueError, match="paired"):
        ex.inherit_verdict([2.0, 2.0, 2.0], [2.0, 2.0])


def test_lr_sweeps_use_the_stated_centres_and_refuse_unknown_optimizers():
    with pytest.raises(ValueError, match="no sweep centre"):
        ex.lr_sweeps(True, optimizers=["lion"])
    assert set(ex.SWEEP_CENTERS) == set(ex.COMPARED)


def test_the_memory_rule_returns_each_verdict_and_refuses_nonsense():
    assert ex.saving_verdict(0.905, 0.90) == "holds" and ex.saving_verdict(0.90, 0.90) == "holds"
    assert ex.saving_verdict(0.452, 0.90) == "does not hold" and ex.saving_verdict(-0.2, 0.45) == "does not hold"
    for bad in ((float("nan"), 0.9), (1.2, 0.9), (0.5, 0.0)):
        with pytest.raises(ValueError, match="saving_verdict"):
            ex.saving_verdict(*bad)


def test_state_parts_split_the_state_into_momentum_and_second_moment():
    from adams.adapm import DEFAULT_MOMENTUM, classify, state_formula
    from analysis.training import build

    config = ex.base_config(True)
    parts = {name: ex.state_parts(ex.base_config(True, optimizer=name), vocab=20) for name in ex.COMPARED}
    model, _ = build(config, 20)
    n = sum(p.numel() for p in model.parameters())
    assert parts["adamw"]["momentum"] == parts["adamw"]["second_moment"] == 4 * n
    assert parts["adams"]["momentum"] == parts["sgdm"]["momentum"] == 4 * n
    assert parts["adams"]["second_moment"] == parts["sgdm"]["second_moment"] == 0
    assert parts["adapm-mini"]["second_moment"] == parts["adam-mini"]["second_moment"]  # Adam-mini's partition
    assert parts["adapm"]["second_moment"] == 4 * n
    want = sum(state_formula(p.shape, classify(k, p.shape), momentum=DEFAULT_MOMENTUM, rank=1, second_moment="full",
                             n_heads=config.heads)["momentum"] for k, p in model.named_parameters())
    assert parts["adapm"]["momentum"] == parts["adapm-mini"]["momentum"] == 4 * want < 0.2 * 4 * n



NAN = float("nan")


@pytest.mark.parametrize("a, b, same, better, no_worse", [
    ([2.000, 2.010, 2.005, 2.003], [2.001, 2.012, 2.003, 2.004], "holds at our scale", "does not hold",
     "holds at our scale"),                                       # within +-0.02: no advantage that matters
    ([1.900, 1.910, 1.905, 1.903], [2.000, 2.012, 2.003, 2.004], "does not hold", "holds at our scale",
     "holds at our scale"),                                       # better by 0.1: not "the same"
    ([2.100, 2.110, 2.105, 2.103], [2.000, 2.012, 2.003, 2.004], "does not hold", "does not hold",
     "does not hold"),                                            # worse by 0.1
    ([2.000, 2.060, 1.950, 2.030], [2.000, 2.010, 2.000, 2.000], "inconclusive", "inconclusive", "inconclusive"),
    ([NAN, 2.0, 2.0], [2.0, 2.0, 2.0], "does not hold", "does not hold", "does not hold"),  # A diverged
    ([1.90, 1.91, 1.92, 1.90], [2.00, 2.01, 2.02, NAN], "does not hold", "holds at our scale",
     "holds at our scale"),                                       # B diverged, A better where both finished
    ([2.0, 2.0, 2.0], [2.0, NAN, 2.0], "does not hold", "inconclusive", "holds at our scale"),  # B diverged, tie
    ([NAN, 2.0, 2.0], [2.0, NAN, 2.0], "inconclusive", "inconclusive", "inconclusive"),  # both
])
def test_paired_verdicts_return_each_of_their_verdicts(a, b, same, better, no_worse):
    v = ex.paired_verdicts(a, b, 0.02)
    assert (v["same"], v["better"], v["no_worse"]) == (same, better, no_worse)
    assert (v["gap"] is None) == (len(a) - sum(v["diverged"]) < 2)


def test_paired_verdicts_refuse_unpaired_or_single_losses():
    with pytest.raises(ValueError, match="paired"):
        ex.paired_verdicts([2.0, 2.0], [2.0, 2.0, 2.0])
    with pytest.raises(ValueError, match="at least 2"):
        ex.paired_verdicts([2.0], [2.0])


def test_beta_reversals_list_every_flip_and_no_ties():
    shared = {"a": 2.0, "b": 2.1, "c": 2.2, "d": math.inf}
    tuned = {"a": 2.0, "b": 1.9, "c": 2.0, "d": 1.8}
    flips = ex.beta_reversals(shared, tuned)
    assert set(flips) == {("a", "b"), ("a", "d"), ("b", "d"), ("c", "d")}  # a ties c when tuned: no flip
    assert ex.beta_reversals(shared, shared) == []
    assert ex.beta_reversals(shared, tuned, margin=0.15) == [("a", "d"), ("c", "d")]
    with pytest.raises(ValueError, match="different pairs"):
        ex.beta_reversals(shared, {"a": 1.0})


@pytest.mark.parametrize("shares, same, verdict, batch", [
    ({8: 0.0, 32: 0.01, 128: 0.05}, {8: ["does not hold"], 32: ["holds at our scale"], 128: ["inconclusive"]},
     "not testable here", None),
    ({8: 0.0, 32: 0.3, 128: 0.6}, {8: ["does not hold"], 32: ["does not hold"],
                                   128: ["holds at our scale", "holds at our scale"]}, "holds at our scale", 128),
    ({8: 0.0, 32: 0.3, 128: 0.6}, {8: ["holds at our scale"], 32: ["holds at our scale"],
                                   128: ["holds at our scale", "does not hold"]}, "does not hold", 128),
    ({8: 0.0, 32: 0.3, 128: 0.1}, {8: ["does not hold"], 32: ["inconclusive", "holds at our scale"],
                                   128: ["holds at our scale"]}, "inconclusive", 32),
])
def test_batch_regime_verdict_returns_each_of_its_verdicts(shares, same, verdict, batch):
    out = ex.batch_regime_verdict(shares, same)
    assert out["verdict"] == verdict and out["batch_size"] == batch
    with pytest.raises(ValueError, match="different batch sizes"):
        ex.batch_regime_verdict({8: 0.5}, {16: ["holds"]})


@pytest.mark.parametrize("heavy, gpt, share, verdict", [
    ((1.10, 1.25), (0.98, 1.03), 0.5, "holds at our scale"),
    ((0.90, 1.00), (0.98, 1.03), 0.5, "does not hold"),        # no gain where the optimizer is half the step
    ((1.10, 1.25), (0.90, 0.97), 0.5, "does not hold"),        # slower on the GPT
    ((0.98, 1.10), (0.98, 1.03), 0.5, "inconclusive"),
    ((1.10, 1.25), (0.98, 1.03), 0.05, "not testable here"),   # the optimizer is too small a share to show
])
def test_throughput_verdict_returns_each_of_its_verdicts(heavy, gpt, share, verdict):
    assert ex.throughput_verdict(heavy, gpt, share) == verdict
    with pytest.raises(ValueError, match="finite"):
        ex.throughput_verdict((1.2, 1.1), gpt, share)


def test_horizon_batch_and_betas_configs_keep_what_they_promise():
    for quick in (True, False):
        base, long = ex.base_config(quick), ex.horizon_config(quick)
        assert long.steps == ex.HORIZON_FACTOR * base.steps and long.batch_size == base.batch_size
        assert long.warmup == ex.HORIZON_FACTOR * base.warmup
        tokens = {b: ex.batch_config(quick, b).steps * b for b in ex.BATCH_SIZES[quick]}
        assert len(set(tokens.values())) == 1 and base.batch_size in ex.BATCH_SIZES[quick]
        assert ex.batch_config(quick, base.batch_size) == base  # the sweep's runs serve the base batch size
        assert {ex.batch_config(quick, b, equal="steps").steps for b in ex.BATCH_SIZES[quick]} == {base.steps}
        assert ex.betas_config(quick).steps <= base.steps
        headline, sweep = ex.headline_seeds(quick), ex.sweep_seeds(quick)
        assert not {s for pair in headline for s in pair} & {s for pair in sweep for s in pair}  # fresh seeds
    assert len(ex.headline_seeds(False)) >= 5 and ex.horizon_config(False).steps * 32 * 64 >= 4 * 819_200
    with pytest.raises(ValueError, match="does not divide"):
        ex.batch_config(False, 3)
    with pytest.raises(ValueError, match="equal must be"):
        ex.batch_config(False, 8, equal="flops")
    assert any(b1 > 0.95 and b2 > 0.98 for b1, b2 in ex.BETA_PAIRS)  # the summary's "(>0.95, >0.98)" region


@pytest.mark.parametrize("full, trimmed, verdict", [
    ([0.60, 0.70, 0.65], [0.50, 0.60, 0.55], "holds at our scale"),
    ([0.60, 0.70, 0.65], [-0.30, -0.20, -0.25], "does not hold"),   # the first 5% made the correlation
    ([-0.1, -0.2, -0.15], [0.5, 0.6, 0.55], "does not hold"),
    ([0.60, -0.40, 0.50], [0.50, 0.60, 0.55], "inconclusive"),      # one seed disagrees: the interval spans 0
])
def test_seed_correlation_verdict_returns_each_of_its_verdicts(full, trimmed, verdict):
    assert ex.seed_correlation_verdict(full, trimmed)["verdict"] == verdict


def test_track_correlation_skips_the_start_and_needs_points():
    steps = list(range(0, 100, 4))
    grad = [10.0 if s < 5 else 1.0 + 0.01 * s for s in steps]   # one early outlier point
    fd = [100.0 if s < 5 else 5.0 - 0.01 * s for s in steps]
    track = {"step": steps, "grad_norm": grad, "fd_smoothness": fd}
    assert ex.track_correlation(track) > 0.5                     # the outlier alone makes it positive
    assert ex.track_correlation(track, skip=0.05) < -0.9         # without it, the trend is negative
    with pytest.raises(ValueError, match="fewer than 3"):
        ex.track_correlation({"step": [0, 1], "grad_norm": [1.0, 2.0], "fd_smoothness": [1.0, 2.0]})


@pytest.mark.parametrize("with_m, with_g, verdict", [
    ([0.60, 0.65, 0.62], [0.60, 0.66, 0.60], "holds at our scale"),
    ([0.10, 0.15, 0.12], [0.60, 0.66, 0.60], "does not hold"),      # far weaker with |m| than with |grad f|
    ([-0.3, -0.2, -0.25], [-0.3, -0.2, -0.25], "does not hold"),    # no correlation with |m| at all
    ([0.60, 0.10, 0.50], [0.60, 0.66, 0.60], "inconclusive"),       # one seed disagrees
])
def test_momentum_smoothness_verdict_returns_each_of_its_verdicts(with_m, with_g, verdict):
    assert ex.momentum_smoothness_verdict(with_m, with_g)["verdict"] == verdict


@pytest.mark.parametrize("ratios, verdict", [
    ([0.95, 1.05, 1.0], "holds at our scale"),
    ([0.30, 0.32, 0.35], "does not hold"),
    ([0.6, 1.4, 1.0], "inconclusive"),
])
def test_momentum_noise_verdict_returns_each_of_its_verdicts(ratios, verdict):
    assert ex.momentum_noise_verdict(ratios)["verdict"] == verdict


def test_momentum_noise_verdict_takes_one_run_with_its_interval():
    assert ex.momentum_noise_verdict([0.3], ci=(0.25, 0.36))["verdict"] == "does not hold"
    assert ex.momentum_noise_verdict([1.0], ci=(0.9, 1.1))["verdict"] == "holds at our scale"
    with pytest.raises(ValueError, match="interval"):
        ex.momentum_noise_verdict([1.0])


@pytest.mark.parametrize("measured, verdict", [
    ((0.50, 0.51, 0.49), "holds at our scale"),
    ((0.20, 0.21, 0.22), "does not hold"),
    ((0.30, 0.55, 0.45), "inconclusive"),
])
def test_denominator_verdict_returns_each_of_its_verdicts(measured, verdict):
    runs = [[{"measured": m, "predicted": 0.5}, {"measured": m, "predicted": 0.5}] for m in measured]
    assert ex.denominator_verdict(runs)["verdict"] == verdict


def _noisy_track(n: int = 100, seed: int = 0) -> dict:
    """A tracked run whose smoothness follows the true gradient norm, seen through a noisy unbiased estimate."""
    rng = np.random.default_rng(seed)
    steps = np.arange(0, 4 * n, 4)
    true = np.exp(np.linspace(0.5, -1.0, n))
    noise = 0.3
    g2 = true**2 + noise * rng.standard_normal(n)               # unbiased, noisy point by point
    fd2 = (3 * true) ** 2 + noise * rng.standard_normal(n)
    return {"step": steps.tolist(), "fd_smoothness": (3 * true).tolist(), "grad_sq_unbiased": g2.tolist(),
            "fd_sq_unbiased": fd2.tolist(),
            "grad_norm": np.sqrt(true**2 + 1.0).tolist(), "momentum_norm": (0.5 * true).tolist(),
            "noise_trace": [1.0] * n}


def test_windows_average_the_noisy_estimate_so_the_correlation_shows():
    track = _noisy_track()
    w = ex.track_windows(track)
    assert len(w["step"]) == 20 and w["step"][0] == pytest.approx(8.0)
    pointwise = ex.track_correlation({**track, "grad_unb": np.sqrt(np.clip(track["grad_sq_unbiased"], 1e-12, None))},
                                     x="grad_unb")
    assert ex.window_correlation(track, "grad_norm_unbiased") > 0.8 > pointwise  # windows average the noise out
    assert ex.window_correlation(track, "grad_norm_unbiased", "fd_smoothness_unbiased") > 0.8
    assert len(ex.track_windows(track, skip=0.05)["step"]) == 19
    with pytest.raises(ValueError, match="track_split"):
        ex.track_windows({"step": [0], "grad_norm": [1.0]})
    with pytest.raises(ValueError, match="fewer than 3 windows"):
        ex.track_windows(track, window=40)


def test_track_momentum_noise_uses_the_points_after_the_start():
    track = _noisy_track()
    out = ex.track_momentum_noise(track, beta1=0.9)
    assert out["n"] == 95 and 0 < out["ratio"] < out["measured"] < 1 and out["one_batch"] < out["measured"]
    assert out["n_unclipped"] == 0 and np.isnan(out["unclipped"])  # |g_B| >= 1 everywhere in this track
    calm = ex.track_momentum_noise(track, beta1=0.9, clip=2.0)
    assert calm["n_unclipped"] == 95 and calm["unclipped"] == pytest.approx(calm["ratio"])
