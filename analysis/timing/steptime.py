"""Time one optimizer step, for AdamS's three paths and the torch optimizers it is compared with.

    from analysis.timing import steptime
    result = steptime.run(quick=True)        # a dict, also what benchmarks/optimizer_step.py saves
    print(steptime.format_table(result))

Rows: ``adams_forloop``, ``adams_foreach``, ``adams_fused`` (``adams.AdamS`` with ``foreach=False,
fused=False``, ``foreach=True``, ``fused=True``), ``adams_kernel`` (the fused kernel called directly,
without the optimizer's per-parameter bookkeeping), ``adamw_foreach``, ``adamw_fused``
(``torch.optim.AdamW``) and ``sgd_foreach`` (``torch.optim.SGD``, momentum 0.9); all with lr 1e-3,
and for the Adam family betas (0.9, 0.95), eps 1e-8, weight decay 1e-2.

Every optimizer steps the *same* parameter tensors with the *same* seeded random gradients. The
optimizers and a plain copy of the same number of bytes are timed round-robin, one step each per
round (the starting point rotates every round), so that machine noise hits all of them alike; the
report gives the median over rounds after a warm-up and the interquartile range.

Memory-traffic floor. A single pass over memory moves, per float32 parameter, 20 bytes for AdamS
(read w, g, m; write w, m), 28 for AdamW (also reads and writes v) and 20 for SGD with momentum
(read w, g, buf; write w, buf). The bandwidth is measured by ``dst.copy_(src)`` on one flat float32
tensor of the same element count, counted as 12 bytes per element: read src, write dst, and the
read-for-ownership of each destination line that a write to memory not already in cache costs. On
the development machine that count gives the same bandwidth as an in-place ``add_`` (8 bytes per
element, no read-for-ownership since the lines are already read), which the result also records
as a cross-check. An optimizer's floor is its single-pass bytes divided by that bandwidth;
"fraction of floor" is floor time / measured time (1.0 would be a step at copy speed). The for-loop
and foreach paths make many passes, so for them the single-pass bytes are what they *could* move.
"""
from __future__ import annotations

import datetime
import math
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch

from analysis.timing.ratios import PairedRatio, paired_ratio
from analysis.timing.machine import cpu_model

__all__ = ["run", "format_table", "flat_shapes", "gpt_shapes", "ROWS", "BYTES_PER_PARAM",
           "TARGETS", "TargetCheck", "check_targets", "paired_ratios", "format_targets", "markdown_table"]

COPY_BYTES_PER_ELEMENT = 12  # read src + write dst + read-for-ownership of dst (see the docstring)
INPLACE_BYTES_PER_ELEMENT = 8  # dst.add_(1): read and write the same lines
HYPER = dict(lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=1e-2)

# Single-pass bytes per parameter, as multiples of the element size (fp32: 4 bytes).
BYTES_PER_PARAM = {"adams": 5, "adamw": 7, "sgd": 5}


