r"""Closed-form facts about the AdamS step: the bounded-step constant and the first step.

**Bounded step.** With :math:`\epsilon = 0` and no weight decay, the per-coordinate step of the
paper-text form is :math:`\eta\,|m_t| / \sqrt{\nu_t}` with
:math:`m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t` and :math:`\nu_t = \beta_2 m_{t-1}^2 + (1-\beta_2) g_t^2`.
Write :math:`m_t` as an inner product of :math:`a = (\beta_1/\sqrt{\beta_2},\,(1-\beta_1)/\sqrt{1-\beta_2})`
and :math:`b = (\sqrt{\beta_2}\, m_{t-1},\, \sqrt{1-\beta_2}\, g_t)`; then :math:`\|b\|^2 = \nu_t` and
Cauchy-Schwarz gives

.. math::

    \frac{|m_t|}{\sqrt{\nu_t}} \le \|a\| = \sqrt{\frac{\beta_1^2}{\beta_2} + \frac{(1-\beta_1)^2}{1-\beta_2}} ,

with equality when :math:`b \parallel a`, i.e. :math:`m_{t-1}/g_t = \beta_1(1-\beta_2) / (\beta_2(1-\beta_1))`.
Any :math:`m_{t-1}` is reachable from :math:`t = 2` on (``m_1 = (1-beta1) g_1``), so the bound is
attained. It depends on the betas only: it is 1.026 at (0.9, 0.95) but 3.29 at (0.9, 0.999), which
is why beta2 must stay close to beta1 and AdamW's usual beta2 = 0.999 is a poor choice for AdamS.

In the default form the same argument applied to :math:`M = m_{t-1}/c_t` gives, for step :math:`t \ge 2`,
:math:`\sqrt{\beta_1^2/\beta_2 + (1-\beta_1)^2 / ((1-\beta_2) c_t^2)}`, which decreases to the paper-text
constant as :math:`t \to \infty`. At :math:`t = 1`, :math:`m_0 = 0` forces the ratio to be exactly
:math:`1/\sqrt{1-\beta_2}` (default form) or :math:`(1-\beta_1)/\sqrt{1-\beta_2}` (paper-text form).
"""
from __future__ import annotations

import math

__all__ = ["step_bound", "first_step_size"]


def _check_betas(beta1: float, beta2: float) -> None:
    if not 0.0 <= beta1 < 1.0:
        raise ValueError(f"beta1 must be in [0, 1), got beta1={beta1}")
    if not 0.0 <= beta2 < 1.0:
        raise ValueError(f"beta2 must be in [0, 1), got beta2={beta2}")


def step_bound(
    beta1: float, beta2: float, *, bias_correction: bool = False, step: int | None = None
) -> float:
    """Supremum of the per-coordinate step ``|update| / lr`` at ``eps = 0`` and no weight decay.

    With ``step=None`` the supremum is over all steps ``t >= 1``; otherwise over the gradients and
    momenta possible at that step. ``beta2 = 0`` gives ``inf`` (the step is unbounded) unless
    ``beta1 = 0`` too.

    >>> round(step_bound(0.9, 0.95), 4)
    1.026
    >>> round(step_bound(0.9, 0.999), 2)
    3.29
    >>> round(step_bound(0.9, 0.95, bias_correction=True), 4)  # attained at t = 1
    4.4721
    """
    _check_betas(beta1, beta2)
    if step is not None and step < 1:
        raise ValueError(f"step is counted from 1, got step={step}")
    first = (1.0 if bias_correction else 1.0 - beta1) / math.sqrt(1.0 - beta2)
    if step == 1:
        return first

    def later(c: float) -> float:  # sup over m_{t-1}, g_t of |m_t / c| / sqrt(nu_t), t >= 2
        if beta2 == 0.0:
            return math.inf if beta1 > 0.0 else (1.0 - beta1) / c / math.sqrt(1.0 - beta2)
        return math.sqrt(beta1**2 / beta2 + (1.0 - beta1) ** 2 / ((1.0 - beta2) * c * c))

    if not bias_correction:
        return later(1.0) if step is not None else max(first, later(1.0))
    if step is not None:
        return later(1.0 - beta1**step)
    # c_t increases with t, so over t >= 2 the supremum is at t = 2.
    return max(first, later(1.0 - beta1**2))


def first_step_size(lr: float, beta1: float, beta2: float, *, bias_correction: bool = True) -> float:
    """Size of each coordinate's first step at ``eps = 0`` (any nonzero gradient, no weight decay).

    Default form: ``lr / sqrt(1 - beta2)``; paper-text form: ``(1 - beta1) lr / sqrt(1 - beta2)``.
    AdamW's first step is ``lr`` in the same conditions.

    >>> round(first_step_size(1.0, 0.9, 0.95), 4)
    4.4721
    >>> round(first_step_size(1.0, 0.9, 0.95, bias_correction=False), 4)
    0.4472
    """
    _check_betas(beta1, beta2)
    return lr * step_bound(beta1, beta2, bias_correction=bias_correction, step=1)
