"""How noisy is a minibatch gradient, coordinate by coordinate?

The stationary analysis (:mod:`analysis.stationary`) says AdamS's denominator matches Adam's second
moment when each coordinate's gradient has a large signal-to-noise ratio mu/sigma, and is several
times smaller when noise dominates. Which regime a training run is in is a measurement, not an
assumption: at a checkpoint, draw K independent minibatches of the run's batch size, take the K
gradients, and estimate each coordinate's mean mu and standard deviation sigma from them.

With K Gaussian gradients g_1..g_K of one coordinate, mean gbar and sample variance s^2 (ddof 1),
gbar and s^2 are independent, E[gbar^2] = mu^2 + sigma^2/K and E[1/s^2] = (K-1) / ((K-3) sigma^2),
so ``snr^2 = (K-3)/(K-1) * gbar^2/s^2 - 1/K`` is an unbiased estimate of (mu/sigma)^2 (K >= 4); it
is clipped at 0, which leaves a small upward bias for coordinates with mu near 0. (The plain
gbar^2/s^2 overstates (mu/sigma)^2 by the factor (K-1)/(K-3), 1.15 at K = 16.) A coordinate with
mu = 0 still shows a positive ratio sometimes: gbar / (s / sqrt(K)) is then Student-t with K - 1
degrees of freedom, and :func:`noise_floor` gives the share of such coordinates expected above a
threshold.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy import stats

from analysis.stationary import closed_forms
from analysis.training.recipe import lm_loss, sample_batch

__all__ = ["minibatch_gradients", "snr", "noise_floor", "snr_summary"]


def minibatch_gradients(model: torch.nn.Module, data: np.ndarray, *, batch_size: int, block: int, k: int,
                        seed: int) -> np.ndarray:
    """``k`` gradients of the language-model loss, each on its own random minibatch of ``batch_size``
    sequences of ``block`` characters from ``data``, as a (k, n_parameters) float64 array (parameters
    in ``model.parameters()`` order). The model's parameters are not changed."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 4:
        raise ValueError(f"minibatch_gradients: k must be an int >= 4 (the unbiased ratio needs four draws), got {k!r}")
    rng = np.random.default_rng(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    out = np.empty((k, sum(p.numel() for p in params)))
    was_training = model.training
    model.train()
    try:
        for i in range(k):
            x, y = sample_batch(data, rng, batch_size, block)
            grads = torch.autograd.grad(lm_loss(model, x, y), params)
            out[i] = torch.cat([g.reshape(-1) for g in grads]).double().numpy()
    finally:
        model.train(was_training)
    return out


def snr(grads: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-coordinate (mu/sigma, s) from a (K, n) array of independent gradients, K >= 4, with the
    unbiased (mu/sigma)^2 estimate of the module docstring (clipped at 0) and s the sample standard
    deviation. Coordinates with s = 0 (a parameter no minibatch touches) are dropped."""
    grads = np.asarray(grads, dtype=float)
    if grads.ndim != 2 or grads.shape[0] < 4:
        raise ValueError(f"snr: need a (K, n) array with K >= 4 gradients (the estimate divides by K - 3), got "
                         f"shape {grads.shape}")
    k = grads.shape[0]
    mean, var = grads.mean(axis=0), grads.var(axis=0, ddof=1)
    keep = var > 0
    ratio2 = (k - 3) / (k - 1) * mean[keep] ** 2 / var[keep] - 1 / k
    return np.sqrt(np.maximum(ratio2, 0.0)), np.sqrt(var[keep])


def noise_floor(k: int, threshold: float) -> float:
    """Share of coordinates with mu = 0 whose estimated mu/sigma (:func:`snr`, from ``k`` gradients)
    exceeds ``threshold``: P(t^2 > (1 + k threshold^2) (k - 1)/(k - 3)) for t Student-t with k - 1
    degrees of freedom."""
    return float(2 * stats.t.sf(np.sqrt((1 + k * threshold**2) * (k - 1) / (k - 3)), k - 1))


def snr_summary(grads: np.ndarray, betas: tuple[float, float], thresholds=(1.0, 3.0)) -> dict:
    """What the stationary analysis predicts from measured gradients: the distribution of mu/sigma over
    coordinates (quantiles, share above each threshold next to its :func:`noise_floor`), and the
    E[V]/E[S] of AdamS against Adam at ``betas`` from the closed forms, per coordinate (median and
    quartiles) and over the whole model (sum of E[V] over sum of E[S], which weights each
    coordinate by its share of Adam's denominator)."""
    ratio, sigma = snr(grads)
    k = np.asarray(grads).shape[0]
    m = closed_forms.moments(ratio * sigma, sigma, betas[0], betas[1])
    per_coordinate = m["E_V"] / m["E_S"]
    return {
        "k": int(k), "n": int(ratio.size),
        "snr_quantiles": {str(q): float(np.quantile(ratio, q)) for q in (0.5, 0.9, 0.99)},
        "share_above": {str(t): float(np.mean(ratio > t)) for t in thresholds},
        "noise_floor": {str(t): noise_floor(k, t) for t in thresholds},
        "ev_over_es_median": float(np.median(per_coordinate)),
        "ev_over_es_quartiles": [float(np.quantile(per_coordinate, 0.25)), float(np.quantile(per_coordinate, 0.75))],
        "ev_over_es_total": float(m["E_V"].sum() / m["E_S"].sum()),
    }
