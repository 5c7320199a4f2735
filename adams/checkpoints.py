"""What every checkpoint of this package shares: its layout, the keys of a momentum, and its error.

A training checkpoint is one ``torch.save`` file holding ``{"model": model.state_dict(),
"optimizer": optimizer.state_dict(), "step": step}`` (:func:`training_checkpoint`). The trainer
(``analysis.training``), the examples and the smoothness probes (``smoothness.checkpoints``) write
and read this layout through the names here; sharded checkpoints (:mod:`adams.distributed`) hold
the same three parts through ``torch.distributed.checkpoint``.

>>> import torch, adams
>>> model = torch.nn.Linear(2, 1)
>>> sorted(adams.checkpoints.training_checkpoint(model, adams.AdamS(model.parameters()), 0))
['model', 'optimizer', 'step']
"""
from __future__ import annotations

import torch

__all__ = ["CheckpointError", "MODEL", "OPTIMIZER", "STEP", "MOMENTUM_KEYS", "training_checkpoint"]

MODEL, OPTIMIZER, STEP = "model", "optimizer", "step"

#: optimizer-state keys of a momentum with its parameter's shape, in the order they are looked for:
#: ``exp_avg`` (AdamS, AdamW, Adam-mini), ``momentum_buffer`` (SGD with momentum)
MOMENTUM_KEYS = ("exp_avg", "momentum_buffer")


class CheckpointError(ValueError):
    """A checkpoint that is missing, damaged, unsafe, or does not match what it is loaded into;
    the message names the file and the problem. Raised by :mod:`adams.distributed` and
    :mod:`smoothness.checkpoints` alike."""


def training_checkpoint(model: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int) -> dict:
    """The dict a training checkpoint file holds (write it with ``torch.save``)."""
    return {MODEL: model.state_dict(), OPTIMIZER: optimizer.state_dict(), STEP: int(step)}
