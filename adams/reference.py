r"""AdamS in NumPy float64, written to be read.

This is the teaching reference that every fast path in :mod:`adams` is tested against. One statement
per line of the algorithm, the paper's symbol names, no in-place tricks and no speed tricks.
Steps are counted from :math:`t = 1` and :math:`m_0 = 0`.

Default form (``bias_correction=True``, what the authors' released code runs)::

    c_t  = 1 - beta1^t
    w    = (1 - lr * lam) * w                              decoupled weight decay, first
    nu_t = beta2 * (m_{t-1} / c_t)^2 + (1 - beta2) * g_t^2   previous momentum, divided by c_t
    m_t  = beta1 * m_{t-1} + (1 - beta1) * g_t
    w    = w - lr * (m_t / c_t) / (sqrt(nu_t) + eps)       eps outside the square root

Paper-text form (``bias_correction=False``): the same with ``c_t = 1``.

>>> import numpy as np
>>> opt = AdamSReference(lr=0.1, betas=(0.9, 0.95), eps=0.0, weight_decay=0.0)
>>> w = opt.step(np.array([1.0, -2.0]), np.array([0.5, -3.0]))
>>> round(float(1.0 - w[0]), 4)  # the first step moves by lr / sqrt(1 - beta2)
0.4472
"""
from __future__ import annotations

import numpy as np

__all__ = ["adams_step", "AdamSReference"]


def adams_step(
    w: np.ndarray,
    g: np.ndarray,
    m: np.ndarray,
    t: int,
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    bias_correction: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One AdamS step at step ``t`` (from 1). ``m`` is m_{t-1}. Returns ``(w_t, m_t, nu_t)``.

    The NumPy float64 twin of :func:`adams.functional.adams_update` (which returns ``(w, m)`` and
    takes ``step=`` by keyword); it also returns the denominator ``nu_t`` that a course shows."""
    w = np.asarray(w, dtype=np.float64)
    g = np.asarray(g, dtype=np.float64)
    m = np.asarray(m, dtype=np.float64)
    if bias_correction:
        c = 1.0 - beta1**t
    else:
        c = 1.0
    w_decayed = (1.0 - lr * weight_decay) * w
    nu = beta2 * (m / c) ** 2 + (1.0 - beta2) * g**2
    m_new = beta1 * m + (1.0 - beta1) * g
    w_new = w_decayed - lr * (m_new / c) / (np.sqrt(nu) + eps)
    return w_new, m_new, nu


class AdamSReference:
    """AdamS as a small stateful object over NumPy arrays: ``w = opt.step(w, g)``.

    The state is the momentum ``m`` (``None`` until the first step) and the step count ``t``.
    """

    def __init__(
        self,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.95),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        bias_correction: bool = True,
    ) -> None:
        self.lr = lr
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.weight_decay = weight_decay
        self.bias_correction = bias_correction
        self.m: np.ndarray | None = None
        self.t = 0
        self.nu: np.ndarray | None = None

    def step(self, w: np.ndarray, g: np.ndarray) -> np.ndarray:
        """Take one step from ``w`` with gradient ``g`` and return the new parameters."""
        g = np.asarray(g, dtype=np.float64)
        if self.m is None:
            self.m = np.zeros_like(g)
        self.t = self.t + 1
        w_new, self.m, self.nu = adams_step(
            w,
            g,
            self.m,
            self.t,
            lr=self.lr,
            beta1=self.beta1,
            beta2=self.beta2,
            eps=self.eps,
            weight_decay=self.weight_decay,
            bias_correction=self.bias_correction,
        )
        return w_new
