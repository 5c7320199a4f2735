"""Data-parallel training of the small GPT on several processes: DDP or FSDP2, on gloo (CPU) or NCCL (GPUs).

:func:`launch` starts ``world_size`` processes with a process group (gloo, or NCCL with one GPU each
for ``TrainConfig(device="cuda")``) and returns what each
returns; :func:`wrap` shards a model with FSDP2 (``fully_shard`` on each transformer block, then on
the whole model) or wraps it in ``DistributedDataParallel``; :func:`train_distributed` runs the
recipe of :func:`analysis.training.train` across processes.

The global batch is the one :func:`analysis.training.train` draws for the same seed: every process
draws it from the same generator and keeps its own ``batch_size / world_size`` rows, and the
gradients are averaged. So a run on any number of processes follows the single-process run to
float32 round-off (``tests/adams/test_distributed.py`` checks it), and is a fair place to measure what
sharding changes: the optimizer state each process holds.

``examples/train_fsdp.py`` is the command-line entry point.
"""
from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

import adams
from adams.distributed import load_checkpoint, save_checkpoint, state_bytes_per_rank
from analysis.training import corpus as corpus_mod
from analysis.training import TrainConfig, init_model, lm_loss, optimizer_for, sample_batch, validation_batches
from analysis.training.recipe import to_device
from analysis.training.recipe import train_step

__all__ = ["launch", "wrap", "unwrap", "full_parameters", "local_rows", "train_distributed", "DistributedResult",
           "latest_checkpoint", "describe", "compare_state"]

Wrap = Literal["fsdp", "ddp", "none"]


