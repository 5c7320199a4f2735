"""Cost and accuracy of the smoothness probes, against PyHessian and a dense eigendecomposition.

    python benchmarks/smoothness_probe.py            # about 4 minutes (the 1M-parameter case dominates)
    python benchmarks/smoothness_probe.py --quick    # small models only, under a minute
    python benchmarks/smoothness_probe.py --out /tmp/probe.json

1. **Top |eigenvalue| at equal accuracy.** The same model, batch and loss go to
   ``smoothness.hessian_spectral_norm`` (Lanczos, ARPACK ``tol=1e-3``) and to PyHessian 0.1's
   power iteration (``hessian(...).eigenvalues``), in float64. The reference is a dense
   eigendecomposition (``torch.func.hessian`` + ``eigvalsh``) where the model is small, otherwise our
   Lanczos at ``tol=1e-10``. PyHessian's ``tol`` is the relative change between two iterations, not
   the error, so it is tightened (1e-3, 1e-4, ...) until its estimate is within 1e-3 of the
   reference; the time of that run is the one compared. Hessian-vector products are counted for both. Each
   time is the best of ``--repeats`` runs (the machine is shared; the minimum is the least noisy
   estimate of what a run costs).
   Both of our product engines are timed: ``jvp`` (forward-over-reverse, the default) and ``graph``
   (double backward through one stored gradient graph, the way PyHessian takes its products).
2. **Cost on a 1M-parameter transformer** (``analysis.training.gpt.GPT``, 16k-token batch, float32): one
   gradient, one Hessian-vector product by each engine, the step finite-difference probe (n_gamma
   gradients plus the one at the start, and one product for the curvature) and the spectral norm.

PyHessian draws its start vector from the global torch RNG, so this script seeds it before each
call (the package itself never touches the global RNG). Results go to
``benchmarks/results/smoothness_probe.json`` (not committed).
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as a script from a checkout without installing
    sys.path.insert(0, str(REPO_ROOT))

from analysis.training.gpt import GPT, GPTConfig  # noqa: E402
from analysis.report import cpu_model, write_report  # noqa: E402
from smoothness import Objective, hessian_spectral_norm  # noqa: E402
from smoothness.hessian import dense_hessian  # noqa: E402
from smoothness.probes import interior_gammas, probe_point  # noqa: E402

TARGET_ERROR = 1e-3
TARGET_SPEEDUP = 2.0


class Flat(nn.Module):
    """Logits (batch, time, vocab) -> (batch * time, vocab), so that one criterion serves both tools."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        out = self.model(x)
        return out.reshape(-1, out.shape[-1])


def mlp_case(seed):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(10, 40), nn.Tanh(), nn.Linear(40, 40), nn.Tanh(), nn.Linear(40, 3)).double()
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2048, 10, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (2048,), generator=g)
    return f"MLP {sum(p.numel() for p in model.parameters()):,} params", model, (x, y)


def gpt_case(seed, cfg, sequences):
    torch.manual_seed(seed)
    model = Flat(GPT(cfg)).double()
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, cfg.vocab, (sequences, cfg.block), generator=g)
    y = torch.randint(0, cfg.vocab, (sequences, cfg.block), generator=g)
    return f"GPT {sum(p.numel() for p in model.parameters()):,} params, {x.numel():,} tokens", model, (x, y.reshape(-1))


def loss_fn(model, batch):
    return nn.functional.cross_entropy(model(batch[0]), batch[1])


def dense_top(model, batch):
    obj = Objective(model, loss_fn, batch)
    return float(torch.linalg.eigvalsh(dense_hessian(obj, obj.weights())).abs().max())


