"""Per-coordinate gradient noise: the debiased signal-to-noise estimate against known Gaussians, the
noise floor against simulation, and minibatch gradients of a real model."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from analysis.stationary import closed_forms
from analysis.training import TrainConfig, corpus, init_model
from analysis.training.noise import minibatch_gradients, noise_floor, snr, snr_summary


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