def _child_main(spec_path: str) -> None:
    """A launched process: join the group, run the function, save what it returns."""
    spec = json.loads(Path(spec_path).read_text())
    rank, world_size = int(os.environ["ADAMS_RANK"]), spec["world_size"]
    if spec["file"] is not None:  # a function of a script: load it under another name than __main__
        module_spec = importlib.util.spec_from_file_location("_launched_script", spec["file"])
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[module_spec.name] = module
        module_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(spec["module"])
    fn = getattr(module, spec["qualname"])
    torch.set_num_threads(spec["threads"])
    if spec["backend"] == "nccl":  # one GPU per process
        torch.cuda.set_device(rank % torch.cuda.device_count())
    dist.init_process_group(spec["backend"], init_method=f"file://{spec['store']}", rank=rank, world_size=world_size,
                            timeout=timedelta(seconds=spec["collective_timeout"]))
    try:
        result = fn(rank, world_size, *spec["args"])
        out = Path(spec["out"]) / f"rank{rank}.pt"
        torch.save(result, out.with_suffix(".tmp"))
        os.replace(out.with_suffix(".tmp"), out)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def launch(fn: Callable[..., Any], world_size: int, *args: Any, threads: int | None = None,
           timeout: float = 900.0, show_rank0: bool = False, backend: str = "gloo") -> list[Any]:
    """Run ``fn(rank, world_size, *args)`` in ``world_size`` new processes joined by a process group
    (``backend``: ``"gloo"`` on CPUs, ``"nccl"`` with one GPU per process, ``torch.cuda.set_device``
    made before the group is joined).

    ``fn`` is a module-level function (of a module, or of the script being run: it is loaded from the
    file without running the script's ``if __name__ == "__main__"`` part). ``args`` must be JSON data.
    What ``fn`` returns must be plain data (numbers, strings, tensors, and lists or dicts of them):
    it comes back through ``torch.save`` and is read with ``weights_only=True``. The processes are
    fresh interpreters (``python -c``), so the caller's own script, or notebook, is not re-run in
    them. ``threads`` is each process's torch thread count (default: the cores shared out, at least
    1). ``show_rank0`` lets rank 0 print to this terminal (progress bars); the others' output is
    kept and shown if they fail. If any process fails, the others are stopped and ``RuntimeError``
    names the failure; after ``timeout`` seconds, ``TimeoutError``.
    """
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    if backend not in ("gloo", "nccl"):
        raise ValueError(f"backend must be 'gloo' or 'nccl', got {backend!r}")
    if "." in fn.__qualname__:
        raise ValueError(f"{fn.__qualname__} is not a module-level function; launch cannot import it")
    threads = threads or max(1, (os.cpu_count() or 1) // world_size)
    main_file = getattr(sys.modules.get("__main__"), "__file__", None) if fn.__module__ == "__main__" else None
    if fn.__module__ == "__main__" and main_file is None:
        raise ValueError(f"{fn.__qualname__} is defined interactively; put it in a module or a script file")
    paths = [str(Path(__file__).resolve().parent.parent)]  # this repository, for analysis.training.distributed
    module_file = getattr(sys.modules.get(fn.__module__), "__file__", None)
    if main_file is None and module_file is not None:  # where fn's module was imported from
        top = Path(module_file).resolve().parent
        for _ in range(fn.__module__.count(".") + (Path(module_file).stem == "__init__")):
            top = top.parent
        paths.append(str(top))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads),
           "PYTHONPATH": os.pathsep.join(filter(None, [*paths, os.environ.get("PYTHONPATH")]))}
    with tempfile.TemporaryDirectory(prefix="adams-launch-") as tmp:
        spec = {"module": fn.__module__, "file": None if main_file is None else str(Path(main_file).resolve()),
                "qualname": fn.__qualname__, "args": list(args), "world_size": world_size, "threads": threads,
                "store": os.path.join(tmp, "store"), "out": tmp, "collective_timeout": max(60.0, timeout),
                "backend": backend}
        spec_path = Path(tmp) / "spec.json"
        spec_path.write_text(json.dumps(spec))
        code = "import sys; from analysis.training.distributed import _child_main; _child_main(sys.argv[1])"
        logs, processes = [], []
        for rank in range(world_size):
            log = open(Path(tmp) / f"rank{rank}.log", "w+")
            logs.append(log)
            stream = None if (show_rank0 and rank == 0) else log
            processes.append(subprocess.Popen([sys.executable, "-c", code, str(spec_path)], stdout=stream,
                                              stderr=stream, env={**env, "ADAMS_RANK": str(rank)}))
        killed: set[int] = set()
        try:
            deadline = time.monotonic() + timeout
            while any(p.poll() is None for p in processes) and time.monotonic() < deadline:
                if any(p.returncode not in (None, 0) for p in processes):
                    # the others usually fail within moments (their peer is gone): let them say why, so
                    # that the process that failed first is reported along with the ones it took down
                    grace = min(deadline, time.monotonic() + 5.0)
                    while any(p.poll() is None for p in processes) and time.monotonic() < grace:
                        time.sleep(0.05)
                    break
                time.sleep(0.05)
        finally:
            for rank, p in enumerate(processes):
                if p.poll() is None:
                    p.kill()
                    p.wait()
                    killed.add(rank)
            tails = []
            for rank, log in enumerate(logs):
                log.seek(0)
                tails.append(log.read()[-3000:])
                log.close()
        failed = [r for r, p in enumerate(processes) if r not in killed and p.returncode != 0]
        running = bool(killed) and not failed
        if failed:
            details = "\n".join(f"--- rank {r} (exit code {processes[r].returncode}) ---\n{tails[r]}" for r in failed)
            raise RuntimeError(f"{fn.__qualname__} failed on {len(failed)} of {world_size} processes:\n{details}")
        if running:
            raise TimeoutError(f"{fn.__qualname__} on {world_size} processes did not finish within {timeout:.0f} s")
        return [torch.load(Path(tmp) / f"rank{r}.pt", weights_only=True) for r in range(world_size)]


