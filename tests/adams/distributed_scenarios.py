"""Training scenarios that ``tests/adams/test_distributed.py`` runs on 2 CPU processes (gloo).

    python tests/adams/distributed_scenarios.py OUT_DIR

writes ``OUT_DIR/rank{0,1}.pt`` (what each process measured) and a sharded checkpoint under
``OUT_DIR/ckpt``. The same helpers, run in one process, give the reference the tests compare with.
"""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import torch

import adams
from adams import _fused
from adams.distributed import load_checkpoint, save_checkpoint, state_bytes_per_rank
from analysis.training.distributed import full_parameters, launch, local_rows, unwrap, wrap
from analysis.training.gpt import GPT, GPTConfig
from analysis.training import lm_loss

# an odd vocabulary, so that FSDP2 shards the embedding unevenly (9 and 8 rows)
CONFIG = GPTConfig(vocab=17, block=8, layers=2, heads=2, width=16)
THREE_HEADS = GPTConfig(vocab=17, block=8, layers=1, heads=3, width=24)
STEPS = 4
GLOBAL_BATCH = 8
HYPER = dict(lr=1e-2, betas=(0.9, 0.95), weight_decay=0.1)


def make_model(how: str, dtype: torch.dtype = torch.float32, config: GPTConfig = CONFIG) -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return wrap(GPT(config).to(dtype), how)


def scenario_optimizer(name: str, model: torch.nn.Module, config: GPTConfig = CONFIG, **extra) -> torch.optim.Optimizer:
    if name == "adam-mini":
        extra = {"model_dim": config.width, "n_heads": config.heads, **extra}
    return adams.make_optimizer(name, unwrap(model).named_parameters(), **HYPER, **extra)


def global_batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1000 + step)
    tokens = torch.randint(0, CONFIG.vocab, (GLOBAL_BATCH, CONFIG.block + 1), generator=g)
    return tokens[:, :-1], tokens[:, 1:]


def backward(model: torch.nn.Module, step: int, rank: int, world_size: int) -> None:
    x, y = global_batch(step)
    lm_loss(model, local_rows(x, rank, world_size), local_rows(y, rank, world_size)).backward()


def train(model, optimizer, steps: range, rank: int = 0, world_size: int = 1) -> None:
    for step in steps:
        optimizer.zero_grad(set_to_none=True)
        backward(model, step, rank, world_size)
        optimizer.step()


def full_momentum(model: torch.nn.Module, optimizer: torch.optim.Optimizer, key: str = "exp_avg") -> dict:
    out = {}
    for name, p in unwrap(model).named_parameters():
        m = optimizer.state[p][key]
        out[name] = (m.full_tensor() if hasattr(m, "full_tensor") else m).clone()
    return out


def _count_kernel_calls():
    calls = [0]
    run = _fused.run

    def counting(*args, **kwargs):
        calls[0] += 1
        return run(*args, **kwargs)

    _fused.run = counting
    return calls, lambda: setattr(_fused, "run", run)


