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

from typing import Sequence

import numpy as np
import torch
from scipy import stats

from analysis.stationary import closed_forms
from analysis.training.recipe import lm_loss, sample_batch

__all__ = ["minibatch_gradients", "snr", "noise_floor", "snr_summary", "momentum_noise_ratio", "denominator_check"]


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


def momentum_noise_ratio(momentum_sq, grad_sq, noise_trace, beta1: float) -> dict:
    r"""The momentum's size against what the noise model predicts, from points of a trajectory.

    With i.i.d. minibatch gradients of mean :math:`\nabla f` and noise trace :math:`\operatorname{tr}
    \Sigma_B` (for the training batch), and :math:`\nabla f` steady over the momentum's window, the
    stationary momentum has :math:`E\|m\|^2 = \|\nabla f\|^2 + a \operatorname{tr}\Sigma_B`,
    :math:`a = (1-\beta_1)/(1+\beta_1)`. Given, per point, :math:`\|m\|^2`, an unbiased
    :math:`\widehat{\|\nabla f\|^2}` and :math:`\operatorname{tr}\Sigma_B`, sums over the points give

    * ``measured``: :math:`\sqrt{\sum \|m\|^2 / \sum \widehat{\|\nabla f\|^2}}`, the momentum over
      the gradient with the minibatch noise taken out of the gradient,
    * ``predicted``: :math:`\sqrt{1 + a \sum \operatorname{tr}\Sigma_B / \sum \widehat{\|\nabla f\|^2}}`,
    * ``ratio``: measured over predicted, :math:`\sqrt{\sum \|m\|^2 / \sum (\widehat{\|\nabla f\|^2} +
      a \operatorname{tr}\Sigma_B)}`, 1 where the noise model accounts for the momentum.

    Sums, not per-point ratios: each term is unbiased, and a single point's estimate of
    :math:`\|\nabla f\|^2` can be near 0 or negative. ``measured`` and ``predicted`` are NaN if the
    summed estimate is not positive.

    >>> r = momentum_noise_ratio([1.05, 1.05], [1.0, 1.0], [1.0, 1.0], beta1=0.9)
    >>> round(r["measured"], 4), round(r["predicted"], 4), round(r["ratio"], 4)
    (1.0247, 1.026, 0.9987)
    """
    m2, g2, tr = (np.asarray(v, dtype=float) for v in (momentum_sq, grad_sq, noise_trace))
    if not (m2.shape == g2.shape == tr.shape) or m2.ndim != 1 or m2.size == 0:
        raise ValueError(f"momentum_noise_ratio: need three 1-d arrays of one length, got shapes {m2.shape}, "
                         f"{g2.shape}, {tr.shape}")
    if not (np.all(np.isfinite(m2)) and np.all(np.isfinite(g2)) and np.all(np.isfinite(tr))):
        raise ValueError("momentum_noise_ratio: every value must be finite")
    if not (0 <= beta1 < 1):
        raise ValueError(f"momentum_noise_ratio: beta1 must lie in [0, 1), got {beta1}")
    a = (1 - beta1) / (1 + beta1)
    g, t, m = g2.sum(), tr.sum(), m2.sum()
    ok = g > 0
    return {"measured": float(np.sqrt(m / g)) if ok else float("nan"),
            "predicted": float(np.sqrt(1 + a * t / g)) if ok else float("nan"),
            "ratio": float(np.sqrt(m / (g + a * t))) if g + a * t > 0 else float("nan"),
            "noise_share": float(a * t / (g + a * t)) if g + a * t > 0 else float("nan"), "n": int(m2.size)}