def wrap(model: torch.nn.Module, how: Wrap) -> torch.nn.Module:
    """Distribute ``model`` over the default process group: FSDP2, DDP, or ``"none"`` (as it is).

    FSDP2 shards each transformer block (``model.h``, if the model has it) and then the whole
    model, so the embeddings, which the output layer shares, sit in the root group.
    """
    if how == "none":
        return model
    if how == "ddp":
        return torch.nn.parallel.DistributedDataParallel(model)
    if how != "fsdp":
        raise ValueError(f"wrap must be 'fsdp', 'ddp' or 'none', got {how!r}")
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    device = next(model.parameters()).device
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    for block in getattr(model, "h", []):
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module under a ``DistributedDataParallel`` wrapper (FSDP2 modules are their own)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def full_parameters(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter, gathered whole on every process (``DTensor.full_tensor``), by name."""
    out = {}
    for name, p in unwrap(model).named_parameters():
        p = p.detach()
        out[name] = (p.full_tensor() if hasattr(p, "full_tensor") else p).clone()
    return out


def local_rows(t: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """Process ``rank``'s share of a global batch: its ``len(t) / world_size`` consecutive rows."""
    if len(t) % world_size:
        raise ValueError(f"a batch of {len(t)} rows does not split over {world_size} processes")
    n = len(t) // world_size
    return t[rank * n:(rank + 1) * n]


def latest_checkpoint(directory: str | os.PathLike) -> Path | None:
    """The complete checkpoint ``step_NNNNNN`` with the highest step in ``directory``, or None."""
    found = sorted(p for p in Path(directory).glob("step_*") if (p / ".metadata").is_file() and p.name[5:].isdigit())
    return found[-1] if found else None


@dataclass
class DistributedResult:
    config: dict
    world_size: int
    wrap: str
    steps: list[int]  # logged steps
    train_loss: list[float]  # mean over the global batch
    eval_steps: list[int]
    val_loss: list[float]
    state_bytes_per_rank: list[int]  # optimizer state each process holds
    param_bytes_per_rank: list[int]  # parameters each process holds (its shards under FSDP2)
    state_bytes_by_key: list[dict]  # per process: bytes per state entry (exp_avg, step, ...)
    tokens_per_s: float  # global batch tokens over training time
    seconds: float
    resumed_from: int  # 0 for a fresh run
    checkpoints: list[str]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _train_rank(rank: int, world_size: int, config_dict: dict, how: str, checkpoint_dir: str | None,
                save_every: int, resume: bool, progress: bool) -> dict:
    config = TrainConfig.from_dict(config_dict)
    fingerprint = int(config.key()[:15], 16)  # of the configuration, package version and corpus
    device = torch.device(config.device)
    if device.type == "cuda":  # this process's own GPU (launch has made it current)
        device = torch.device("cuda", torch.cuda.current_device())
    data = corpus_mod.load()
    model = wrap(init_model(dataclasses.replace(config, device=str(device)), data.vocab_size), how)
    optimizer = optimizer_for(config, model)  # after wrapping: FSDP2 replaces the parameters
    params = [p for p in model.parameters() if p.requires_grad]
    rng = np.random.default_rng(config.batch_seed)
    val = [to_device(b, device) for b in validation_batches(config, data.val)]
    start_step, checkpoints = 0, []
    if resume and checkpoint_dir and (last := latest_checkpoint(checkpoint_dir)) is not None:
        extra = load_checkpoint(last, model, optimizer)
        if extra.get("config") != fingerprint:
            raise ValueError(f"{last} was written by another configuration (or package version) than this run's; "
                             "resume with the same settings, or start a new checkpoint directory")
        start_step = int(extra["step"])
        for _ in range(start_step):  # replay the batch generator to where the run stopped
            sample_batch(data.train, rng, config.batch_size, config.block)

    def evaluate() -> float:  # every process evaluates the whole validation set (FSDP2 needs them all)
        model.eval()
        with torch.no_grad():
            loss = sum(float(lm_loss(model, x, y)) for x, y in val) / len(val)
        model.train()
        return loss

    log = {"steps": [], "train_loss": [], "eval_steps": [], "val_loss": []}
    train_seconds, tokens = 0.0, 0
    start_all = time.perf_counter()
    bar = tqdm(range(start_step, config.steps + 1), disable=not (progress and rank == 0),
               desc=f"{config.optimizer} on {world_size} processes ({how})", unit="step")
    for step in bar:
        if step % config.eval_every == 0 or step == config.steps:
            log["eval_steps"].append(step)
            log["val_loss"].append(evaluate())
        if checkpoint_dir and save_every and step > start_step and (step % save_every == 0 or step == config.steps):
            path = save_checkpoint(Path(checkpoint_dir) / f"step_{step:06d}", model, optimizer,
                                   extra={"step": step, "config": fingerprint}, overwrite=True)
            checkpoints.append(str(path))
        if step == config.steps:
            break
        x, y = sample_batch(data.train, rng, config.batch_size, config.block)
        t0 = time.perf_counter()
        x_local, y_local = to_device((local_rows(x, rank, world_size), local_rows(y, rank, world_size)), device)
        loss, _, _ = train_step(model, optimizer, params, config, step, x_local, y_local)
        train_seconds += time.perf_counter() - t0
        tokens += x.numel()
        if step % config.log_every == 0 or step == config.steps - 1:
            mean_loss = _mean_over_ranks(loss.item(), device)
            log["steps"].append(step)
            log["train_loss"].append(mean_loss)
            bar.set_postfix(loss=f"{mean_loss:.3f}")
    bar.close()
    by_key = {k: int(v) for k, v in adams.state_bytes(optimizer, by_key=True).items()}
    return {**log, "state_bytes_per_rank": state_bytes_per_rank(optimizer), "state_bytes_by_key": by_key,
            "param_bytes": adams.param_bytes(params), "train_seconds": train_seconds, "tokens": tokens,
            "seconds": time.perf_counter() - start_all, "resumed_from": start_step, "checkpoints": checkpoints}


def _mean_over_ranks(value: float, device: torch.device) -> float:
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item()) / dist.get_world_size()


