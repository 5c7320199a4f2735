"""The checks that need a GPU, in one command: the Triton kernel's parity on the device, then step times.

    python benchmarks/gpu_check.py              # on a machine with CUDA: a few minutes
    python benchmarks/gpu_check.py --quick      # 5 timed rounds instead of 30
    python benchmarks/gpu_check.py --interpret  # no GPU: the same code on CPU under Triton's interpreter

1. **Parity on the device.** ``tests/adams/test_triton.py`` and ``test_compiled.py`` in a
   subprocess: the Triton kernel and the step compiled by ``torch.compile`` against the equations, the for-loop path and the NumPy reference at every step over 50 steps
   (float64 to 1e-12, float32 to 1e-6, 16-bit within one unit in the last place), each tensor's own
   step count, the non-finite guard, counters staged from the CPU, ``adams.AdamS`` choosing the
   kernel, and perturbed kernels that must fail.
2. **Step times** of ``adams.AdamS`` (its default on the GPU: the Triton kernel; the step compiled
   by ``torch.compile``; and ``foreach=True``),
   ``torch.optim.AdamW`` (``fused=True`` and ``foreach=True``) and ``torch.optim.SGD`` with momentum
   0.9 (``foreach=True``) on the 10M-parameter flat layout and the 30M nanoGPT layout of
   ``benchmarks/optimizer_step.py``, all stepping the same parameters with the same gradients,
   round-robin with a rotating start, each step timed between two ``torch.cuda.synchronize()``.
   The device's memory bandwidth is measured the same way by ``dst.copy_(src)`` over as many
   float32 elements (8 bytes each: no read-for-ownership on a GPU); each optimizer's floor is its
   single-pass bytes (20 per parameter for AdamS and SGD, 28 for AdamW) over that bandwidth.
   The targets are the paired per-round ratios of ``optimizer_step.py``: AdamS fused / AdamW fused
   <= 0.75 (5/7 of the bytes, with slack) and AdamS fused / SGD foreach <= 1.1. The ratio of the
   compiled step to the Triton kernel is printed without a target: it says which single pass
   should be the default on that device.

Without CUDA (and without ``--interpret``) it says so and exits with status 2. With
``--interpret`` every step above runs on small layouts on the CPU under Triton's interpreter: the
numbers are not timings of anything, but every code path of the check runs. Results go to
``benchmarks/results/gpu_check.json`` (not committed).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as a script from a checkout without installing
    sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402

from analysis.report import write_report  # noqa: E402
from analysis.timing.ratios import paired_ratio  # noqa: E402
from analysis.timing.steptime import BYTES_PER_PARAM, HYPER, flat_shapes, gpt_shapes  # noqa: E402

COPY_BYTES = 8  # read src, write dst
TARGETS = (("adams_fused", "adamw_fused", 0.75), ("adams_fused", "sgd_foreach", 1.1))
#: reported without a target: which single-pass path should be the default on this device
CHOICE = ("adams_compiled", "adams_fused")
NO_CUDA = ("gpu_check: CUDA is not available here (torch.cuda.is_available() is False), so there is "
           "nothing to check. Run it on a machine with a GPU, or pass --interpret to run its code "
           "paths on the CPU under Triton's interpreter.")


def parity(interpret: bool) -> dict:
    """Run the Triton tests in a subprocess (on the GPU, or under the interpreter)."""
    env = dict(os.environ)
    if interpret:
        env["TRITON_INTERPRET"] = "1"
        env["CUDA_VISIBLE_DEVICES"] = ""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(REPO_ROOT / "tests" / "adams" / "test_triton.py"),
                           str(REPO_ROOT / "tests" / "adams" / "test_compiled.py")],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    summary = (done.stdout.strip().splitlines() or ["(no output)"])[-1]
    return {"returncode": done.returncode, "summary": summary, "seconds": time.perf_counter() - start,
            "output_tail": (done.stdout + done.stderr)[-4000:]}


class CompiledAdamS:
    """AdamS through the step compiled by ``torch.compile`` (``adams.functional``'s
    ``impl="compiled"``), on the same parameters and gradients as the others."""

    def __init__(self, params):
        self.params = list(params)
        self.exp_avgs = [torch.zeros_like(p) for p in self.params]
        self.steps = [torch.zeros((), dtype=torch.float32, device=p.device) for p in self.params]

    def step(self):
        from adams.functional import adams as functional_adams

        beta1, beta2 = HYPER["betas"]
        functional_adams(self.params, [p.grad for p in self.params], self.exp_avgs, self.steps, impl="compiled",
                         lr=HYPER["lr"], beta1=beta1, beta2=beta2, eps=HYPER["eps"],
                         weight_decay=HYPER["weight_decay"])


def choice_verdict(ratio: dict) -> str:
    """What the compiled step / Triton kernel ratio says, from its confidence interval."""
    if ratio["ci_high"] < 1:
        return "torch.compile's step is faster here: it should be the default on this device"
    if ratio["ci_low"] > 1:
        return "the Triton kernel is faster here: keep it the default"
    return "no difference resolved: keep the Triton kernel"


def optimizers(params):
    import adams

    return {
        "adams_fused": adams.AdamS(params, **HYPER),
        "adams_compiled": CompiledAdamS(params),
        "adams_foreach": adams.AdamS(params, **HYPER, foreach=True),
        "adamw_fused": torch.optim.AdamW(params, **HYPER, fused=True),
        "adamw_foreach": torch.optim.AdamW(params, **HYPER, foreach=True),
        "sgd_foreach": torch.optim.SGD(params, lr=HYPER["lr"], momentum=0.9, foreach=True),
    }


def time_set(shapes, device: torch.device, reps: int, warmup: int, seed: int) -> dict:
    gen = torch.Generator().manual_seed(seed)
    params = [torch.nn.Parameter(torch.randn(s, generator=gen).to(device)) for s in shapes]
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen).to(device)
    n = sum(p.numel() for p in params)
    src, dst = torch.randn(n, generator=gen).to(device), torch.zeros(n, device=device)
    steps = {name: opt.step for name, opt in optimizers(params).items()}
    steps["copy"] = lambda: dst.copy_(src)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    names, seconds = list(steps), {name: [] for name in steps}
    for r in range(warmup + reps):
        for k in range(len(names)):
            name = names[(r + k) % len(names)]
            sync()
            start = time.perf_counter()
            steps[name]()
            sync()
            if r >= warmup:
                seconds[name].append(time.perf_counter() - start)
    median = {name: statistics.median(s) for name, s in seconds.items()}
    bandwidth = COPY_BYTES * n / median["copy"]
    rows = {}
    for name in names[:-1]:
        family = name.split("_")[0]
        floor = BYTES_PER_PARAM[family] * 4 * n / bandwidth
        rows[name] = {"median_ms": 1e3 * median[name], "floor_ms": 1e3 * floor,
                      "fraction_of_floor": floor / median[name], "times_ms": [1e3 * s for s in seconds[name]]}
    ratios = {f"{a}/{b}": paired_ratio(seconds[a], seconds[b], seed=seed).as_dict() | {"limit": limit}
              for a, b, limit in (*TARGETS, (*CHOICE, None))}
    return {"num_params": n, "num_tensors": len(shapes), "copy_ms": 1e3 * median["copy"],
            "bandwidth_gbs": bandwidth / 1e9, "optimizers": rows, "ratios": ratios,
            "path": _path_taken(params)}


def _path_taken(params) -> str:
    """Which path ``adams.AdamS`` takes by default for a parameter like these (the row timed as fused)."""
    import adams
    from adams import functional

    calls = []
    original = functional.triton_adams_
    functional.triton_adams_ = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        probe = torch.nn.Parameter(params[0].detach().clone())
        probe.grad = torch.zeros_like(probe)
        adams.AdamS([probe], **HYPER).step()
    finally:
        functional.triton_adams_ = original
    return "triton" if calls else "not triton (C kernel or foreach)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 timed rounds after 2 warm-up ones")
    parser.add_argument("--interpret", action="store_true",
                        help="no GPU: run every path on small CPU layouts under Triton's interpreter")
    parser.add_argument("--no-parity", action="store_true", help="time only (the parity tests run elsewhere)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "gpu_check.json")
    args = parser.parse_args(argv)
    if not args.interpret and not torch.cuda.is_available():
        print(NO_CUDA)
        return 2
    if args.interpret:
        os.environ["TRITON_INTERPRET"] = "1"
        import adams.optimizer

        adams.optimizer._fused.kernel_or_none = lambda: None  # as on a GPU: the compiled CPU kernel does not apply
        device, reps, warmup = torch.device("cpu"), 2, 1
        sets = {"flat": flat_shapes(total=40_000, count=4),
                "gpt": [s for _, s in gpt_shapes(vocab=64, d_model=16, block=8, layers=1)]}
    else:
        device, reps, warmup = torch.device("cuda"), (5 if args.quick else 30), (2 if args.quick else 5)
        sets = {"flat_10M": flat_shapes(), "gpt_30M": [s for _, s in gpt_shapes()]}
    print(f"device: {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU, Triton interpreter'}")
    check = {"returncode": 0, "summary": "not run (--no-parity)"} if args.no_parity else parity(args.interpret)
    print(f"parity tests on the device: {check['summary']}" + (f" ({check['seconds']:.0f} s)" if "seconds" in check else ""))
    if check["returncode"] != 0:
        print(check["output_tail"])
    timings = {name: time_set(shapes, device, reps, warmup, args.seed) for name, shapes in sets.items()}
    for name, t in timings.items():
        print(f"\n{name}: {t['num_params']:,} parameters in {t['num_tensors']} tensors; copy bandwidth "
              f"{t['bandwidth_gbs']:.0f} GB/s; AdamS default path: {t['path']}")
        for row, r in t["optimizers"].items():
            print(f"  {row:<14} {r['median_ms']:9.3f} ms   floor {r['floor_ms']:8.3f} ms   "
                  f"fraction of floor {r['fraction_of_floor']:.2f}")
        for key, r in t["ratios"].items():
            if r["limit"] is None:
                verdict = f"({choice_verdict(r)})"
            else:
                verdict = f"(target <= {r['limit']}: {'met' if r['median'] <= r['limit'] else 'NOT met'})"
            print(f"  {key.replace('/', ' / ')}: {r['median']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}] {verdict}")
    if args.interpret:
        print("\n(--interpret: the times above are the interpreter's, not a GPU's)")
    write_report(args.out, {"parity": check, "timings": timings, "interpret": args.interpret,
                            "torch": torch.__version__, "device": str(device)})
    return 0 if check["returncode"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
