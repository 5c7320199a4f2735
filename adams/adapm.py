"""AdaPM-style partial momentum: a *reconstruction*, not the authors' algorithm.

AdaPM (arXiv 2510.09103) reports that most blocks of a transformer do not need a full momentum
buffer, that a bias correction repairs the partial momentum, and that with an Adam-mini-style
second moment over 90% of momentum memory (up to 95% of optimizer state) is saved. No code was
released. This module is our reading of that description, written so that every choice is visible
and testable; it is labelled a reconstruction wherever it appears (``name = "AdaPM (reconstruction)"``).

Blocks (chosen by tensor shape, so any model works):

* **Matrices (2-D and larger, flattened to rows x columns): partial momentum.** The state is one
  momentum value per row, the EMA of the row mean of the gradient,
  ``mbar_t = beta1 mbar_{t-1} + (1 - beta1) gbar_t`` with ``gbar_t`` the row mean of ``g_t``. The
  update direction keeps the current gradient's deviation from its row mean and replaces the row
  mean by its bias-corrected momentum::

      d_t = g_t - gbar_t + mbar_t / (1 - beta1^t)

  With one column this is ordinary momentum; with many, the momentum averages the part of the
  gradient shared across a row (the low-noise, slowly varying part) and leaves the rest fresh.
  The division by ``1 - beta1^t`` is the bias correction: without it the momentum part of the first
  steps would be shrunk by ``1 - beta1^t`` relative to the fresh part.
* **Vectors (biases, norms): full momentum** (a negligible share of the memory).
* **Second moment, Adam-mini style:** one EMA of the mean of ``g^2`` per row of a matrix and per
  vector, with Adam's bias correction; the step is ``lr * d_t / (sqrt(vhat) + eps)``.

Weight decay is decoupled (``w <- (1 - lr * wd) w``) as in AdamW. State per m x n matrix: 2m floats
(against 2mn for AdamW).
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor

__all__ = ["AdaPMReconstruction"]


class AdaPMReconstruction(torch.optim.Optimizer):
    """Partial momentum with a row-wise second moment; a reconstruction of AdaPM (see the module docstring).

    >>> import torch
    >>> w = torch.nn.Parameter(torch.zeros(4, 3))
    >>> opt = AdaPMReconstruction([w], lr=0.1)
    >>> w.grad = torch.ones(4, 3); opt.step()
    >>> sorted((k, tuple(v.shape)) for k, v in opt.state[w].items() if torch.is_tensor(v))
    [('row_exp_avg', (4, 1)), ('row_exp_avg_sq', (4, 1)), ('step', ())]
    """

    name = "AdaPM (reconstruction)"

    def __init__(self, params: Iterable[Tensor] | Iterable[dict], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.95), eps: float = 1e-8, weight_decay: float = 0.0):
        if not lr >= 0:
            raise ValueError(f"lr must be >= 0, got {lr}")
        if not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"betas must lie in [0, 1), got {betas}")
        if not eps >= 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        if not weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("AdaPMReconstruction does not support sparse gradients")
                g = p.grad
                state = self.state[p]
                matrix = p.dim() >= 2
                rows = g.reshape(g.shape[0], -1) if matrix else g.reshape(1, -1)
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    if matrix:
                        state["row_exp_avg"] = torch.zeros(rows.shape[0], 1, dtype=p.dtype, device=p.device)
                    else:
                        state["exp_avg"] = torch.zeros_like(p)
                    state["row_exp_avg_sq"] = torch.zeros(rows.shape[0], 1, dtype=p.dtype, device=p.device)
                state["step"] += 1
                t = int(state["step"].item())
                c1, c2 = 1 - beta1**t, 1 - beta2**t
                if wd != 0:
                    p.mul_(1 - lr * wd)
                if matrix:
                    gbar = rows.mean(dim=1, keepdim=True)
                    state["row_exp_avg"].lerp_(gbar, 1 - beta1)
                    direction = rows - gbar + state["row_exp_avg"] / c1
                else:
                    state["exp_avg"].lerp_(g, 1 - beta1)
                    direction = state["exp_avg"].reshape(1, -1) / c1
                state["row_exp_avg_sq"].mul_(beta2).add_((rows * rows).mean(dim=1, keepdim=True), alpha=1 - beta2)
                denom = (state["row_exp_avg_sq"] / c2).sqrt_().add_(eps)
                p.add_((direction / denom).reshape(p.shape), alpha=-lr)
        return loss

    def __repr__(self) -> str:
        return f"{self.name}({self.defaults})"