def train_distributed(config: TrainConfig, *, world_size: int = 2, how: Wrap = "fsdp",
                      checkpoint_dir: str | os.PathLike | None = None, save_every: int = 0, resume: bool = False,
                      progress: bool = True, timeout: float = 3600.0) -> DistributedResult:
    """Train ``config`` (its ``batch_size`` is the global batch) on ``world_size`` processes: CPU ones
    on gloo, or with ``config.device="cuda"`` one GPU each on NCCL.

    With ``checkpoint_dir`` and ``save_every``, a sharded checkpoint ``step_NNNNNN`` is written every
    ``save_every`` steps and at the end (:func:`adams.distributed.save_checkpoint`); ``resume=True``
    continues from the latest complete one, on any number of processes.
    """
    if config.batch_size % world_size:
        raise ValueError(f"batch_size {config.batch_size} does not split over {world_size} processes")
    if resume and not checkpoint_dir:
        raise ValueError("resume=True needs checkpoint_dir")
    device = torch.device(config.device)
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"train_distributed runs on 'cpu' (gloo) or 'cuda' (NCCL), got device {config.device!r}")
    if device.type == "cuda" and torch.cuda.device_count() < world_size:
        raise ValueError(f"device 'cuda' gives each of the {world_size} processes a GPU, but "
                         f"{torch.cuda.device_count()} are available here")
    ranks = launch(_train_rank, world_size, dataclasses.asdict(config), how,
                   None if checkpoint_dir is None else str(Path(checkpoint_dir).resolve()), save_every, resume,
                   progress, timeout=timeout, show_rank0=progress, backend="nccl" if device.type == "cuda" else "gloo")
    head = ranks[0]
    slowest = max(r["train_seconds"] for r in ranks)
    return DistributedResult(
        config=dataclasses.asdict(config), world_size=world_size, wrap=how, steps=head["steps"],
        train_loss=head["train_loss"], eval_steps=head["eval_steps"], val_loss=head["val_loss"],
        state_bytes_per_rank=head["state_bytes_per_rank"], param_bytes_per_rank=[r["param_bytes"] for r in ranks],
        state_bytes_by_key=[r["state_bytes_by_key"] for r in ranks],
        tokens_per_s=head["tokens"] / slowest if slowest else math.nan, seconds=max(r["seconds"] for r in ranks),
        resumed_from=head["resumed_from"], checkpoints=head["checkpoints"])


def describe(result: DistributedResult) -> str:
    """A few lines for a terminal: losses, throughput and the state each process holds."""
    lines = [f"{result.config['optimizer']} on {result.world_size} process{'es' if result.world_size > 1 else ''} "
             f"({result.wrap}), "
             f"steps {result.resumed_from}-{result.config['steps']}: "
             f"final validation loss {result.val_loss[-1]:.4f}, {result.tokens_per_s:,.0f} tokens/s, "
             f"{result.seconds:.1f} s"]
    for rank, (state, params, by_key) in enumerate(zip(result.state_bytes_per_rank, result.param_bytes_per_rank,
                                                       result.state_bytes_by_key)):
        parts = " + ".join(f"{key} {n:,}" for key, n in by_key.items())
        lines.append(f"  rank {rank}: optimizer state {state:,} bytes ({parts}); parameters {params:,} bytes")
    return "\n".join(lines)


def compare_state(a: DistributedResult, b: DistributedResult) -> str:
    """Per process: ``a``'s optimizer state over ``b``'s, in all and for the buffers alone (without
    the step counters, 4 bytes per parameter tensor in both)."""
    lines = []
    for rank, (x, y) in enumerate(zip(a.state_bytes_by_key, b.state_bytes_by_key)):
        buffers_x = sum(n for k, n in x.items() if k != "step")
        buffers_y = sum(n for k, n in y.items() if k != "step")
        lines.append(f"  rank {rank}: {a.config['optimizer']} / {b.config['optimizer']} state = "
                     f"{sum(x.values()) / sum(y.values()):.4f} in all, {buffers_x / buffers_y:.4f} for the buffers "
                     f"({buffers_x:,} / {buffers_y:,} bytes)")
    return "\n".join(lines)
