"""The pieces of the training recipe: the model, its optimizer, batches, the loss, evaluation.

The nanoGPT recipe the paper's authors used: linear warmup then cosine decay (:meth:`TrainConfig.lr_at`),
gradient clipping, decoupled weight decay on tensors with two or more dimensions only
(:func:`adams.make_optimizer`). Initialization comes from a forked torch RNG seeded with the
configuration's seed, so the global RNGs are left as they were.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

import adams
from analysis.training import corpus as corpus_mod
from analysis.training.config import TrainConfig, optimizer_for
from analysis.training.gpt import GPT


#: optimizer-state keys of a first moment (AdaPM keeps one per block of a parameter, "momentum" or
#: "momentum.<k>.<role>", full-size or low-rank), for momentum_norm
FIRST_MOMENT_KEYS = (*adams.checkpoints.MOMENTUM_KEYS, "m", "momentum")
VAL_SEQUENCES = 32  # per validation batch


def momentum_norm(optimizer: torch.optim.Optimizer) -> float:
    """Global norm of the optimizer's first-moment buffers (NaN if it keeps none yet). AdaPM's
    low-rank buffers hold coefficients in an orthonormal basis, so their norm is the momentum's."""
    total, found = 0.0, False
    for state in optimizer.state.values():
        for key, value in state.items():
            if str(key).split(".")[0] in FIRST_MOMENT_KEYS and torch.is_tensor(value):
                total += float(value.double().pow(2).sum())
                found = True
    return math.sqrt(total) if found else float("nan")


def sample_batch(data: np.ndarray, rng: np.random.Generator, batch_size: int, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch_size`` random windows of ``block + 1`` tokens: inputs and next-token targets."""
    starts = rng.integers(0, data.size - block - 1, size=batch_size)
    idx = starts[:, None] + np.arange(block + 1)[None, :]
    chunk = torch.from_numpy(data[idx].astype(np.int64))
    return chunk[:, :-1], chunk[:, 1:]


def lm_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean next-character cross entropy (nats)."""
    logits = model(x)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


def init_model(config: TrainConfig, vocab: int) -> torch.nn.Module:
    """The model, initialized from ``config.seed`` on the CPU (the global RNG is left untouched), so
    that every device starts from the same weights, then moved to ``config.device`` (on ``"meta"``
    only the shapes exist)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return GPT(config.model_config(vocab)).to(config.device)


def training_device(device: str | torch.device, what: str = "device") -> torch.device:
    """``device`` as a ``torch.device`` a run can train on, else ``ValueError`` naming ``what``: not a
    device name, ``meta`` (shapes but no numbers), or CUDA on a machine without it."""
    try:
        checked = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"{what}: not a device name: {device!r} (try 'cpu' or 'cuda')") from None
    if checked.type == "meta":
        raise ValueError(f"{what} 'meta' has shapes but no numbers; a run needs 'cpu' or 'cuda'")
    if checked.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{what} is {str(checked)!r} but CUDA is not available here")
    return checked


def to_device(batch: tuple[torch.Tensor, ...], device: str | torch.device) -> tuple[torch.Tensor, ...]:
    """A batch moved to ``device`` (asynchronously from pinned memory on a GPU)."""
    device = torch.device(device)
    if device.type == "cpu":
        return batch
    return tuple((t.pin_memory() if device.type == "cuda" else t).to(device, non_blocking=True) for t in batch)


def build(config: TrainConfig, vocab: int) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """The model (:func:`init_model`) and its optimizer (:func:`optimizer_for`)."""
    model = init_model(config, vocab)
    return model, optimizer_for(config, model)


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> float:
    model.eval()
    loss = sum(float(lm_loss(model, x, y)) for x, y in batches) / len(batches)
    model.train()
    return loss


def validation_batches(config: TrainConfig, data: np.ndarray) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The fixed validation set: ``eval_batches`` x 32 windows of ``block`` characters, the same for every
    optimizer, seed and training batch size."""
    rng = np.random.default_rng(12345)
    return [sample_batch(data, rng, VAL_SEQUENCES, config.block) for _ in range(config.eval_batches)]


def check_block_fits(config: TrainConfig, corpus: corpus_mod.Corpus) -> None:
    """A window of ``block + 1`` characters must fit in the training and the validation text."""
    shortest = min(corpus.train.size, corpus.val.size)
    if config.block + 1 >= shortest:
        raise ValueError(f"TrainConfig.block must be < {shortest - 1} (the validation text has {corpus.val.size} "
                         f"characters), got {config.block}")


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, params: Sequence[torch.Tensor],
               config: TrainConfig, step: int, x: torch.Tensor, y: torch.Tensor,
               before_update: Callable[[], Any] | None = None) -> tuple[torch.Tensor, float, Any]:
    """One step of the recipe, shared by one process and several: the scheduled learning rate, the
    loss on ``(x, y)``, backward, clipping at ``config.clip`` (``None``: none), the optimizer step.

    Returns the loss, the gradient norm before clipping, and what ``before_update()`` returned, called
    right before the optimizer step (the single-process loop snapshots the parameters there).
    """
    for group in optimizer.param_groups:
        group["lr"] = config.lr_at(step)
    loss = lm_loss(model, x, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    max_norm = config.clip if config.clip is not None else float("inf")
    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
    snapshot = before_update() if before_update is not None else None
    optimizer.step()
    return loss, grad_norm, snapshot