def denominator_check(exp_avg: np.ndarray, exp_avg_sq: np.ndarray, grads: np.ndarray, betas: tuple[float, float],
                      *, bins: Sequence[float] = (0.0, 0.1, 0.3, 1.0, 3.0, np.inf)) -> dict:
    r"""AdamS's denominator built from an Adam(W) run's own state, against Adam's, and against the
    stationary closed form.

    At a checkpoint of an Adam(W) run with first and second moments :math:`m_t` (``exp_avg``) and
    :math:`v_t` (``exp_avg_sq``), the next gradient :math:`g_{t+1}` gives Adam's
    :math:`S = \beta_2 v_t + (1-\beta_2) g^2` and the :math:`V = \beta_2 m_t^2 + (1-\beta_2) g^2` that
    AdamS would form from the same momentum and gradient. ``grads`` holds K >= 8 independent
    minibatch gradients at the checkpoint's weights (rows), each a draw of :math:`g_{t+1}`; V and S are
    averaged over them. The stationary model (:func:`analysis.stationary.closed_forms.moments`)
    predicts :math:`E[V] = \mu^2 + \sigma^2(\beta_2 a + 1 - \beta_2)` and :math:`E[S] = \mu^2 + \sigma^2`
    per coordinate, with :math:`\mu^2` and :math:`\sigma^2` estimated without bias from the gradients
    (:math:`\bar g^2 - s^2/K` and :math:`s^2`). Over the whole model the measured
    :math:`\sum V / \sum S` is compared with the predicted :math:`\sum E[V] / \sum E[S]`, and each with
    its own prediction (``v_over_expected`` :math:`= \sum V / \sum E[V]`, ``s_over_expected``), so that
    a momentum smaller than predicted and a second moment larger than predicted can be told apart.

    Per ``bins`` of :math:`\mu/\sigma`, coordinates are sorted by the estimate (:func:`snr`) from the
    first half of the gradients and predicted from the second half only, so that the noise of the
    estimate that chose a coordinate's bin does not also bias its prediction.
    """
    m, v, g = (np.asarray(x, dtype=float) for x in (exp_avg, exp_avg_sq, grads))
    if g.ndim != 2 or g.shape[0] < 8:
        raise ValueError(f"denominator_check: need a (K, n) array of K >= 8 gradients (two halves of >= 4), "
                         f"got shape {g.shape}")
    if m.shape != (g.shape[1],) or v.shape != m.shape:
        raise ValueError(f"denominator_check: exp_avg and exp_avg_sq must be flat arrays of the gradients' "
                         f"length {g.shape[1]}, got shapes {m.shape} and {v.shape}")
    if np.any(v < 0) or not (np.all(np.isfinite(m)) and np.all(np.isfinite(v)) and np.all(np.isfinite(g))):
        raise ValueError("denominator_check: the moments and gradients must be finite, exp_avg_sq >= 0")
    beta1, beta2 = betas
    k = g.shape[0]
    g2 = (g**2).mean(axis=0)
    V = beta2 * m**2 + (1 - beta2) * g2
    S = beta2 * v + (1 - beta2) * g2

    def predicted(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = rows.shape[0]
        s2 = rows.var(axis=0, ddof=1)
        mu2 = rows.mean(axis=0) ** 2 - s2 / n
        mo = closed_forms.moments(np.zeros(1), np.ones(1), beta1, beta2)  # E[V] at mu = 0, sigma = 1
        return mu2 + s2 * float(mo["E_V"][0]), mu2 + s2

    ev, es = predicted(g)
    half = k // 2
    est, _ = snr(g[:half])
    keep = g[:half].var(axis=0, ddof=1) > 0
    r_first = np.full(m.shape, np.nan)
    r_first[keep] = est
    ev_b, es_b = predicted(g[half:])
    rows = []
    for lo, hi in zip(bins[:-1], bins[1:]):
        sel = keep & (r_first >= lo) & (r_first < hi)
        if not sel.any():
            continue
        rows.append({"snr_low": float(lo), "snr_high": float(hi), "n": int(sel.sum()),
                     "measured": float(V[sel].sum() / S[sel].sum()), "predicted": float(ev_b[sel].sum() / es_b[sel].sum())})
    return {"k": int(k), "n": int(m.size), "measured": float(V.sum() / S.sum()), "predicted": float(ev.sum() / es.sum()),
            "v_over_expected": float(V.sum() / ev.sum()), "s_over_expected": float(S.sum() / es.sum()),
            "momentum_sq_over_second_moment": float((m**2).sum() / v.sum()),
            "predicted_momentum_sq_over_second_moment": float(
                (ev.sum() - (1 - beta2) * es.sum()) / beta2 / es.sum()),
            "bins": rows}
