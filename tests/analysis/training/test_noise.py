"""Per-coordinate gradient noise: the debiased signal-to-noise estimate against known Gaussians, the
noise floor against simulation, and minibatch gradients of a real model."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from analysis.stationary import closed_forms
from analysis.training import TrainConfig, corpus, init_model
from analysis.training.noise import (denominator_check, minibatch_gradients, momentum_noise_ratio, noise_floor, snr,
                                     snr_summary)


def test_snr_recovers_known_ratios_and_drops_untouched_coordinates():
    rng = np.random.default_rng(0)
    true = np.array([0.0, 0.5, 2.0, 5.0])
    g = true[None, :, None] + rng.normal(size=(16, 4, 5000))  # sigma = 1, 5000 coordinates per ratio
    ratio, sigma = snr(g.reshape(16, -1))
    ratio = ratio.reshape(4, 5000)
    # away from 0, (mu/sigma)^2 is estimated without bias: its mean is true^2 within a few standard
    # errors (the plain gbar^2/s^2 would be 15% high at K = 16); at mu = 0 the clipping leaves a small bias
    est, se = (ratio**2).mean(axis=1), (ratio**2).std(axis=1) / np.sqrt(5000)
    assert np.all(np.abs(est[1:] - true[1:] ** 2) < 4 * se[1:])
    assert 0 < est[0] < 0.05
    assert abs(sigma.mean() - 1) < 0.02
    with_zero = np.concatenate([g.reshape(16, -1), np.zeros((16, 3))], axis=1)
    assert snr(with_zero)[0].size == 20000  # three untouched coordinates dropped
    with pytest.raises(ValueError, match="K >= 4"):
        snr(np.ones((3, 5)))


def test_noise_floor_matches_the_share_pure_noise_shows():
    rng = np.random.default_rng(1)
    k, n = 16, 200_000
    ratio, _ = snr(rng.normal(size=(k, n)))
    for threshold in (0.5, 1.0):
        p = noise_floor(k, threshold)
        assert abs(np.mean(ratio > threshold) - p) < 4 * np.sqrt(p * (1 - p) / n)


def test_snr_summary_predicts_the_closed_form_ratio():
    rng = np.random.default_rng(2)
    g = 3.0 + 0.5 * rng.normal(size=(64, 4000))  # mu/sigma = 6 everywhere
    s = snr_summary(g, (0.9, 0.95))
    expected = closed_forms.moments(6.0, 1.0, 0.9, 0.95)
    assert s["share_above"]["3.0"] > 0.99 and s["noise_floor"]["3.0"] < 1e-6
    assert s["ev_over_es_median"] == pytest.approx(float(expected["E_V"] / expected["E_S"]), abs=0.01)
    quiet = snr_summary(rng.normal(size=(16, 4000)), (0.9, 0.95))
    assert quiet["share_above"]["1.0"] < 0.01 and quiet["ev_over_es_median"] < 0.15  # near the limit 0.1


def test_minibatch_gradients_are_seeded_and_leave_the_model_alone():
    data = corpus.load()
    config = TrainConfig(layers=1, width=16, heads=2, block=16, batch_size=4)
    model = init_model(config, data.vocab_size)
    before = [p.detach().clone() for p in model.parameters()]
    a = minibatch_gradients(model, data.train, batch_size=4, block=16, k=4, seed=5)
    b = minibatch_gradients(model, data.train, batch_size=4, block=16, k=4, seed=5)
    assert a.shape == (4, sum(p.numel() for p in model.parameters())) and np.array_equal(a, b)
    assert not np.allclose(a[0], a[1])  # different minibatches
    assert all(torch.equal(x, y) for x, y in zip(before, model.parameters()))
    assert all(p.grad is None for p in model.parameters())
    with pytest.raises(ValueError, match="k must be"):
        minibatch_gradients(model, data.train, batch_size=4, block=16, k=3, seed=0)


def test_checkpoint_noise_measures_the_checkpointed_weights_and_is_deterministic(tmp_path):
    from analysis.training import experiments as ex
    from analysis.training import train
    from analysis.training.gpt import GPT
    from smoothness import load_checkpoint

    config = TrainConfig(steps=6, warmup=1, batch_size=4, block=16, layers=1, width=16, heads=2, log_every=3,
                         eval_every=6, eval_batches=1, save_every=3)
    result = train(config, cache_dir=tmp_path, progress=False)
    first = ex.checkpoint_noise(result, k=4, seed=3)
    torch.manual_seed(999)  # a different global RNG state must not change anything
    again = ex.checkpoint_noise(result, k=4, seed=3)
    assert first == again and [row["step"] for row in first] == [0, 3, 6]
    data = corpus.load()
    model = GPT(config.model_config(data.vocab_size))
    model.load_state_dict(load_checkpoint(result.checkpoints[-1], model).model_state)
    grads = minibatch_gradients(model, data.train, batch_size=4, block=16, k=4, seed=3 + 2)
    assert first[-1] == {"step": 6, **snr_summary(grads, config.betas)}


def _adam_state_on_a_stationary_stream(mu, sigma, betas, steps, rng, shrink_momentum=1.0):
    """Adam's m and v after ``steps`` i.i.d. Gaussian gradients per coordinate (near stationarity)."""
    m = np.zeros_like(mu)
    v = np.zeros_like(mu)
    for _ in range(steps):
        g = mu + sigma * rng.standard_normal(mu.shape)
        m = betas[0] * m + (1 - betas[0]) * g
        v = betas[1] * v + (1 - betas[1]) * g * g
    return shrink_momentum * m, v


