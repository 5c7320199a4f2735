"""Train the small GPT on Shakespeare with AdamS on several processes (FSDP2 or DDP; CPUs or GPUs).

    python examples/train_fsdp.py                         # 2 CPU processes (gloo), FSDP2, 400 steps
    python examples/train_fsdp.py --device cuda --nproc 4 # one GPU per process (NCCL)
    python examples/train_fsdp.py --steps 100 --checkpoint-dir runs/fsdp --save-every 50
    python examples/train_fsdp.py --nproc 1 --steps 200 --checkpoint-dir runs/fsdp --resume

The model and recipe are those of ``analysis.training`` (the training experiments); ``--batch-size``
is the global batch, split evenly over the processes. Each process prints the optimizer state it
holds; ``--compare adamw`` trains a second optimizer the same way and prints the ratio per process.
Checkpoints are sharded (``torch.distributed.checkpoint``) and resume on any number of processes.
The smoothness probes read them as they are, with this file's ``model`` and ``batches``:

    python -m smoothness probe runs/fsdp/step_* --model examples/train_fsdp.py:model \
        --data examples/train_fsdp.py:batches --out runs/fsdp/probes.csv
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from analysis.training.distributed import compare_state, describe, train_distributed
from analysis.training import TrainConfig, corpus
from analysis.training.recipe import init_model, sample_batch


def model():
    """The GPT this script trains (its shape does not depend on the options), for the probes."""
    return init_model(TrainConfig(), corpus.load().vocab_size)


def batches(n: int = 4, seed: int = 0):
    """``n`` validation batches of the training batch's size, drawn from ``seed``, for the probes."""
    import numpy as np

    config, data = TrainConfig(), corpus.load()
    rng = np.random.default_rng(seed)
    return [sample_batch(data.val, rng, config.batch_size, config.block) for _ in range(n)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nproc", type=int, default=2, help="number of processes (default 2)")
    parser.add_argument("--wrap", choices=("fsdp", "ddp"), default="fsdp", help="FSDP2 (default) or DDP")
    parser.add_argument("--optimizer", default="adams", help="registered optimizer (default adams)")
    parser.add_argument("--compare", default=None, help="also train this optimizer and compare state bytes")
    parser.add_argument("--steps", type=int, default=TrainConfig.steps)
    parser.add_argument("--batch-size", type=int, default=TrainConfig.batch_size, help="global batch")
    parser.add_argument("--lr", type=float, default=TrainConfig.lr)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint-dir", default=None)
    parser.add_argument("--save-every", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    parser.add_argument("--json", default=None, help="write the result(s) to this JSON file")
    parser.add_argument("--device", default="cpu",
                        help="cpu (default; gloo) or cuda (one GPU per process, NCCL)")
    args = parser.parse_args(argv)
    if args.save_every and not args.checkpoint_dir:
        parser.error("--save-every needs --checkpoint-dir")

    config = TrainConfig(optimizer=args.optimizer, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                         seed=args.seed, warmup=min(TrainConfig.warmup, args.steps), device=args.device)
    results = [train_distributed(config, world_size=args.nproc, how=args.wrap, checkpoint_dir=args.checkpoint_dir,
                                 save_every=args.save_every, resume=args.resume)]
    print(describe(results[0]))
    if args.compare:
        other = train_distributed(dataclasses.replace(config, optimizer=args.compare), world_size=args.nproc,
                                  how=args.wrap)
        results.append(other)
        print(describe(other))
        print(compare_state(results[0], other))
    if args.json:
        with open(args.json, "w") as f:
            json.dump([r.to_dict() for r in results], f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
