"""Cost and accuracy of the smoothness probes, against PyHessian, curvlinops and dense answers.

    python benchmarks/smoothness_probe.py            # about 8 minutes (the 1M-parameter case dominates)
    python benchmarks/smoothness_probe.py --quick    # small models only, about a minute
    python benchmarks/smoothness_probe.py --out /tmp/probe.json

1. **Top |eigenvalue| at equal accuracy.** The same model, batch and loss go to
   ``smoothness.hessian_spectral_norm`` (Lanczos, ARPACK ``tol=1e-3``), to PyHessian 0.1's
   power iteration (``hessian(...).eigenvalues``) and to curvlinops' ``HessianLinearOperator``
   under the same ARPACK call (same start, ``ncv`` and ``tol``), in float64. The reference is a
   dense eigendecomposition of ``smoothness.hessian.dense_hessian`` (double backward, row by row)
   where the model is small, otherwise our Lanczos at ``tol=1e-10``. PyHessian's ``tol`` is the
   relative change between two iterations, not the error, so it is tightened (1e-3, 1e-4, ...)
   until its estimate is within 1e-3 of the reference; the time of that run is the one compared.
   Hessian-vector products are counted for all. Each time is the best of ``--repeats`` runs (the
   machine is shared; the minimum is the least noisy estimate of what a run costs). Both of our
   product engines are timed: ``graph`` (double backward through one stored gradient graph, the
   default) and ``jvp`` (forward-over-reverse, recomputed per product).
2. **Cost on a 1M-parameter transformer** (``analysis.training.gpt.GPT``, 16k-token batch, float32): one
   gradient, one Hessian-vector product by each engine and by curvlinops, the step
   finite-difference probe (n_gamma gradients plus the one at the start, and one product for the
   curvature) and the spectral norm.
3. **Products on models with an affine LayerNorm.** curvlinops' product (``jvp`` of ``jacrev``)
   and ``torch.func.hessian`` against the double-backward Hessian on a small classifier with a
   LayerNorm (checked against finite differences in ``tests/smoothness``), and curvlinops' against
   ours on the GPTs of part 1, block by block.
4. **Warm starts along a trajectory.** A GPT trained with AdamS on the shipped corpus, a
   checkpoint every few steps; ``probe_trajectory`` with every spectral norm (the whole model and
   each layer) started from the previous checkpoint's eigenvector, against random starts: products,
   time, and how far the two tables' norms lie apart.

PyHessian and curvlinops draw random vectors from the global torch RNG, so this script seeds it before
each call (the package itself never touches the global RNG). Results go to
``benchmarks/results/smoothness_probe.json`` (not committed).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as a script from a checkout without installing
    sys.path.insert(0, str(REPO_ROOT))

import adams  # noqa: E402
from analysis.training import corpus, lm_loss, sample_batch  # noqa: E402
from analysis.training.gpt import GPT, GPTConfig  # noqa: E402
from analysis.report import cpu_model, write_report  # noqa: E402
from smoothness import Objective, hessian_spectral_norm, probe_trajectory  # noqa: E402
from smoothness.hessian import dense_hessian, flatten, unflatten  # noqa: E402
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


def curvlinops_hessian(model, batch):
    """curvlinops' Hessian of the mean cross entropy of ``model`` on ``batch``, as a PyTorch operator."""
    from curvlinops import HessianLinearOperator

    return HessianLinearOperator(model, nn.CrossEntropyLoss(), [p for p in model.parameters() if p.requires_grad],
                                 [batch], check_deterministic=False, num_data=batch[0].shape[0])


