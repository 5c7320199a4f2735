"""Optimizer state measured on small float32 models of several widths.

One step of each optimizer creates its state (lazily, on the first step); :func:`adams.state_bytes`
then counts every tensor in ``optimizer.state``. Deterministic: the counts do not depend on data.
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import torch

import adams

__all__ = ["MEMORY_OPTIMIZERS", "small_model", "state_by_width", "state_ratios"]

MEMORY_OPTIMIZERS: dict[str, Callable] = {
    "AdamS": lambda params: adams.AdamS(params),
    "AdamW": lambda params: torch.optim.AdamW(params),
    "SGD + momentum": lambda params: torch.optim.SGD(params, lr=1e-2, momentum=0.9),
}


def small_model(width: int, vocab: int = 256) -> torch.nn.Module:
    """An embedding, a two-layer MLP, a LayerNorm and an output layer, float32, seeded."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return torch.nn.Sequential(
            torch.nn.Embedding(vocab, width),
            torch.nn.Linear(width, 4 * width),
            torch.nn.GELU(),
            torch.nn.Linear(4 * width, width),
            torch.nn.LayerNorm(width),
            torch.nn.Linear(width, vocab),
        ).float()


def state_by_width(widths: Sequence[int], optimizers: Mapping[str, Callable] = MEMORY_OPTIMIZERS) -> dict[int, dict]:
    """For each width: ``{optimizer name: state bytes by key, "params": n, "tensors": n}``."""
    memory = {}
    for width in widths:
        row = {}
        for name, make in optimizers.items():
            model = small_model(width)
            opt = make(model.parameters())
            tokens = torch.randint(0, 256, (8, 16), generator=torch.Generator().manual_seed(0))
            torch.nn.functional.cross_entropy(model(tokens).flatten(0, 1), tokens.flatten()).backward()
            opt.step()
            row[name] = adams.state_bytes(opt, by_key=True)
        row["params"] = sum(p.numel() for p in model.parameters())
        row["tensors"] = len(list(model.parameters()))
        memory[width] = row
    return memory


def state_ratios(memory: Mapping[int, dict]) -> dict[str, list]:
    """Per width: total and buffer ratios AdamS / AdamW, and AdamS's bytes beyond SGD with momentum's."""
    out = {"total": [], "buffers": [], "adams_minus_sgd": [], "buffers_per_param": []}
    for row in memory.values():
        total = {n: sum(row[n].values()) for n in MEMORY_OPTIMIZERS}
        buffers = {n: sum(v for k, v in row[n].items() if k != "step") for n in MEMORY_OPTIMIZERS}
        out["total"].append(total["AdamS"] / total["AdamW"])
        out["buffers"].append(buffers["AdamS"] / buffers["AdamW"])
        out["adams_minus_sgd"].append(total["AdamS"] - total["SGD + momentum"])
        out["buffers_per_param"].append({n: buffers[n] / row["params"] for n in MEMORY_OPTIMIZERS})
    return out