def flat_shapes(total: int = 10_000_000, count: int = 40) -> list[tuple[int, ...]]:
    """``count`` equal 1-d tensors of ``total // count`` elements (10M as 40 x 250k by default)."""
    return [(total // count,)] * count


def gpt_shapes(vocab: int = 50304, d_model: int = 384, block: int = 256, layers: int = 6,
               mlp_ratio: int = 4) -> list[tuple[str, tuple[int, ...]]]:
    """Parameter names and shapes of a small GPT in nanoGPT's layout (30.06M parameters by default).

    Token embedding (vocab, d_model), tied to the output head so it appears once; position
    embedding (block, d_model); per layer: LayerNorm weight and bias (d_model,), attention
    qkv weight (3 d_model, d_model) and bias, attention output projection (d_model, d_model) and
    bias, a second LayerNorm, MLP up (mlp_ratio d_model, d_model) and down (d_model, mlp_ratio
    d_model) with biases; a final LayerNorm.
    """
    d, h = d_model, mlp_ratio * d_model
    shapes = [("wte.weight", (vocab, d)), ("wpe.weight", (block, d))]
    for i in range(layers):
        shapes += [
            (f"h.{i}.ln_1.weight", (d,)), (f"h.{i}.ln_1.bias", (d,)),
            (f"h.{i}.attn.c_attn.weight", (3 * d, d)), (f"h.{i}.attn.c_attn.bias", (3 * d,)),
            (f"h.{i}.attn.c_proj.weight", (d, d)), (f"h.{i}.attn.c_proj.bias", (d,)),
            (f"h.{i}.ln_2.weight", (d,)), (f"h.{i}.ln_2.bias", (d,)),
            (f"h.{i}.mlp.c_fc.weight", (h, d)), (f"h.{i}.mlp.c_fc.bias", (h,)),
            (f"h.{i}.mlp.c_proj.weight", (d, h)), (f"h.{i}.mlp.c_proj.bias", (d,)),
        ]
    return shapes + [("ln_f.weight", (d,)), ("ln_f.bias", (d,))]


def default_sets() -> dict[str, list[tuple[int, ...]]]:
    return {"flat_10M": flat_shapes(), "gpt_30M": [s for _, s in gpt_shapes()]}


def _adams(**paths) -> Callable:
    def make(params):
        import adams

        return adams.AdamS(params, **HYPER, **paths)
    return make


class KernelOnly:
    """:func:`adams.functional.fused_adams_` on the parameters, without the optimizer's bookkeeping
    (state lookup, step counters, checks): the kernel's own share of ``adams_fused``."""

    def __init__(self, params):
        self.owners = list(params)
        self.exp_avgs = [torch.zeros_like(p) for p in self.owners]
        self.t = 0

    def step(self):
        from adams.functional import fused_adams_

        self.t += 1
        beta1, beta2 = HYPER["betas"]
        fused_adams_([p.detach() for p in self.owners], [p.grad for p in self.owners], self.exp_avgs,
                     step=self.t, lr=HYPER["lr"], beta1=beta1, beta2=beta2, eps=HYPER["eps"],
                     weight_decay=HYPER["weight_decay"], bias_correction=True, maximize=False)


def _functional_step(ws, gs, ms, step):
    """The functional core on every tensor, results written back in place (compiled below)."""
    from adams.functional import adams_update

    beta1, beta2 = HYPER["betas"]
    for w, g, m in zip(ws, gs, ms):
        w_new, m_new = adams_update(w, g, m, step=step, lr=HYPER["lr"], beta1=beta1, beta2=beta2,
                                    eps=HYPER["eps"], weight_decay=HYPER["weight_decay"])
        w.copy_(w_new)
        m.copy_(m_new)


class CompiledFunctional:
    """``torch.compile`` of the functional core (:func:`adams.functional.adams_update` on every
    tensor): the alternative to our own kernel that the issue asked us to measure. It compiles
    during the first two steps (the step count becomes dynamic on the second), so give it at
    least 3 warm-up rounds; opt-in (``run(compiled=True)``, ``optimizer_step.py --compile``)."""

    def __init__(self, params):
        self.owners = list(params)
        self.exp_avgs = [torch.zeros_like(p) for p in self.owners]
        self.t = 0
        self.fn = torch.compile(_functional_step)

    def step(self):
        self.t += 1
        self.fn([p.detach() for p in self.owners], [p.grad for p in self.owners], self.exp_avgs, self.t)


ROWS: dict[str, tuple[str, Callable]] = {  # name -> (traffic family, constructor)
    "adams_forloop": ("adams", _adams(foreach=False, fused=False)),
    "adams_foreach": ("adams", _adams(foreach=True)),
    "adams_fused": ("adams", _adams(fused=True)),
    "adams_kernel": ("adams", KernelOnly),
    "adamw_foreach": ("adamw", lambda ps: torch.optim.AdamW(ps, **HYPER, foreach=True)),
    "adamw_fused": ("adamw", lambda ps: torch.optim.AdamW(ps, **HYPER, fused=True)),
    "sgd_foreach": ("sgd", lambda ps: torch.optim.SGD(ps, lr=HYPER["lr"], momentum=0.9, foreach=True)),
}


def _summary(seconds: list[float]) -> dict:
    ms = sorted(1e3 * s for s in seconds)
    q1, median, q3 = statistics.quantiles(ms, n=4, method="inclusive") if len(ms) > 1 else ms * 3
    return {"median_ms": median, "q1_ms": q1, "q3_ms": q3, "iqr_ms": q3 - q1, "min_ms": ms[0],
            "times_ms": [1e3 * s for s in seconds]}


def time_set(shapes: list[tuple[int, ...]], *, reps: int, warmup: int, seed: int,
             compiled: bool = False) -> dict:
    """Time every optimizer of :data:`ROWS` (and ``adams_compiled`` if asked) and the copies
    on one parameter set."""
    optimizers = dict(ROWS)
    if compiled:
        optimizers["adams_compiled"] = ("adams", CompiledFunctional)
        warmup = max(warmup, 3)
    gen = torch.Generator().manual_seed(seed)
    params = [torch.nn.Parameter(torch.randn(s, generator=gen)) for s in shapes]
    for p in params:  # the same fixed gradient for every optimizer and every step
        p.grad = torch.randn(p.shape, generator=gen)
    n = sum(p.numel() for p in params)
    src, dst = torch.randn(n, generator=gen), torch.zeros(n)

    steps = {name: make(params).step for name, (_, make) in optimizers.items()}
    steps["copy"] = lambda: dst.copy_(src)
    steps["inplace_add"] = lambda: dst.add_(1.0)
    names = list(steps)
    seconds = {name: [] for name in names}
    for r in range(warmup + reps):
        for k in range(len(names)):
            name = names[(r + k) % len(names)]  # rotate who goes first
            t0 = time.perf_counter()
            steps[name]()
            elapsed = time.perf_counter() - t0
            if r >= warmup:
                seconds[name].append(elapsed)

    copy = _summary(seconds["copy"])
    inplace = _summary(seconds["inplace_add"])
    bandwidth = COPY_BYTES_PER_ELEMENT * n / (copy["median_ms"] * 1e-3) / 1e9
    out = {
        "num_tensors": len(params), "num_params": n, "dtype": "float32",
        "shapes": [list(s) for s in shapes],
        "copy": copy | {"bytes_per_element": COPY_BYTES_PER_ELEMENT,
                        "bytes_per_element_nominal": 8, "bandwidth_gbs": bandwidth,
                        "bandwidth_gbs_nominal": 8 * n / (copy["median_ms"] * 1e-3) / 1e9},
        "inplace_add": inplace | {"bytes_per_element": INPLACE_BYTES_PER_ELEMENT,
                                  "bandwidth_gbs": INPLACE_BYTES_PER_ELEMENT * n / (inplace["median_ms"] * 1e-3) / 1e9},
        "optimizers": {},
    }
    for name, (family, _) in optimizers.items():
        s = _summary(seconds[name])
        nbytes = BYTES_PER_PARAM[family] * 4 * n
        floor_ms = nbytes / (bandwidth * 1e9) * 1e3
        out["optimizers"][name] = s | {
            "bytes_per_param": BYTES_PER_PARAM[family] * 4,
            "effective_gbs": nbytes / (s["median_ms"] * 1e-3) / 1e9,
            "floor_ms": floor_ms,
            "fraction_of_floor": floor_ms / s["median_ms"],
        }
    opt = out["optimizers"]
    for s in opt.values():
        s["ratio_to_adamw_fused"] = s["median_ms"] / opt["adamw_fused"]["median_ms"]
        s["ratio_to_sgd_foreach"] = s["median_ms"] / opt["sgd_foreach"]["median_ms"]
    return out


def run(quick: bool = False, seed: int = 0, sets: dict[str, list[tuple[int, ...]]] | None = None,
        reps: int | None = None, warmup: int | None = None, compiled: bool = False) -> dict:
    """Time every optimizer on every parameter set; returns a JSON-ready dict.

    ``compiled=True`` adds the row ``adams_compiled`` (:class:`CompiledFunctional`).
    ``sets`` maps a name to a list of fp32 parameter shapes (default: :func:`default_sets`, 10M
    flat and the 30M GPT). ``quick`` takes fewer rounds (3 after 1 warm-up, instead of 30 after 5):
    the for-loop path alone needs about 2 s per step on the GPT set on the development VM.
    """
    from adams.functional import fused_available

    described = {"flat_10M": "40 tensors of shape (250000,)",
                 "gpt_30M": "nanoGPT layout (analysis.timing.steptime.gpt_shapes): vocab 50304, d_model 384, "
                            "block 256, 6 layers, MLP 4x, biases, LayerNorm weight and bias, "
                            "output head tied to the token embedding"} if sets is None else {}
    sets = default_sets() if sets is None else sets
    reps = reps if reps is not None else (3 if quick else 30)
    warmup = warmup if warmup is not None else (1 if quick else 5)
    t0 = time.perf_counter()
    results = {name: time_set(shapes, reps=reps, warmup=warmup, seed=seed, compiled=compiled)
               for name, shapes in sets.items()}
    available, how = fused_available()
    return {
        "meta": {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": cpu_model(),
            "quick": quick, "seed": seed, "reps": reps, "warmup": warmup,
            "hyper": {k: list(v) if isinstance(v, tuple) else v for k, v in HYPER.items()},
            "fused_kernel": how if available else f"unavailable: {how}",
            "bandwidth_from": f"dst.copy_(src), {COPY_BYTES_PER_ELEMENT} bytes per float32 element "
                              "(read src, write dst, read-for-ownership of dst)",
            "bytes_per_param": {k: 4 * v for k, v in BYTES_PER_PARAM.items()},
            "parameter_sets": described,
            "runtime_s": time.perf_counter() - t0,
        },
        "sets": results,
    }


def format_table(result: dict) -> str:
    """One table per parameter set: ms, ratios to AdamW fused and SGD foreach, GB/s, floor."""
    lines = []
    for name, res in result["sets"].items():
        c = res["copy"]
        lines.append(f"{name}: {res['num_params'] / 1e6:.2f}M fp32 params in {res['num_tensors']} tensors; "
                     f"copy {c['median_ms']:.2f} ms = {c['bandwidth_gbs']:.1f} GB/s at 12 B/element "
                     f"(in-place add: {res['inplace_add']['bandwidth_gbs']:.1f} GB/s at 8 B)")
        lines.append(f"  {'optimizer':15s} {'median ms':>10s} {'IQR ms':>8s} {'/AdamW fused':>13s} "
                     f"{'/SGD foreach':>13s} {'GB/s':>7s} {'floor ms':>9s} {'of floor':>9s}")
        for opt, s in res["optimizers"].items():
            lines.append(
                f"  {opt:15s} {s['median_ms']:10.2f} {s['iqr_ms']:8.2f} {s['ratio_to_adamw_fused']:13.2f} "
                f"{s['ratio_to_sgd_foreach']:13.2f} {s['effective_gbs']:7.1f} {s['floor_ms']:9.2f} "
                f"{s['fraction_of_floor']:9.2f}"
            )
        lines.append("")
    m = result["meta"]
    lines.append(f"torch {m['torch']}, {m['threads']} threads, {m['cpu']}, {m['date']}, "
                 f"{m['reps']} rounds after {m['warmup']} warm-up, {m['runtime_s']:.0f} s")
    return "\n".join(lines)


# The speed goals, as (row, baseline, largest allowed ratio of step times).
TARGETS = (
    ("adams_fused", "adamw_fused", 0.75),  # 20 vs 28 bytes per parameter: about 5/7, with slack
    ("adams_fused", "sgd_foreach", 1.1),  # the same 20 bytes per parameter as SGD with momentum
    ("adams_foreach", "adamw_foreach", 1.0),  # the foreach path beats torch's foreach AdamW
)


def paired_ratios(result: dict, *, seed: int = 0) -> dict[str, dict[str, PairedRatio]]:
    """For each parameter set, the paired per-round ratio (with its bootstrap CI) of every target.

    Keys are ``"row/baseline"``; see :func:`analysis.timing.ratios.paired_ratio`.
    """
    out = {}
    for set_name, timing in result["sets"].items():
        opt = timing["optimizers"]
        out[set_name] = {f"{row}/{base}": paired_ratio(opt[row]["times_ms"], opt[base]["times_ms"], seed=seed)
                         for row, base, _ in TARGETS}
    return out


def target_met(ratio: PairedRatio, limit: float) -> bool:
    """A target is met when the median paired ratio is at most the limit."""
    return ratio.median <= limit


@dataclass(frozen=True)
class TargetCheck:
    """One target on one parameter set."""

    set_name: str
    key: str  # "row/baseline", as in TARGETS
    limit: float
    ratio: PairedRatio

    @property
    def met(self) -> bool:
        return target_met(self.ratio, self.limit)


def check_targets(result: dict) -> list[TargetCheck]:
    """Every target of :data:`TARGETS` on every parameter set of ``result``."""
    limits = {f"{row}/{base}": limit for row, base, limit in TARGETS}
    return [TargetCheck(set_name, key, limits[key], ratio)
            for set_name, ratios in paired_ratios(result).items() for key, ratio in ratios.items()]


def format_targets(result: dict) -> str:
    """One line per parameter set and target: the paired ratio, its CI, and whether it is met."""
    return "\n".join(f"{c.set_name:10s} {c.key.replace('/', ' / ')}: {c.ratio}  target <= {c.limit:g}: "
                     f"{'met' if c.met else 'NOT MET'}" for c in check_targets(result))


ROW_LABELS = {
    "adams_fused": "AdamS, fused (our kernel)", "adams_kernel": "AdamS kernel alone, no optimizer bookkeeping",
    "adams_compiled": "`torch.compile` of the functional core",
    "adams_foreach": "AdamS, foreach", "adams_forloop": "AdamS, for-loop",
    "adamw_fused": "`torch.optim.AdamW(fused=True)`", "adamw_foreach": "`torch.optim.AdamW(foreach=True)`",
    "sgd_foreach": "`torch.optim.SGD(momentum=0.9, foreach=True)`",
}


def markdown_table(result: dict) -> str:
    """The step-time result as Markdown: one table per parameter set, then the targets."""
    meta = result["meta"]
    lines = [f"Measured on {meta['cpu']}, {meta['threads']} threads, torch {meta['torch']}: median of "
             f"{meta['reps']} rounds after {meta['warmup']} warm-up, all optimizers interleaved"
             + (" (a quick run: a smoke test, not a measurement)." if meta["quick"] else ".")]
    for set_name, timing in result["sets"].items():
        opt = timing["optimizers"]
        lines += ["", f"**{set_name}**: {timing['num_params'] / 1e6:.2f}M float32 parameters in "
                      f"{timing['num_tensors']} tensors; a plain copy runs at "
                      f"{timing['copy']['bandwidth_gbs']:.0f} GB/s.", "",
                  "| optimizer step | median ms (IQR) | / AdamW fused | / SGD foreach | fraction of traffic floor |",
                  "|---|---|---|---|---|"]
        for name in ("adams_fused", "adams_kernel", "adamw_fused", "sgd_foreach", "adams_foreach",
                     "adamw_foreach", "adams_forloop"):
            if name not in opt:
                continue
            s = opt[name]
            lines.append(f"| {ROW_LABELS.get(name, name)} | {s['median_ms']:.2f} ({s['q1_ms']:.2f}-{s['q3_ms']:.2f}) "
                         f"| {s['ratio_to_adamw_fused']:.2f} | {s['ratio_to_sgd_foreach']:.2f} "
                         f"| {s['fraction_of_floor']:.2f} |")
    lines += ["", "Targets (median of paired per-round ratios, bootstrap 95% CI):", ""]
    lines += [f"- {c.set_name}: {c.key.replace('/', ' / ')} = {c.ratio.median:.3f} "
              f"(CI {c.ratio.ci_low:.3f}-{c.ratio.ci_high:.3f}); target <= {c.limit:g}: "
              f"{'met' if c.met else '**not met**'}" for c in check_targets(result)]
    return "\n".join(lines)


def all_finite_positive(result: dict) -> bool:
    """True if every timing in ``result`` is a positive finite number (used by the tests)."""
    for res in result["sets"].values():
        for s in [res["copy"], res["inplace_add"], *res["optimizers"].values()]:
            if not all(math.isfinite(t) and t > 0 for t in [s["median_ms"], *s["times_ms"]]):
                return False
    return True