def run_curvlinops(model, batch, tol, seed, repeats, ncv=8):
    """Top |eigenvalue| of curvlinops' operator by the ARPACK call our spectral norm makes (same start)."""
    from scipy.sparse.linalg import LinearOperator, eigsh

    count = [0]

    def run():
        count[0] = 0
        with sdpa_kernel([SDPBackend.MATH]):
            op = curvlinops_hessian(model, batch)
            n = op.shape[0]

            def matvec(x):
                count[0] += 1
                return (op @ torch.as_tensor(x.ravel(), dtype=torch.float64)).numpy()

            v0 = np.random.default_rng(seed).standard_normal(n)
            values = eigsh(LinearOperator((n, n), matvec=matvec, dtype=np.float64), k=1, which="LM", tol=tol, v0=v0,
                           ncv=ncv, maxiter=2000 // (ncv - 1), return_eigenvectors=False)
        return abs(float(values[0]))

    value, seconds = best_of(repeats, run)
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
    value, seconds, n_hvp = run_curvlinops(model, batch, 1e-3, seed, repeats)
    row["curvlinops"] = {"value": value, "rel_error": abs(value - reference) / reference, "seconds": seconds,
                         "n_hvp": n_hvp, "settings": "HessianLinearOperator, eigsh which=LM tol=1e-3 ncv=8"}
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
    flat_model, y_flat = Flat(model), y.reshape(-1)
    with sdpa_kernel([SDPBackend.MATH]):
        op = curvlinops_hessian(flat_model, (x, y_flat))
        g_flat = flatten(g0)
        op @ g_flat  # warm-up
        start = time.perf_counter()
        op @ g_flat
        out["hvp_curvlinops_s"] = time.perf_counter() - start
    # the jvp engine's spectral norm takes the same number of products, each costing hvp_jvp_s
    start = time.perf_counter()
    spectral = hessian_spectral_norm(model, lm_loss, (x, y), tol=1e-3, seed=seed, engine="graph")
    out["spectral_graph_s"] = time.perf_counter() - start
    out["spectral_graph"] = spectral.as_dict()
    return out


def layernorm_products(seed):
    """How far curvlinops' Hessian and ``torch.func.hessian`` lie from the double-backward one on a
    small classifier with an affine LayerNorm moved off its initial weights."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Tanh(), nn.Linear(4, 2)).double()
    with torch.no_grad():
        model[1].weight.add_(0.3 * torch.randn(4, dtype=torch.float64))
        model[1].bias.add_(0.3 * torch.randn(4, dtype=torch.float64))
    g = torch.Generator().manual_seed(seed)
    batch = (torch.randn(8, 3, generator=g, dtype=torch.float64), torch.randint(0, 2, (8,), generator=g))
    obj = Objective(model, loss_fn, batch)
    w = obj.weights()
    H = dense_hessian(obj, w)
    n = H.shape[0]
    others = {"curvlinops": curvlinops_hessian(model, batch) @ torch.eye(n, dtype=torch.float64),
              "torch.func.hessian": torch.func.hessian(lambda vec: obj._call(unflatten(vec, w), batch))(flatten(w))}
    out = {"n_params": n, "reference": "double backward, row by row (smoothness.hessian.dense_hessian)"}
    for name, other in others.items():
        rows = unflatten(torch.arange(n), w)  # each tensor's rows of H
        out[name] = {"max_abs_error": float((other - H).abs().max()),
                     "rel_error_by_tensor": {t: float((other[idx.reshape(-1)] - H[idx.reshape(-1)]).norm()
                                                      / H[idx.reshape(-1)].norm()) for t, idx in rows.items()}}
    return out


def gpt_product_discrepancy(model, batch, seed):
    """|H v - H_curvlinops v| / |H v| for each tensor of a GPT, one random v."""
    obj = Objective(model, loss_fn, batch)
    w = obj.weights()
    v = unflatten(torch.randn(flatten(w).numel(), generator=torch.Generator().manual_seed(seed), dtype=torch.float64),
                  w)
    ours = obj.hvp_operator(w, "graph")(v)
    with sdpa_kernel([SDPBackend.MATH]):
        theirs = unflatten(curvlinops_hessian(model, batch) @ flatten(v), w)
    errors = {n: float((theirs[n] - ours[n]).norm() / ours[n].norm()) for n in w}
    layernorm = {n: e for n, e in errors.items() if ".ln" in n or "ln_" in n}
    return {"max_rel_error_layernorm": max(layernorm.values()),
            "max_rel_error_other": max(e for n, e in errors.items() if n not in layernorm),
            "by_tensor": errors}


def warm_start_trajectory(quick, seed):
    """Train a GPT with AdamS on the shipped corpus, save checkpoints, probe them warm and cold."""
    data = corpus.load()
    cfg = GPTConfig(vocab=data.vocab_size, block=32, layers=1, heads=2, width=32) if quick else \
        GPTConfig(vocab=data.vocab_size, block=64, layers=2, heads=2, width=64)
    steps, every = (40, 10) if quick else (200, 20)
    torch.manual_seed(seed)
    model = GPT(cfg)
    opt = adams.AdamS(model.named_parameters(), lr=3e-3)
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for step in range(steps + 1):
            if step % every == 0:
                paths.append(Path(tmp) / f"step_{step}.pt")
                torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step}, paths[-1])
            if step < steps:
                loss = lm_loss(model, *sample_batch(data.train, rng, 16, cfg.block))
                opt.zero_grad()
                loss.backward()
                opt.step()
        eval_batch = sample_batch(data.train, np.random.default_rng(seed + 1), 16, cfg.block)
        tables, seconds = {}, {}
        for warm in (False, True):
            start = time.perf_counter()
            tables[warm] = probe_trajectory(lambda: GPT(cfg), lambda m, b: lm_loss(m, *b), eval_batch, paths,
                                            blocks="layer", block_hessian=True, gammas=(0.5,), tol=1e-3, seed=seed,
                                            warm_start=warm, progress=False)
            seconds[warm] = time.perf_counter() - start
    cold, warm = tables[False], tables[True]
    later = cold["step"] > 0  # the first checkpoint starts cold in both tables
    whole = cold["block"] == "all"
    relative = ((warm["hessian_norm"] - cold["hessian_norm"]).abs() / cold["hessian_norm"]).to_numpy()
    return {"n_params": int(cold.loc[whole, "n_params"].iloc[0]), "checkpoints": len(paths),
            "blocks_per_checkpoint": int((cold["step"] == 0).sum()), "steps_between": every,
            "products_cold": int(cold.loc[later, "hessian_n_hvp"].sum()),
            "products_warm": int(warm.loc[later, "hessian_n_hvp"].sum()),
            "products_cold_whole_model": int(cold.loc[later & whole, "hessian_n_hvp"].sum()),
            "products_warm_whole_model": int(warm.loc[later & whole, "hessian_n_hvp"].sum()),
            "seconds_cold": seconds[False], "seconds_warm": seconds[True],
            "all_converged": bool(cold["hessian_converged"].all() and warm["hessian_converged"].all()),
            "max_rel_difference": float(np.max(relative)), "median_rel_difference": float(np.median(relative))}


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
        rows[-1]["curvlinops_product"] = gpt_product_discrepancy(model, batch, args.seed)

    big = GPTConfig(vocab=64, block=32, layers=1, heads=2, width=32) if args.quick else \
        GPTConfig(vocab=256, block=128, layers=4, heads=4, width=144)
    cost = transformer_cost(big, 8 if args.quick else 128, args.seed)
    layernorm = layernorm_products(args.seed)
    warm = warm_start_trajectory(args.quick, args.seed)

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
        c = row["curvlinops"]
        print(f"{'':<38}{'curvlinops, same Lanczos':<34}{c['value']:>12.6g}{c['rel_error']:>12.1e}{c['n_hvp']:>7}"
              f"{c['seconds']:>9.3f}")
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
    print(f"  Hessian-vector product by curvlinops (jvp of jacrev): {cost['hvp_curvlinops_s']:.2f} s")
    print(f"  Hessian spectral norm (one graph, Lanczos tol 1e-3): {cost['spectral_graph_s']:.1f} s, "
          f"{cost['spectral_graph']['n_hvp']} products, converged {cost['spectral_graph']['converged']}")
    print(f"  engine graph / jvp time per product: {cost['hvp_graph_s'] / cost['hvp_jvp_s']:.2f} here; over part 1: "
          + ", ".join(f"{r['ours_graph']['seconds'] / r['ours_jvp']['seconds']:.2f}" for r in rows))

    print(f"\nAffine LayerNorm, {layernorm['n_params']} parameters: error against {layernorm['reference']}")
    for name in ("curvlinops", "torch.func.hessian"):
        errors = layernorm[name]["rel_error_by_tensor"]
        print(f"  {name:<20} max |entry error| {layernorm[name]['max_abs_error']:.2e}; relative error of each "
              "tensor's rows: " + ", ".join(f"{t} {e:.1e}" for t, e in errors.items()))
    for row in rows[1:]:
        d = row["curvlinops_product"]
        print(f"  {row['case']}: curvlinops' product off ours by up to {d['max_rel_error_layernorm']:.1e} on "
              f"LayerNorm tensors, {d['max_rel_error_other']:.1e} on the others")

    print(f"\nWarm starts: {warm['n_params']:,}-parameter GPT trained with AdamS, {warm['checkpoints']} checkpoints "
          f"{warm['steps_between']} steps apart, {warm['blocks_per_checkpoint']} spectral norms each (the model and "
          f"each layer), checkpoints after the first:")
    print(f"  products: {warm['products_cold']} from random starts, {warm['products_warm']} warm-started "
          f"({1 - warm['products_warm'] / warm['products_cold']:.0%} saved); whole model alone "
          f"{warm['products_cold_whole_model']} -> {warm['products_warm_whole_model']}")
    print(f"  probing time {warm['seconds_cold']:.1f} s -> {warm['seconds_warm']:.1f} s; all converged: "
          f"{warm['all_converged']}; |norm warm - norm cold| / norm: median {warm['median_rel_difference']:.1e}, "
          f"max {warm['max_rel_difference']:.1e} (tol 1e-3)")
    result = {"comparisons": rows, "transformer_cost": cost, "layernorm": layernorm, "warm_start": warm,
              "meta": {"cpu": cpu_model(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                       "quick": args.quick, "seed": args.seed, "repeats": args.repeats}}
    write_report(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
