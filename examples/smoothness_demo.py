"""A small run to try the smoothness probes on: a model, its evaluation data, and a training loop.

    python examples/smoothness_demo.py runs/demo     # trains 50 AdamS steps, saves 6 checkpoints

``factory`` and ``batches`` are what ``python -m smoothness probe --model ... --data ...`` expects:
a function returning the (untrained) model, and one returning the evaluation batch (inputs, targets)
for the default cross-entropy loss.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

import adams


def factory() -> torch.nn.Module:
    """An MLP classifier on 8 features and 4 classes (the checkpoints hold its weights)."""
    return torch.nn.Sequential(torch.nn.Linear(8, 64), torch.nn.GELU(), torch.nn.Linear(64, 4))


def _data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    teacher = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    return x, (x @ teacher + 0.5 * torch.randn(n, 4, generator=g)).argmax(dim=1)


def batches() -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed evaluation batch: 512 examples the training loop never sees."""
    return _data(512, seed=1)


def train(out_dir: str | Path, steps: int = 50, every: int = 10) -> list[Path]:
    """Train with AdamS on fresh batches, saving model + optimizer state every ``every`` steps."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = factory()
    opt = adams.AdamS(model.named_parameters(), lr=1e-2, betas=(0.9, 0.95))
    saved = []
    for step in range(steps + 1):
        if step % every == 0:
            saved.append(out_dir / f"step_{step:04d}.pt")
            torch.save(adams.checkpoints.training_checkpoint(model, opt, step), saved[-1])
        x, y = _data(64, seed=1000 + step)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return saved


if __name__ == "__main__":
    paths = train(sys.argv[1] if len(sys.argv) > 1 else "runs/demo")
    print(f"saved {len(paths)} checkpoints in {paths[0].parent}")
