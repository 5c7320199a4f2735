"""Speed of the stationary-statistics Monte Carlo: the standard grid against a per-chain Python loop.

    python benchmarks/stationary.py            # standard grid: 30 betas x 30 mu/sigma x 10^4 chains
    python benchmarks/stationary.py --quick    # 8 x 8 x 2000, a few seconds
    python benchmarks/stationary.py --out /tmp/stationary.json

A *sample* is one chain advanced by one step at one grid point (beta1 = beta2 = beta, mu/sigma):
the unit of work of the straightforward loop, which draws each chain's noise with NumPy and runs
the recursions in plain Python (``analysis.stationary.simulation.reference_chain``). Three measurements, in
one process, side by side:

1. ``vectorized``: ``analysis.stationary.simulate`` on the whole grid (the time the goal is about);
2. ``vectorized, one mu/sigma``: the same betas with a single mu/sigma, to show how much comes from
   sharing one noise path across the mu/sigma values and how much from vectorizing over chains;
3. ``python loop``: the plain loop on a few chains at a few grid points (it is about 10^4 times
   slower, so its rate is measured on 200 chains at 9 grid points and the grid time extrapolated).

Writes JSON to ``benchmarks/results/stationary.json`` (not committed).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as a script from a checkout without installing
    sys.path.insert(0, str(REPO_ROOT))

from analysis import stationary as st  # noqa: E402
from analysis.report import cpu_model, write_report  # noqa: E402
from analysis.stationary.simulation import reference_chain  # noqa: E402

GOAL_S = 60.0  # the standard grid must finish within a minute on a 2-core machine


def time_vectorized(beta: np.ndarray, snr: np.ndarray, chains: int, seed: int) -> dict:
    start = time.perf_counter()
    sim = st.simulate(snr[None, :], 1.0, beta[:, None], beta[:, None], chains=chains, seed=seed)
    seconds = time.perf_counter() - start
    samples = int(sim.steps.sum()) * chains
    return {"seconds": seconds, "samples": samples, "samples_per_s": samples / seconds,
            "grid_points": int(sim.steps.size), "chains": chains, "steps_per_beta": sim.steps[:, 0].tolist()}


def time_loop(beta: np.ndarray, snr: np.ndarray, chains: int, grid_chains: int, seed: int) -> dict:
    """Per chain: draw its noise, run the recursions in Python, with the grid's burn-in."""
    rng = np.random.default_rng(seed)
    samples, start = 0, time.perf_counter()
    for b in beta:
        steps = st.burn_in(b, b, grid_chains)
        for r in snr:
            for _ in range(chains):
                reference_chain(float(r), 1.0, float(b), float(b), rng.standard_normal(steps))
                samples += steps
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "samples": samples, "samples_per_s": samples / seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 x 8 grid, 2000 chains")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "stationary.json")
    args = parser.parse_args(argv)

    n = 8 if args.quick else 30
    chains = 2000 if args.quick else 10_000
    beta, snr = st.standard_grid(n, n)
    grid = time_vectorized(beta, snr, chains, args.seed)
    single = time_vectorized(beta, snr[n // 2: n // 2 + 1], chains, args.seed)
    # The loop on a sample: the smallest, a middle and a large beta, three mu/sigma, a few chains.
    loop = time_loop(beta[[0, n // 2, -5]], snr[[0, n // 2, -1]], 10 if args.quick else 200, chains, args.seed)
    result = {
        "grid": {"betas": n, "snr_values": n, "chains": chains, "beta_range": [float(beta[0]), float(beta[-1])],
                 "snr_range": [float(snr[0]), float(snr[-1])]},
        "vectorized": grid, "vectorized_one_snr": single, "python_loop": loop,
        "speedup_over_loop": grid["samples_per_s"] / loop["samples_per_s"],
        "speedup_from_shared_noise": grid["samples_per_s"] / single["samples_per_s"],
        "loop_seconds_for_grid_extrapolated": grid["samples"] / loop["samples_per_s"],
        "meta": {"cpu": cpu_model(), "numpy": np.__version__, "quick": args.quick, "seed": args.seed},
    }
    print(f"grid: {n} betas (1 - beta from 0.5 to 0.001) x {n} mu/sigma (0.01 to 100) x {chains} chains; "
          f"{grid['samples']:.3g} samples")
    print(f"{'method':<28}{'seconds':>10}{'samples/s':>14}")
    for name, row in (("vectorized", grid), ("vectorized, one mu/sigma", single), ("python loop (sample)", loop)):
        print(f"{name:<28}{row['seconds']:>10.2f}{row['samples_per_s']:>14.3g}")
    print(f"speed-up over the python loop: {result['speedup_over_loop']:.3g}x "
          f"(the loop would need {result['loop_seconds_for_grid_extrapolated'] / 3600:.1f} h for this grid)")
    print(f"of which from sharing one noise path across mu/sigma: {result['speedup_from_shared_noise']:.1f}x")
    if not args.quick:
        verdict = "met" if grid["seconds"] < GOAL_S else "NOT met"
        print(f"goal: standard grid under {GOAL_S:.0f} s: {verdict} ({grid['seconds']:.1f} s)")
    write_report(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