def test_denominator_check_agrees_with_the_closed_form_on_a_stationary_stream():
    rng = np.random.default_rng(0)
    betas = (0.9, 0.95)
    n = 20000
    snr_true = np.repeat([0.0, 0.2, 0.5, 2.0, 5.0], n // 5)
    sigma = rng.uniform(0.5, 2.0, n)
    mu = snr_true * sigma
    m, v = _adam_state_on_a_stationary_stream(mu, sigma, betas, 300, rng)
    grads = mu + sigma * rng.standard_normal((16, n))
    out = denominator_check(m, v, grads, betas)
    closed = closed_forms.moments(mu, sigma, *betas)
    truth = closed["E_V"].sum() / closed["E_S"].sum()
    # three numbers from one sample of 20000 coordinates: the measured and the predicted whole-model
    # ratio both sit within 3% of the true E[V]/E[S] (their sampling error is under 1%)
    assert out["measured"] == pytest.approx(truth, rel=0.03) and out["predicted"] == pytest.approx(truth, rel=0.03)
    assert out["momentum_sq_over_second_moment"] == pytest.approx(out["predicted_momentum_sq_over_second_moment"], rel=0.05)
    for row in out["bins"]:  # bins chosen on one half, predicted from the other: no selection bias
        if row["n"] > 500:
            assert row["measured"] == pytest.approx(row["predicted"], rel=0.1), row


def test_denominator_check_sees_a_momentum_smaller_than_the_stream_implies():
    # the power check: the same stream with the momentum shrunk to 40% (as if successive gradients
    # cancelled) gives a measured ratio well below the prediction
    rng = np.random.default_rng(1)
    betas = (0.9, 0.95)
    n = 20000
    sigma = np.ones(n)
    mu = np.full(n, 2.0)
    m, v = _adam_state_on_a_stationary_stream(mu, sigma, betas, 300, rng, shrink_momentum=0.4)
    out = denominator_check(m, v, mu + sigma * rng.standard_normal((16, n)), betas)
    assert out["measured"] < 0.5 * out["predicted"]


def test_denominator_check_refuses_bad_shapes():
    with pytest.raises(ValueError, match="K >= 8"):
        denominator_check(np.zeros(3), np.zeros(3), np.zeros((4, 3)), (0.9, 0.95))
    with pytest.raises(ValueError, match="flat arrays"):
        denominator_check(np.zeros(2), np.zeros(3), np.zeros((8, 3)), (0.9, 0.95))
    with pytest.raises(ValueError, match="finite"):
        denominator_check(np.zeros(3), -np.ones(3), np.zeros((8, 3)), (0.9, 0.95))


def test_momentum_noise_ratio_is_one_on_the_noise_model_and_sees_a_cancelling_momentum():
    rng = np.random.default_rng(2)
    a = 0.1 / 1.9
    grad_sq = rng.uniform(0.5, 1.0, 50)
    trace = rng.uniform(0.5, 3.0, 50)
    on_model = momentum_noise_ratio(grad_sq + a * trace, grad_sq, trace, beta1=0.9)
    assert on_model["ratio"] == pytest.approx(1.0) and on_model["predicted"] > 1
    cancelled = momentum_noise_ratio(0.1 * (grad_sq + a * trace), grad_sq, trace, beta1=0.9)
    assert cancelled["ratio"] == pytest.approx(np.sqrt(0.1))
    assert np.isnan(momentum_noise_ratio([1.0], [-1.0], [0.5], beta1=0.9)["measured"])
    with pytest.raises(ValueError, match="one length"):
        momentum_noise_ratio([1.0], [1.0, 2.0], [1.0], beta1=0.9)
