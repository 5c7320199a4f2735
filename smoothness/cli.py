"""Command line: ``python -m smoothness probe | fit | plot``.

    python -m smoothness probe --model pkg.module:factory --data pkg.module:batches CKPT... --out results.csv
    python -m smoothness fit results.csv
    python -m smoothness plot results.csv --out smoothness.png

``--model`` names a function returning the ``torch.nn.Module`` the checkpoints belong to, or is a
Hugging Face ``config.json`` (or a checkpoint folder holding one): the model is then built with
``AutoModelForCausalLM.from_config``, nothing downloaded (the ``hf`` extra). ``--data`` names a
function returning the evaluation batch or a list of batches (or the batch itself), or is a token
file (``.npy``, or a nanoGPT ``.bin`` of uint16 ids) from which ``--batch-size`` sequences of
``--block`` + 1 tokens are read at seeded offsets as ``(inputs, targets)``. Checkpoints are
``torch.save`` or ``.safetensors`` files, or the folders a Hugging Face ``Trainer`` writes; they are
probed in the order of their stored steps (or, without steps, of the numbers in their names).
``--loss`` (optional) a function ``loss(model, batch) -> scalar``. The default loss is cross
entropy for a batch ``(inputs, targets)``: ``cross_entropy(model(inputs), targets)``, flattening
sequence dimensions. Each reference is ``package.module:name`` or ``path/to/file.py:name``.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from smoothness.frontier import MIN_BOOT, frontier, frontier_band, trend_line
from smoothness.objective import DEFAULT_ENGINE, cross_entropy_loss
from smoothness.probes import GLOBAL, interior_gammas
from smoothness.trajectory import check_output_path, columns_help, probe_trajectory, read_table

__all__ = ["main", "resolve", "hf_model_factory", "token_batch"]


def resolve(reference: str) -> Any:
    """``pkg.module:name`` or ``file.py:name`` -> the object; ``ValueError`` naming what is wrong."""
    module_ref, sep, attr = reference.rpartition(":")
    if not sep or not module_ref or not attr:
        raise ValueError(f"{reference!r} is not of the form package.module:name or file.py:name")
    if module_ref.endswith(".py"):
        path = Path(module_ref)
        if not path.is_file():
            raise ValueError(f"{path}: no such file")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module
        try:
            spec.loader.exec_module(module)
        except Exception as err:  # noqa: BLE001 - the user's file: report its error in one line
            raise ValueError(f"{path}: running it failed: {type(err).__name__}: {err}") from None
    else:
        try:
            module = importlib.import_module(module_ref)
        except Exception as err:  # noqa: BLE001 - ImportError, or an error while importing
            raise ValueError(f"cannot import {module_ref!r}: {type(err).__name__}: {err}") from None
    if not hasattr(module, attr):
        raise ValueError(f"{module_ref} has no attribute {attr!r}")
    return getattr(module, attr)


def hf_model_factory(config: str | Path):
    """A factory building the Hugging Face causal language model that ``config`` (a ``config.json``
    or a folder holding one) describes, with ``AutoModelForCausalLM.from_config`` (no download)."""
    path = Path(config)
    folder = path if path.is_dir() else path.parent
    if not (folder / "config.json").is_file():
        raise ValueError(f"{config}: no config.json there")
    try:
        import transformers
    except ImportError:
        raise ValueError("a Hugging Face config as --model needs transformers: pip install adams-lab[hf]") from None
    hf_config = transformers.AutoConfig.from_pretrained(str(folder))
    return lambda: transformers.AutoModelForCausalLM.from_config(hf_config)


def token_batch(path: str | Path, *, batch_size: int, block: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch_size`` sequences of ``block`` + 1 consecutive tokens from a token file (``.npy``, or a
    nanoGPT ``.bin`` of uint16 ids) at offsets drawn from ``seed``: ``(inputs, targets)``."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such token file")
    if path.suffix == ".npy":
        tokens = np.load(path, mmap_mode="r", allow_pickle=False)
    elif path.suffix == ".bin":
        tokens = np.memmap(path, dtype=np.uint16, mode="r")
    else:
        raise ValueError(f"{path}: a token file is .npy or .bin (uint16 ids, as nanoGPT writes them)")
    if tokens.ndim != 1 or not np.issubdtype(tokens.dtype, np.integer):
        raise ValueError(f"{path}: expected a flat array of integer token ids, got {tokens.dtype} of shape {tokens.shape}")
    if batch_size < 1 or block < 1 or tokens.size < block + 2:
        raise ValueError(f"{path}: {tokens.size} tokens cannot give sequences of {block} + 1 (batch size {batch_size})")
    starts = np.random.default_rng(seed).integers(0, tokens.size - block - 1, batch_size)
    seq = torch.from_numpy(np.stack([np.asarray(tokens[s:s + block + 1], dtype=np.int64) for s in starts]))
    return seq[:, :-1], seq[:, 1:]


def _model_factory(reference: str):
    path = Path(reference)
    if path.name == "config.json" or (path.is_dir() and (path / "config.json").is_file()):
        return hf_model_factory(path)
    return resolve(reference)


def _batches(args):
    if Path(args.data).suffix in (".npy", ".bin") and ":" not in args.data:
        if args.batch_size is None or args.block is None:
            raise ValueError("a token file as --data needs --batch-size and --block")
        return token_batch(args.data, batch_size=args.batch_size, block=args.block, seed=args.seed)
    data = resolve(args.data)
    return data() if callable(data) else data


def _probe(args) -> int:
    check_output_path(args.out, "probe table (--out)")
    model_factory = _model_factory(args.model)
    batches = _batches(args)
    loss_fn = resolve(args.loss) if args.loss else cross_entropy_loss
    gammas = tuple(args.gamma) if args.gamma else interior_gammas(args.n_gamma)
    table = probe_trajectory(
        model_factory, loss_fn, batches, args.checkpoints, gammas=gammas,
        blocks=None if args.blocks == "none" else args.blocks, hessian=not args.no_hessian,
        block_hessian=args.block_hessian, block_curvature=args.block_curvature, mode=args.mode,
        dtype=getattr(torch, args.dtype) if args.dtype else None, seed=args.seed, tol=args.tol,
        out=args.out, progress=True, hvp_engine=args.hvp_engine, momentum=not args.no_momentum, device=args.device,
        warm_start=args.warm_start,
    )
    print(f"wrote {args.out}: {table['checkpoint'].nunique()} checkpoints, {len(table)} rows")
    print(noise_line(table))
    return 0


def noise_line(table) -> str:
    """One line comparing the gradient norm a single batch shows with the unbiased estimate
    (medians over the checkpoints, whole model), or why there is no estimate."""
    whole = table[table["block"] == GLOBAL]
    if "grad_sq_unbiased" not in whole or whole["grad_sq_unbiased"].isna().all():
        return ("gradient noise: not estimated (it needs --data to give at least 3 independent minibatches of one "
                "size)")
    k = int(whole["n_noise_batches"].iloc[0])
    med = {c: float(np.nanmedian(whole[c].to_numpy(float)))
           for c in ("one_batch_grad_norm", "grad_norm", "grad_norm_unbiased", "noise_trace")}
    return (f"gradient norm, median over checkpoints: one batch {med['one_batch_grad_norm']:.4g}, mean of the {k} "
            f"batches {med['grad_norm']:.4g}, unbiased estimate {med['grad_norm_unbiased']:.4g} (minibatch noise "
            f"trace {med['noise_trace']:.4g}; per checkpoint with standard errors in the table)")


def _points(args):
    table = read_table(args.table)
    if args.measure not in table:
        raise ValueError(f"{args.table}: has no column {args.measure!r} (choose another --measure)")
    rows = table[table["block"] == args.block]
    if rows.empty:
        raise ValueError(f"no rows for block {args.block!r} in {args.table}")
    return rows, rows[args.measure].to_numpy(float), rows["grad_norm"].to_numpy(float)


def _fit(args) -> int:
    from smoothness.plot import default_l1_grid

    if args.n_boot < MIN_BOOT:
        raise ValueError(f"--n-boot must be at least {MIN_BOOT} (bootstrap resamples), got {args.n_boot}")
    if args.json is not None:
        check_output_path(args.json, "frontier JSON (--json)")
    rows, L, G = _points(args)
    l1 = np.asarray(args.l1, float) if args.l1 else default_l1_grid(L, G)
    l0 = frontier(L, G, l1, quantile=args.quantile)
    low, high = frontier_band(L, G, l1, quantile=args.quantile, n_boot=args.n_boot, seed=args.seed)
    kind = "max" if args.quantile is None else f"{args.quantile:g}-quantile"
    n = int((np.isfinite(L) & np.isfinite(G)).sum())
    print(f"sample frontier ({kind} over {n} points) of {args.measure} vs grad_norm, block {args.block!r}")
    print(f"{'L1':>12} {'L0*(L1)':>12} {'90% band':>25}")
    for a, b, lo, hi in zip(l1, l0, low, high):
        print(f"{a:>12.4g} {b:>12.4g} {lo:>12.4g} - {hi:<12.4g}")
    result = {"measure": args.measure, "block": args.block, "quantile": args.quantile, "n_points": n,
              "l1": l1.tolist(), "l0": l0.tolist(), "band_low": low.tolist(), "band_high": high.tolist()}
    if n >= 2:
        slope, intercept = trend_line(L, G)
        print(f"trend (least squares, display only, not a bound): log L = {intercept:.3f} + {slope:.3f} log |grad f|")
        result["trend"] = {"slope": slope, "intercept": intercept}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


def _plot(args) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from smoothness.plot import plot_table

    check_output_path(args.out, "figure (--out)")
    fig = plot_table(read_table(args.table), measure=args.measure, block=args.block, quantile=args.quantile,
                     seed=args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=150, bbox_inches="tight")
    print(f"wrote {args.out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m smoothness", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("probe", help="probe checkpoints into a CSV table (resumable)",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="columns of the table (one row per checkpoint and block):\n" + columns_help())
    p.add_argument("checkpoints", nargs="+", help="torch.save or .safetensors files, or Hugging Face Trainer checkpoint "
                                                  "folders (probed in the order of their stored steps)")
    p.add_argument("--model", required=True, help="pkg.module:factory returning the model, or a Hugging Face "
                                                  "config.json (or a checkpoint folder holding one)")
    p.add_argument("--data", required=True, help="pkg.module:batches returning the evaluation batch(es), or a token "
                                                 "file (.npy, or nanoGPT .bin of uint16) with --batch-size and --block")
    p.add_argument("--batch-size", type=int, help="sequences read from a token file --data")
    p.add_argument("--block", type=int, help="tokens per sequence read from a token file --data")
    p.add_argument("--loss", help="pkg.module:loss_fn(model, batch); default: cross entropy on (inputs, targets)")
    p.add_argument("--out", required=True, type=Path, help="CSV to write (rerunning skips rows it has)")
    p.add_argument("--n-gamma", type=int, default=3, help="interior points 1/(n+1)..n/(n+1) (default 3)")
    p.add_argument("--gamma", type=float, nargs="+", help="explicit gammas in (0, 1] instead of --n-gamma")
    p.add_argument("--blocks", choices=["tensor", "layer", "none"], default="tensor")
    p.add_argument("--no-hessian", action="store_true", help="skip the Hessian spectral norm")
    p.add_argument("--no-momentum", action="store_true",
                   help="do not read optimizer states (for one whose parameters cannot be matched to the model's)")
    p.add_argument("--block-hessian", action="store_true", help="also the spectral norm of each diagonal block")
    p.add_argument("--block-curvature", action="store_true", help="also d_B'H_BB d_B per block")
    p.add_argument("--mode", choices=["eval", "train"], default="eval")
    p.add_argument("--dtype", choices=["float32", "float64"], help="default: the model's own")
    p.add_argument("--device", help="where the model, batches and products live: cuda, cuda:1, cpu (default: where "
                                    "the factory builds the model)")
    p.add_argument("--seed", type=int, default=0, help="seed of dropout inside f and of the Lanczos start")
    p.add_argument("--tol", type=float, default=1e-3, help="relative accuracy of the spectral norm")
    p.add_argument("--hvp-engine", choices=["graph", "jvp"], default=DEFAULT_ENGINE,
                   help="Hessian-vector products by double backward through one stored gradient graph (default; "
                        "the faster) or by forward-over-reverse (keeps no graph: less memory)")
    p.add_argument("--warm-start", action="store_true",
                   help="start each Lanczos run from the previous checkpoint's eigenvector (fewer products where "
                        "the top eigenvalues are close or --tol is tight; rows then depend on the order probed)")
    p.set_defaults(run=_probe)
    for name, helptext, run in (("fit", "print the sample (L0, L1) frontier", _fit),
                                ("plot", "draw local smoothness vs gradient and momentum norm", _plot)):
        q = sub.add_parser(name, help=helptext)
        q.add_argument("table", type=Path)
        q.add_argument("--measure", choices=["fd_smoothness", "hessian_norm", "curvature"], default="fd_smoothness")
        q.add_argument("--block", default=GLOBAL, help=f"block name (default {GLOBAL!r}: the whole model)")
        q.add_argument("--quantile", type=float, help="robust frontier: this quantile instead of the max")
        q.add_argument("--seed", type=int, default=0, help="bootstrap seed")
        q.set_defaults(run=run)
        if name == "fit":
            q.add_argument("--l1", type=float, nargs="+", help="L1 values (default: 9 from 0 to where L0* = 0)")
            q.add_argument("--n-boot", type=int, default=1000)
            q.add_argument("--json", type=Path, help="also write the frontier as JSON")
        else:
            q.add_argument("--out", type=Path, default=Path("smoothness.png"))
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, OSError, KeyError) as err:  # bad input or files: one line, no traceback
        message = str(err).replace("\n", " ")
        print(f"error: {message}", file=sys.stderr)
        return 2
