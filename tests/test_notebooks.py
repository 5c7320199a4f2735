"""Every notebook runs through the driver in quick mode and writes its figure, JSON and claims.

Outputs go to a pytest temporary directory, never to the committed ``figures/``.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import jupytext
import pytest

from analysis.figures import NOTEBOOK_DIR, REPO_ROOT, discover

NOTEBOOKS = discover()
MAGIC = re.compile(r"^\s*(#\s*)?%(?!%)", re.M)  # `%matplotlib`, `# %time`, ... but not `# %%`


def driver(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "analysis.figures", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_there_are_notebooks():
    assert NOTEBOOKS, f"no notebooks found in {NOTEBOOK_DIR}"


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_notebook_is_percent_format_and_opens_with_markdown(name):
    jupytext = pytest.importorskip("jupytext")
    path = NOTEBOOKS[name]
    text = path.read_text(encoding="utf-8")
    assert "formats: py:percent" in text, f"{name}: jupytext header must declare formats: py:percent"
    nb = jupytext.read(path, fmt="py:percent")
    assert nb.metadata.get("jupytext", {}).get("text_representation", {}).get("format_name") == "percent"
    cells = [c for c in nb.cells if c.source.strip()]
    assert cells and cells[0].cell_type == "markdown", f"{name}: the first cell must be markdown"
    assert any(c.cell_type == "code" for c in cells), f"{name}: no code cells"
    magic = MAGIC.search(text)
    assert magic is None, f"{name}: IPython magic at {text[magic.start():].splitlines()[0]!r}"


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_notebook_runs_in_quick_mode(name, tmp_path):
    out = tmp_path / "figures"
    proc = driver(name, "--quick", "--out", str(out))
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr[-4000:]}"
    assert f"[1/1] {name} ... ok" in proc.stdout

    for suffix in (".png", ".pdf", ".json"):
        path = out / f"{name}{suffix}"
        assert path.is_file() and path.stat().st_size > 0, f"{name} did not write {path.name}"
    document = json.loads((out / f"{name}.json").read_text())
    assert document["notebook"] == name and document["quick"] is True
    assert document["claims"], f"{name} saved no claims"

    report = out / "paper_repro.md"
    assert report.is_file(), "paper_repro.md was not generated in the --out directory"
    text = report.read_text()
    for claim in document["claims"]:
        assert f"`{claim['id']}`" in text
    leftovers = [p.name for p in out.iterdir() if p.name.startswith(".") or p.name.endswith(".tmp")]
    assert leftovers == []

    # staleness: the committed results (full runs) must state the same claims the notebook states now,
    # and every figure it writes must be committed; otherwise `make figures` was not rerun after a change
    committed_path = REPO_ROOT / "figures" / f"{name}.json"
    assert committed_path.is_file(), f"figures/{name}.json is not committed: run make figures"
    committed = json.loads(committed_path.read_text())
    assert committed["quick"] is False, f"figures/{name}.json comes from a quick run: run make figures"
    fields = ("id", "order", "claim", "paper_value", "command")
    now = [{k: c[k] for k in fields} for c in document["claims"]]
    then = [{k: c[k] for k in fields} for c in committed["claims"]]
    assert now == then, f"figures/{name}.json is stale: the notebook's claims changed; run make figures"
    missing = [p.name for p in out.iterdir() if p.suffix in (".png", ".pdf") and not (REPO_ROOT / "figures" / p.name).is_file()]
    assert not missing, f"figures not committed: {missing}"


def test_committed_paper_repro_is_rendered_from_the_committed_results():
    from analysis.report import repro

    assert (REPO_ROOT / "paper_repro.md").read_text() == repro.render(REPO_ROOT / "figures"), \
        "paper_repro.md is stale or edited by hand: run make figures"


def test_driver_rejects_unknown_names_and_lists_valid_ones():
    proc = driver("no_such_notebook", "--out", "/nonexistent-never-created")
    assert proc.returncode == 2
    assert "unknown notebook(s): no_such_notebook" in proc.stderr
    for name in NOTEBOOKS:
        assert name in proc.stderr
    assert not Path("/nonexistent-never-created").exists()


def test_driver_lists_notebooks():
    proc = driver("--list")
    assert proc.returncode == 0
    assert proc.stdout.split() == list(NOTEBOOKS)  # in course order


def test_failing_notebook_makes_the_driver_fail_after_the_others(tmp_path, capsys):
    """Run the driver in-process on a private notebook directory with one good and one bad notebook."""
    from analysis import figures

    nb_dir = tmp_path / "notebooks"
    nb_dir.mkdir()
    good = (
        "# %% [markdown]\n# A notebook that works\n\n# %%\n"
        "from analysis.report import save_results, command_for\n"
        "save_results('good', {'x': 1}, [dict(id='good-claim', order=1, claim='c', paper_value='p',\n"
        "    measured='m', command=command_for('good'), verdict='holds', note='n')])\n"
    )
    (nb_dir / "a_bad.py").write_text("# %% [markdown]\n# Broken\n\n# %%\nraise RuntimeError('boom')\n")
    (nb_dir / "b_good.py").write_text(good)
    out = tmp_path / "out"
    code = figures.main(["--quick", "--out", str(out)], notebook_dir=nb_dir)
    assert code == 1
    captured = capsys.readouterr()
    assert "RuntimeError: boom" in captured.err  # the tail of the failing notebook's stderr
    assert re.search(r"a_bad\s+[\d.]+\s+failed \(exit 1\)", captured.out)
    assert re.search(r"b_good\s+[\d.]+\s+ok\s+good.json", captured.out)
    assert (out / "good.json").is_file()  # the good notebook still ran after the bad one
    assert "good-claim" in (out / "paper_repro.md").read_text()


def test_every_notebook_is_in_the_course_and_runs_in_its_order():
    from analysis.figures import COURSE

    assert sorted(COURSE) == sorted(NOTEBOOKS), "analysis.figures.COURSE must list every notebook once"
    assert list(NOTEBOOKS) == list(COURSE)
    order = list(COURSE)
    assert order.index("training_parity") < order.index("training_memory")  # reuses the parity runs
    assert order.index("training_smoothness") < order.index("bounds_vs_simulation")  # reads its JSON


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_notebook_opens_with_learning_goals_and_closes_with_checked_exercises(name):
    nb = jupytext.read(NOTEBOOKS[name], fmt="py:percent")
    cells = [c for c in nb.cells if c.source.strip()]
    assert "**Learning goals" in cells[0].source, f"{name}: the first cell must state the learning goals"
    heads = [i for i, c in enumerate(cells) if c.cell_type == "markdown" and c.source.lstrip().startswith("## Exercises")]
    assert len(heads) == 1, f"{name}: needs one '## Exercises' section"
    exercises = re.findall(r"^\d\. ", cells[heads[0]].source, re.M)
    assert 2 <= len(exercises) <= 3, f"{name}: two or three exercises, found {len(exercises)}"
    answers = "\n".join(c.source for c in cells[heads[0] + 1:] if c.cell_type == "code")
    assert answers.count("assert ") >= len(exercises), f"{name}: every exercise's answer must be checked by an assert"


def test_every_notebook_is_in_the_index():
    index = (NOTEBOOK_DIR / "README.md").read_text()
    missing = [name for name in NOTEBOOKS if f"[`{name}.py`]({name}.py)" not in index]
    assert not missing, f"notebooks/README.md does not list {missing}"


def test_a_notebook_runs_through_a_jupyter_kernel_with_its_figure_inline(tmp_path):
    pytest.importorskip("nbclient", reason="the kernel run needs the [notebooks] extra")
    pytest.importorskip("ipykernel", reason="the kernel run needs the [notebooks] extra")
    build = tmp_path / "build"
    proc = driver("stationary_steps", "--quick", "--kernel", "--out", str(tmp_path / "figures"), "--build", str(build))
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr[-4000:]}"
    notebook = json.loads((build / "stationary_steps.ipynb").read_text())
    outputs = [o for c in notebook["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the figure, inline
    assert not any(o.get("output_type") == "error" for o in outputs)
    assert (tmp_path / "figures" / "stationary_steps.png").is_file()  # and saved as without a kernel
    assert [p.name for p in build.iterdir()] == ["stationary_steps.ipynb"]  # no temporary left
