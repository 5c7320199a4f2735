"""Peak memory of probing a trajectory: checkpoints are streamed, so it does not grow with their number.

    python benchmarks/probe_memory.py            # about a minute
    python benchmarks/probe_memory.py --params 4000000 --counts 2 4 8

For each number of checkpoints, a fresh process builds a float32 MLP of ``--params`` parameters,
saves that many AdamS checkpoints (weights, momentum and step, ``torch.save``), and probes them with
``smoothness.probe_trajectory`` (step finite difference and curvature, no Hessian, one gamma). The
process reports its resident memory after the model and checkpoints exist (the baseline) and its
peak (``ru_maxrss``) after probing. Printed: the peak above the baseline, in megabytes and in units
of one checkpoint file. If every checkpoint were held at once, this would grow by about one
checkpoint per checkpoint added; streamed, it stays flat.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def child(params: int, count: int) -> dict:
    import torch

    import adams
    from smoothness import probe_trajectory

    width = int((params / 2) ** 0.5)

    def factory():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(width, width), torch.nn.Tanh(), torch.nn.Linear(width, width))

    model = factory()
    opt = adams.AdamS(model.parameters(), lr=1e-3)
    batch = (torch.randn(64, width, generator=torch.Generator().manual_seed(1)),)
    loss = lambda m, b: m(b[0]).pow(2).mean()  # noqa: E731
    folder = Path(tempfile.mkdtemp())
    paths = []
    for step in range(count):
        loss(model, batch).backward()
        opt.step()
        opt.zero_grad()
        paths.append(folder / f"step_{step}.pt")
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step}, paths[-1])
    del model, opt
    size_mb = paths[0].stat().st_size / 2**20
    baseline = _rss_mb()
    probe_trajectory(factory, loss, batch, paths, blocks=None, hessian=False, gammas=(0.5,), progress=False)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for p in paths:
        p.unlink()
    folder.rmdir()
    return {"count": count, "checkpoint_mb": size_mb, "baseline_mb": baseline, "peak_mb": peak,
            "n_params": sum(p.numel() for p in factory().parameters())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=int, default=8_000_000, help="parameters of the MLP (default 8M)")
    parser.add_argument("--counts", type=int, nargs="+", default=[2, 4, 8], help="numbers of checkpoints")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args.params, args.child)))
        return 0
    # large blocks from mmap, returned to the system when freed: otherwise glibc keeps freed memory
    # in its heap for a while and the peak measures the allocator, not what the probes hold
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "2", "MALLOC_MMAP_THRESHOLD_": "1048576"}
    print(f"{'checkpoints':>11}{'checkpoint MB':>15}{'peak - baseline MB':>20}{'in checkpoints':>16}")
    for count in args.counts:
        done = subprocess.run([sys.executable, __file__, "--params", str(args.params), "--child", str(count)],
                              env=env, capture_output=True, text=True, check=True)
        r = json.loads(done.stdout.strip().splitlines()[-1])
        extra = r["peak_mb"] - r["baseline_mb"]
        print(f"{count:>11}{r['checkpoint_mb']:>15.1f}{extra:>20.1f}{extra / r['checkpoint_mb']:>16.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
