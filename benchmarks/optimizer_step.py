"""Time one optimizer step: AdamS (for-loop, foreach, fused), AdamW (foreach, fused), SGD momentum.

    python benchmarks/optimizer_step.py            # full: 30 rounds, about 1-2 minutes
    python benchmarks/optimizer_step.py --quick    # 3 rounds, under 20 s
    python benchmarks/optimizer_step.py --compile  # also torch.compile of the functional core
    python benchmarks/optimizer_step.py --out /tmp/step.json

Prints a table per parameter set, then the speed targets as paired per-round ratios with their
bootstrap CI, and writes everything to JSON (default ``benchmarks/results/optimizer_step.json``,
not committed). The timing logic is :mod:`analysis.timing.steptime`; the numbers in the README and in
``paper_repro.md`` come from the same measurement run by the ``optimizer_cost`` notebook
(``make figures``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as a script from a checkout without installing
    sys.path.insert(0, str(REPO_ROOT))

from analysis.timing import steptime  # noqa: E402
from analysis.report import write_report  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds after 1 warm-up (CI size)")
    parser.add_argument("--seed", type=int, default=0, help="seed of parameters and gradients")
    parser.add_argument("--compile", action="store_true",
                        help="add torch.compile of the functional core (compiles for ~20 s per set)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "optimizer_step.json")
    args = parser.parse_args(argv)

    result = steptime.run(quick=args.quick, seed=args.seed, compiled=args.compile)
    print(steptime.format_table(result))
    print()
    print(steptime.format_targets(result))
    write_report(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
