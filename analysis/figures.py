"""Run the notebooks and regenerate ``paper_repro.md``: what ``make figures`` calls.

    python -m analysis.figures                      # every notebook, full size
    python -m analysis.figures adams_from_scratch   # only the named ones
    python -m analysis.figures --quick              # small versions (ADAMS_QUICK=1), as CI runs them
    python -m analysis.figures --out /tmp/figs      # write figures, JSON and paper_repro.md there
    python -m analysis.figures --list               # the notebook names
    python -m analysis.figures --recompute          # recompute cached training runs and timings
    python -m analysis.figures --kernel             # through a Jupyter kernel, executed .ipynb to build/notebooks

Notebooks are jupytext percent-format ``.py`` files in ``notebooks/``, run in the course order
(:data:`COURSE`). They are valid Python
scripts, so each runs as ``python notebooks/<name>.py`` in a fresh subprocess: no Jupyter kernel,
no state shared between notebooks. The subprocess gets ``cwd`` = repository root, ``MPLBACKEND=Agg``,
``ADAMS_FIGURES_DIR`` = the output directory, ``ADAMS_QUICK=1`` with ``--quick`` (otherwise the
caller's ``ADAMS_QUICK`` is passed on) and the repository root on ``PYTHONPATH``.

With ``--kernel`` each notebook runs as a notebook instead: jupytext turns it into an ``.ipynb``,
``nbclient`` executes it cell by cell in a fresh Jupyter kernel (``ipykernel``, working directory the
repository root, the same environment but matplotlib's inline backend, so that figures appear in
the cells' outputs), and the executed notebook, outputs and figures included, is written to
``--build`` (default ``build/notebooks``): the handout of a course. Figures, JSON and
``paper_repro.md`` are written as without it.

A failing notebook does not stop the others; the driver prints the tail of its stderr and exits
with status 1 at the end. ``paper_repro.md`` is then rebuilt from every results JSON in the output
directory: in the repository root for the default ``figures/`` directory, else inside ``--out``.
For the default directory the step-time table in ``README.md`` is rebuilt too, from
``figures/optimizer_cost.json``.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from analysis.report import repro

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
DEFAULT_OUT = REPO_ROOT / "figures"
README = REPO_ROOT / "README.md"
STDERR_TAIL_LINES = 40


@dataclass
class Run:
    name: str
    seconds: float = 0.0
    status: str = "not run"
    files: list[str] = field(default_factory=list)
    stdout: str = ""
    stderr: str = ""


# The course track, and the order in which `make figures` runs the notebooks: from the update itself
# to the experiments. It is also an order of dependencies: training_memory reuses the parity runs
# (through the training cache) and bounds_vs_simulation reads training_smoothness.json.
COURSE = (
    "adams_from_scratch",     # the update line by line, on a toy valley next to AdamW and SGD
    "adams_step_and_memory",  # its bounded step, its first step, its memory
    "optimizer_cost",         # what a step costs against the memory-bandwidth floor
    "stationary_statistics",  # why momentum can normalize: V against S under gradient noise
    "stationary_steps",       # the normalized steps m/sqrt(V) and m/sqrt(S)
    "stationary_noise_models",  # heavy-tailed and time-correlated noise
    "smoothness_probes",      # measuring (L0, L1)-smoothness
    "training_lr_sweep",      # every optimizer's learning rate, bracketed over seeds
    "training_parity",        # AdamS against its peers on Shakespeare
    "training_memory",
    "training_betas",
    "training_batch_size",
    "training_smoothness",    # the probes on the training trajectories
    "bounds_vs_simulation",   # convergence bounds against simulations and the measured trajectory
    "training_distributed",   # the same model on several processes
    "training_rl",            # post-training with a verifiable reward (GRPO)
)


def discover(notebook_dir: Path = NOTEBOOK_DIR) -> dict[str, Path]:
    """Notebook name -> path for every ``*.py`` in ``notebook_dir`` (skipping ``_private.py``), in
    course order (:data:`COURSE`), then any others by name."""
    found = {p.stem: p for p in sorted(notebook_dir.glob("*.py")) if not p.name.startswith("_") and p.is_file()}
    rank = {name: i for i, name in enumerate(COURSE)}
    return {name: found[name] for name in sorted(found, key=lambda n: (rank.get(n, len(COURSE)), n))}


def _snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    if not directory.is_dir():
        return {}
    return {
        p.name: (p.stat().st_mtime_ns, p.stat().st_size)
        for p in directory.iterdir()
        if p.is_file() and not p.name.startswith(".")
    }


def _environment(out_dir: Path, quick: bool) -> dict[str, str]:
    env = dict(os.environ)
    env["MPLBACKEND"] = "Agg"
    env["ADAMS_FIGURES_DIR"] = str(out_dir)
    if quick:
        env["ADAMS_QUICK"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    )
    env.setdefault("PYTHONHASHSEED", "0")
    return env


def run_notebook(path: Path, out_dir: Path, quick: bool, timeout: float | None = None) -> Run:
    """Run one notebook as a script in a fresh interpreter; report its time, status and new files."""
    run = Run(name=path.stem)
    before = _snapshot(out_dir)
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, str(path)],
            cwd=REPO_ROOT,
            env=_environment(out_dir, quick),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        run.stdout, run.stderr = proc.stdout, proc.stderr
        run.status = "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
    except subprocess.TimeoutExpired as err:
        run.stdout = err.stdout.decode() if isinstance(err.stdout, bytes) else (err.stdout or "")
        run.stderr = err.stderr.decode() if isinstance(err.stderr, bytes) else (err.stderr or "")
        run.status = f"timed out ({timeout:g} s)"
    run.seconds = time.perf_counter() - start
    after = _snapshot(out_dir)
    run.files = sorted(name for name, stamp in after.items() if before.get(name) != stamp)
    return run


def run_in_kernel(path: Path, out_dir: Path, quick: bool, build_dir: Path, timeout: float | None = None) -> Run:
    """Execute one notebook in a fresh Jupyter kernel; write the executed ``.ipynb`` to ``build_dir``
    (only if every cell ran). Needs the ``notebooks`` extra (jupytext, nbclient, ipykernel)."""
    import jupytext
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    run = Run(name=path.stem)
    before = _snapshot(out_dir)
    env = _environment(out_dir, quick)
    del env["MPLBACKEND"]  # the kernel's inline backend puts the figures in the outputs
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])  # this Python's kernel
    notebook = jupytext.read(path)
    client = NotebookClient(notebook, timeout=timeout if timeout is not None else -1, kernel_name="python3",
                            resources={"metadata": {"path": str(REPO_ROOT)}})
    start = time.perf_counter()
    try:
        client.execute(env=env)
        run.status = "ok"
    except CellTimeoutError as err:
        run.status, run.stderr = f"timed out ({timeout:g} s in a cell)", str(err)
    except CellExecutionError as err:
        run.status, run.stderr = "failed (a cell raised)", str(err)
    run.seconds = time.perf_counter() - start
    run.stdout = "\n".join(o.get("text", "") for c in notebook.cells if c.cell_type == "code"
                           for o in c.get("outputs", []) if o.get("output_type") == "stream")
    if run.status == "ok":
        build_dir.mkdir(parents=True, exist_ok=True)
        target = build_dir / f"{path.stem}.ipynb"
        tmp = target.with_suffix(".ipynb.tmp")
        nbformat.write(notebook, tmp)
        os.replace(tmp, target)
    after = _snapshot(out_dir)
    run.files = sorted(name for name, stamp in after.items() if before.get(name) != stamp)
    return run


def _tail(text: str, n: int = STDERR_TAIL_LINES) -> str:
    lines = text.rstrip().splitlines()
    return "\n".join(("    " + line) for line in lines[-n:])


def timing_table(runs: list[Run]) -> str:
    """A plain-text table: notebook, seconds, status, files written."""
    header = ("notebook", "seconds", "status", "files written")
    rows = [(r.name, f"{r.seconds:.1f}", r.status, ", ".join(r.files) or "-") for r in runs]
    total = sum(r.seconds for r in runs)
    rows.append(("total", f"{total:.1f}", f"{sum(r.status == 'ok' for r in runs)}/{len(runs)} ok", ""))
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(3)]

    def fmt(row):
        return "  ".join(
            [row[0].ljust(widths[0]), row[1].rjust(widths[1]), row[2].ljust(widths[2]), row[3]]
        ).rstrip()

    rule = "  ".join("-" * w for w in widths) + "  " + "-" * len(header[3])
    return "\n".join([fmt(header), rule, *map(fmt, rows[:-1]), rule, fmt(rows[-1])])


def parse_args(argv: list[str] | None, available: dict[str, Path]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m analysis.figures",
        description="Run the notebooks in notebooks/ and regenerate paper_repro.md.",
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help="notebooks to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="small versions (sets ADAMS_QUICK=1)")
    parser.add_argument("--out", type=Path, help="output directory (default: figures/)")
    parser.add_argument("--list", action="store_true", help="list the notebook names and exit")
    parser.add_argument("--timeout", type=float, default=None, help="seconds allowed per notebook")
    parser.add_argument("--kernel", action="store_true",
                        help="run each notebook through a Jupyter kernel and write the executed .ipynb to --build")
    parser.add_argument("--build", type=Path, default=REPO_ROOT / "build" / "notebooks",
                        help="where --kernel writes the executed notebooks (default: build/notebooks)")
    parser.add_argument("--recompute", action="store_true",
                        help="recompute cached intermediate results (training runs, timings) once in this run")
    args = parser.parse_args(argv)
    names = [n[:-3] if n.endswith(".py") else n for n in args.names]
    names = [Path(n).name for n in names]  # accept notebooks/foo.py as well as foo
    unknown = [n for n in names if n not in available]
    if unknown:
        valid = ", ".join(available) or "(none: notebooks/ has no .py files)"
        parser.error(f"unknown notebook(s): {', '.join(unknown)}. Valid names: {valid}")
    args.names = list(dict.fromkeys(names)) or list(available)
    return args


def main(argv: list[str] | None = None, *, notebook_dir: Path = NOTEBOOK_DIR) -> int:
    available = discover(notebook_dir)
    args = parse_args(argv, available)
    if args.list:
        print("\n".join(available))
        return 0

    if args.out is not None:
        out_dir = args.out.resolve()
    elif os.environ.get("ADAMS_FIGURES_DIR"):
        out_dir = Path(os.environ["ADAMS_FIGURES_DIR"]).resolve()
    else:
        out_dir = DEFAULT_OUT
    out_dir.mkdir(parents=True, exist_ok=True)
    repro_path = REPO_ROOT / "paper_repro.md" if out_dir == DEFAULT_OUT else out_dir / "paper_repro.md"
    quick = args.quick or os.environ.get("ADAMS_QUICK", "").strip().lower() in {"1", "true", "yes"}

    if args.recompute:  # every cached result older than this moment is computed again, once
        os.environ["ADAMS_RECOMPUTE_SINCE"] = repr(time.time())
    print(f"Running {len(args.names)} notebook(s) into {out_dir} ({'quick' if quick else 'full'} mode"
          f"{', recomputing cached results' if args.recompute else ''})")
    runs = []
    for i, name in enumerate(args.names, 1):
        print(f"[{i}/{len(args.names)}] {name} ...", end=" ", flush=True)
        if args.kernel:
            run = run_in_kernel(available[name], out_dir, quick, args.build.resolve(), args.timeout)
        else:
            run = run_notebook(available[name], out_dir, quick, args.timeout)
        runs.append(run)
        print(f"{run.status} in {run.seconds:.1f} s, {len(run.files)} file(s) written", flush=True)
        if run.status != "ok":
            tail = _tail(run.stderr) or _tail(run.stdout)
            print(f"--- last lines of {name}'s output ---\n{tail}\n---", file=sys.stderr, flush=True)

    print()
    print(timing_table(runs))
    failed = [r.name for r in runs if r.status != "ok"]

    try:
        repro.write(out_dir, repro_path)
        print(f"\nWrote {repro_path}")
        if out_dir == DEFAULT_OUT and repro.update_readme(out_dir, README):
            print(f"Updated the generated tables in {README}")
    except (ValueError, OSError) as err:
        print(f"\nCould not regenerate {repro_path}: {err}", file=sys.stderr)
        return 1
    if failed:
        print(f"Failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