def best_of(repeats, run):
    """(result of the last run, shortest wall time over ``repeats`` runs) of ``run()``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return result, min(times)


def run_pyhessian(model, batch, tol, max_iter, seed, repeats):
    import importlib

    ph = importlib.import_module("pyhessian.hessian")  # the module (the package re-exports a class of that name)

    count = [0]
    original = ph.hessian_vector_product

    def counted(*args, **kwargs):
        count[0] += 1
        return original(*args, **kwargs)

    def run():
        count[0] = 0
        torch.manual_seed(seed)  # PyHessian's start vector comes from the global RNG
        # attention's math backend has second derivatives on CPU (our Objective selects it too)
        with sdpa_kernel([SDPBackend.MATH]), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # its backward(create_graph=True) warns on every call
            engine = ph.hessian(model, nn.CrossEntropyLoss(), data=batch, cuda=False)  # the class
            eigenvalues, _ = engine.eigenvalues(maxIter=max_iter, tol=tol, top_n=1)
        return abs(float(eigenvalues[0]))

    ph.hessian_vector_product = counted
    try:
        value, seconds = best_of(repeats, run)
    finally:
        ph.hessian_vector_product = original
    return value, seconds, count[0]


def compare(name, model, batch, reference, reference_kind, seed, repeats):
    row = {"case": name, "n_params": sum(p.numel() for p in model.parameters()), "reference": reference,
           "reference_kind": reference_kind}
    for engine in ("jvp", "graph"):
        hessian_spectral_norm(model, loss_fn, batch, tol=1e-3, seed=seed, engine=engine)  # warm-up
        ours, seconds = best_of(repeats, lambda: hessian_spectral_norm(model, loss_fn, batch, tol=1e-3, seed=seed,
                                                                         engine=engine))
        row[f"ours_{engine}"] = {"value": ours.value, "rel_error": abs(ours.value - reference) / reference,
                                 "seconds": seconds, "n_hvp": ours.n_hvp,
                                 "converged": ours.converged, "settings": f"eigsh which=LM tol=1e-3, engine={engine}"}
    attempts = []
    for tol in (1e-3, 1e-4, 1e-5, 1e-6, 1e-7):
        value, seconds, n_hvp = run_pyhessian(model, batch, tol, 5000, seed, repeats)
        attempts.append({"tol": tol, "value": value, "rel_error": abs(value - reference) / reference,
                         "seconds": seconds, "n_hvp": n_hvp})
        if attempts[-1]["rel_error"] <= TARGET_ERROR:
            break
    row["pyhessian_attempts"] = attempts
    row["pyhessian"] = attempts[-1]
    row["pyhessian_reached_target"] = attempts[-1]["rel_error"] <= TARGET_ERROR
    for engine in ("jvp", "graph"):
        row[f"speedup_{engine}"] = attempts[-1]["seconds"] / row[f"ours_{engine}"]["seconds"]
    return row


def transformer_cost(cfg, sequences, seed):
    torch.manual_seed(seed)
    model = GPT(cfg)
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, cfg.vocab, (sequences, cfg.block), generator=g)
    y = torch.randint(0, cfg.vocab, (sequences, cfg.block), generator=g)
    lm_loss = lambda m, b: nn.functional.cross_entropy(m(b[0]).reshape(-1, cfg.vocab), b[1].reshape(-1))  # noqa: E731
    obj = Objective(model, lm_loss, (x, y))
    w = obj.weights()
    out = {"n_params": sum(t.numel() for t in w.values()), "tokens": x.numel()}
    obj.grad(w)  # warm-up
    start = time.perf_counter()
    g0 = obj.grad(w)
    out["grad_s"] = time.perf_counter() - start
    w_next = {n: t - 1e-3 * g0[n] for n, t in w.items()}
    gammas = interior_gammas(3)
    out["n_gamma"] = len(gammas)
    for engine in ("jvp", "graph"):
        obj.hvp_operator(w, engine)(g0)  # warm-up
        start = time.perf_counter()
        obj.hvp_operator(w, engine)(g0)
        out[f"hvp_{engine}_s"] = time.perf_counter() - start
        before = dict(obj.evaluations)
        start = time.perf_counter()
        probe_point(obj, w, w_next=w_next, gammas=gammas, hessian=False, hvp_engine=engine)
        out[f"fd_probe_{engine}_s"] = time.perf_counter() - start
        out[f"fd_probe_{engine}_gradients"] = obj.evaluations["grad"] - before["grad"]
        out[f"fd_probe_{engine}_hvps"] = obj.evaluations["hvp"] - before["hvp"]
    # the jvp engine's spectral norm takes the same number of products, each costing hvp_jvp_s
    start = time.perf_counter()
    spectral = hessian_spectral_norm(model, lm_loss, (x, y), tol=1e-3, seed=seed, engine="graph")
    out["spectral_graph_s"] = time.perf_counter() - start
    out["spectral_graph"] = spectral.as_dict()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small models only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per method; the shortest counts")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "smoothness_probe.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))

    name, model, batch = mlp_case(args.seed)
    rows = [compare(name, model, batch, dense_top(model, batch), "dense eigvalsh", args.seed, args.repeats)]
    gpts = [(GPTConfig(vocab=32, block=32, layers=1, heads=2, width=32), 8)]
    if not args.quick:
        gpts.append((GPTConfig(vocab=64, block=64, layers=2, heads=2, width=64), 32))
    for cfg, sequences in gpts:
        name, model, batch = gpt_case(args.seed, cfg, sequences)
        reference = hessian_spectral_norm(model, loss_fn, batch, tol=1e-10, seed=args.seed + 1, engine="graph")
        rows.append(compare(name, model, batch, reference.value, "our Lanczos at tol 1e-10", args.seed, args.repeats))

    big = GPTConfig(vocab=64, block=32, layers=1, heads=2, width=32) if args.quick else \
        GPTConfig(vocab=256, block=128, layers=4, heads=4, width=144)
    cost = transformer_cost(big, 8 if args.quick else 128, args.seed)

    print(f"{'case':<38}{'method':<34}{'|lambda|':>12}{'rel. error':>12}{'HVPs':>7}{'seconds':>9}")
    for row in rows:
        p = row["pyhessian"]
        print(f"{row['case']:<38}{'reference: ' + row['reference_kind']:<34}{row['reference']:>12.6g}")
        for engine in ("jvp", "graph"):
            o = row[f"ours_{engine}"]
            print(f"{'':<38}{'ours: Lanczos tol 1e-3, ' + engine:<34}{o['value']:>12.6g}{o['rel_error']:>12.1e}"
                  f"{o['n_hvp']:>7}{o['seconds']:>9.3f}")
        print(f"{'':<38}{'PyHessian power it., tol ' + format(p['tol'], 'g'):<34}{p['value']:>12.6g}"
              f"{p['rel_error']:>12.1e}{p['n_hvp']:>7}{p['seconds']:>9.3f}")
        for engine in ("jvp", "graph"):
            ok = row["pyhessian_reached_target"] and row[f"speedup_{engine}"] >= TARGET_SPEEDUP
            print(f"{'':<38}speed-up over PyHessian at relative error <= {TARGET_ERROR:g}, engine {engine}: "
                  f"{row[f'speedup_{engine}']:.1f}x (target >= {TARGET_SPEEDUP:g}x: {'met' if ok else 'NOT met'})")
    print(f"\n{cost['n_params']:,}-parameter GPT on {cost['tokens']:,} tokens (float32): one gradient "
          f"{cost['grad_s']:.2f} s")
    for engine, label in (("jvp", "jvp(grad)"), ("graph", "one graph, double backward")):
        print(f"  Hessian-vector product by {label}: {cost[f'hvp_{engine}_s']:.2f} s; step finite-difference probe "
              f"with curvature ({cost['n_gamma']} gammas): {cost[f'fd_probe_{engine}_s']:.2f} s, "
              f"{cost[f'fd_probe_{engine}_gradients']} gradients (at most n_gamma + 1 = {cost['n_gamma'] + 1}) "
              f"and {cost[f'fd_probe_{engine}_hvps']} product")
    print(f"  Hessian spectral norm (one graph, Lanczos tol 1e-3): {cost['spectral_graph_s']:.1f} s, "
          f"{cost['spectral_graph']['n_hvp']} products, converged {cost['spectral_graph']['converged']}")
    result = {"comparisons": rows, "transformer_cost": cost,
              "meta": {"cpu": cpu_model(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                       "quick": args.quick, "seed": args.seed, "repeats": args.repeats}}
    write_report(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