def scenarios(rank: int, world_size: int, out: str) -> dict:
    results: dict = {}
    for how in ("ddp", "fsdp"):
        for name in ("adams", "adamw"):
            for dtype in (torch.float32, torch.float64):
                model = make_model(how, dtype)
                optimizer = scenario_optimizer(name, model)
                train(model, optimizer, range(STEPS), rank, world_size)
                results[f"{how}/{name}/{str(dtype)[6:]}"] = full_parameters(model)
                if how == "fsdp" and dtype == torch.float32:
                    results[f"{how}/{name}/state_bytes_by_key"] = adams.state_bytes(optimizer, by_key=True)
                    results[f"{how}/{name}/state_bytes_per_rank"] = state_bytes_per_rank(optimizer)
                    results[f"{how}/{name}/param_bytes"] = adams.param_bytes(optimizer)

    # which path AdamS takes on DTensor shards: the fused kernel, without a warning
    for label, extra in (("fused", {"fused": True}), ("foreach", {"foreach": True})):
        model = make_model("fsdp")
        optimizer = scenario_optimizer("adams", model, **extra)
        calls, restore = _count_kernel_calls()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            train(model, optimizer, range(STEPS), rank, world_size)
        restore()
        results[f"fsdp/adams-{label}"] = full_parameters(model)
        results[f"fsdp/adams-{label}/kernel_calls"] = calls[0]
        results[f"fsdp/adams-{label}/warnings"] = [str(w.message) for w in caught]
        results[f"fsdp/adams-{label}/exp_avg_local_numel"] = sum(
            optimizer.state[p]["exp_avg"].to_local().numel() for p in model.parameters())
        results[f"fsdp/adams-{label}/numel"] = sum(p.numel() for p in model.parameters())

    # checkpoint after 2 steps; continue 2 steps; reload into a fresh model and take the same 2 steps
    model = make_model("fsdp")
    optimizer = scenario_optimizer("adams", model)
    train(model, optimizer, range(2), rank, world_size)
    save_checkpoint(Path(out) / "ckpt", model, optimizer, extra={"step": 2})
    results["ckpt/saved_params"] = full_parameters(model)
    results["ckpt/saved_exp_avg"] = full_momentum(model, optimizer)
    train(model, optimizer, range(2, STEPS), rank, world_size)
    results["ckpt/continued"] = full_parameters(model)
    model = make_model("fsdp")
    optimizer = scenario_optimizer("adams", model)
    extra = load_checkpoint(Path(out) / "ckpt", model, optimizer)
    results["ckpt/extra"] = extra
    results["ckpt/loaded_params"] = full_parameters(model)
    results["ckpt/loaded_exp_avg"] = full_momentum(model, optimizer)
    train(model, optimizer, range(2, STEPS), rank, world_size)
    results["ckpt/resumed"] = full_parameters(model)

    # a NaN in one process's shard of one gradient: every process skips the step
    model = make_model("fsdp")
    optimizer = scenario_optimizer("adams", model, nonfinite="skip")
    train(model, optimizer, range(1), rank, world_size)
    before = full_parameters(model)
    optimizer.zero_grad(set_to_none=True)
    backward(model, 1, rank, world_size)
    if rank == 1:
        next(p for p in model.parameters() if p.grad.to_local().numel()).grad.to_local().view(-1)[0] = float("nan")
    optimizer.step()
    results["nonfinite/skipped_steps"] = optimizer.skipped_steps
    results["nonfinite/unchanged"] = all(torch.equal(before[k], v) for k, v in full_parameters(model).items())

    # the authors' Adam-mini under FSDP2: 2 heads (one per process), then 3 heads (which do not split)
    for label, config in (("2heads", CONFIG), ("3heads", THREE_HEADS)):
        model = make_model("fsdp", config=config)
        try:
            optimizer = scenario_optimizer("adam-mini", model, config=config)
            train(model, optimizer, range(STEPS), rank, world_size)
            results[f"fsdp/adam-mini/{label}"] = full_parameters(model)
        except Exception as err:  # recorded for the test to check the message
            results[f"fsdp/adam-mini/{label}/error"] = f"{type(err).__name__}: {err}"
    return results


def fails_on_rank_one(rank: int, world_size: int) -> int:
    if rank == 1:
        raise ArithmeticError("rank one gives up")
    torch.distributed.barrier()  # would wait forever for rank 1
    return rank


def sleeps(rank: int, world_size: int, seconds: float) -> int:
    import time
    time.sleep(seconds)
    return rank


def main(out: str) -> None:
    Path(out).mkdir(parents=True, exist_ok=True)
    for rank, result in enumerate(launch(scenarios, 2, out, threads=1, timeout=300)):
        torch.save(result, Path(out) / f"rank{rank}.pt")


if __name__ == "__main__":
    main(sys.argv[1])
