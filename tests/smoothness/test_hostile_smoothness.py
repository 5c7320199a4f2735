"""Hostile input to the smoothness probe: each bad checkpoint, table, path or flag gets a clear error
that names it, raised before anything is probed or written; two writers never share one table."""
from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

import smoothness
from smoothness.checkpoints import CheckpointError, load_checkpoint
from smoothness.cli import main as cli_main
from smoothness.frontier import frontier_band
from smoothness.trajectory import read_table, write_table

REPO_ROOT = Path(__file__).resolve().parents[2]
PROBLEM = textwrap.dedent(
    """
    import torch

    def factory():
        torch.manual_seed(0)
        return torch.nn.Linear(8, 64)

    def batches():
        g = torch.Generator().manual_seed(1)
        return (torch.randn(16, 8, generator=g), torch.randint(0, 64, (16,), generator=g))
    """
)
PROBLEM_NAMESPACE: dict = {}
exec(PROBLEM, PROBLEM_NAMESPACE)
factory, batch = PROBLEM_NAMESPACE["factory"], PROBLEM_NAMESPACE["batches"]


def loss_fn(model, batch):
    return torch.nn.functional.cross_entropy(model(batch[0]), batch[1])


@pytest.fixture()
def run(tmp_path):
    """Three checkpoints (steps 0, 1, 2) of an AdamW run, in tmp_path/ckpts, and the module naming the problem."""
    (tmp_path / "hostile_problem.py").write_text(PROBLEM)
    (tmp_path / "ckpts").mkdir()
    model = factory()
    opt = torch.optim.AdamW(model.named_parameters(), lr=0.05)
    paths = []
    for step in range(3):
        paths.append(tmp_path / "ckpts" / f"step_{step}.pt")
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step}, paths[-1])
        opt.zero_grad()
        loss_fn(model, batch()).backward()
        opt.step()
    return tmp_path, paths


def probe(paths, out, **kwargs):
    return smoothness.probe_trajectory(factory, loss_fn, batch(), paths, blocks=None, hessian=False, out=out,
                                       progress=False, **kwargs)


@pytest.fixture()
def probe_calls(monkeypatch):
    """Counts the points probed (the expensive part), to show that a refused run probed none."""
    calls = []
    original = smoothness.trajectory.probe_point
    monkeypatch.setattr(smoothness.trajectory, "probe_point", lambda *a, **k: calls.append(1) or original(*a, **k))
    return calls


def literal(path) -> str:
    """A path as a regular expression that matches exactly it."""
    return re.escape(str(path))


def cli(argv, capsys):
    """Run the command line in-process: (exit code, stdout, stderr). An escaping exception fails the test."""
    code = cli_main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code, err, *needles):
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err
    for needle in needles:
        assert needle in err, err


def cli_probe(tmp_path, paths, out, capsys):
    """``python -m smoothness probe`` on the run's problem, the fast way (no blocks, no Hessian)."""
    module = tmp_path / "hostile_problem.py"
    return cli(["probe", "--model", f"{module}:factory", "--data", f"{module}:batches", *paths, "--out", out,
                "--blocks", "none", "--no-hessian"], capsys)


# --- momentum shapes -------------------------------------------------------------------------------


def test_safetensors_momentum_of_the_wrong_shape_is_refused(tmp_path):
    state = {k: v.contiguous() for k, v in factory().state_dict().items()}
    save_file({**state, "optimizer.exp_avg.weight": torch.ones(3)}, tmp_path / "c.safetensors")
    with pytest.raises(CheckpointError, match=r"c\.safetensors: momentum for 'weight' has shape \(3,\), "
                                              r"the parameter has shape \(64, 8\)"):
        load_checkpoint(tmp_path / "c.safetensors", factory())


@pytest.mark.parametrize("named", [True, False])
def test_torch_momentum_of_the_wrong_shape_is_refused(tmp_path, named):
    """Named groups: a shape error; unnamed ones: the order cannot be matched. Both name file, parameter, shapes."""
    model = factory()
    opt = torch.optim.AdamW(model.named_parameters() if named else model.parameters(), lr=0.1)
    loss_fn(model, batch()).backward()
    opt.step()
    state = opt.state_dict()
    state["state"][0]["exp_avg"] = torch.ones(3)
    torch.save({"model": model.state_dict(), "optimizer": state}, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match=r"c\.pt: .*momentum for 'weight' has shape \(3,\).*\(64, 8\)"):
        load_checkpoint(tmp_path / "c.pt", factory())


def optimizer_state():
    """A model after one AdamW step and the optimizer's state_dict (named parameter groups)."""
    model = factory()
    opt = torch.optim.AdamW(model.named_parameters(), lr=0.1)
    loss_fn(model, batch()).backward()
    opt.step()
    return model, opt.state_dict()


MALFORMED = {
    "state is a list": (lambda s: s.update(state=[]), r"optimizer entry 'state' is of type list"),
    "param_groups is an int": (lambda s: s.update(param_groups=5), r"optimizer entry 'param_groups' is of type int"),
    "a group without params": (lambda s: s["param_groups"][0].pop("params"), r"'param_groups\[0\]' has no list"),
    "a buffer dict that is a tensor": (lambda s: s["state"].update({0: torch.ones(64, 8)}),
                                       r"'state\[0\]' \(parameter 'weight'\) is of type Tensor"),
    "exp_avg a list": (lambda s: s["state"][0].update(exp_avg=[1.0, 2.0]),
                       r"'state\[0\]\['exp_avg'\]' \(parameter 'weight'\) is of type list"),
    "param_names too short": (lambda s: s["param_groups"][0].update(param_names=["weight"]),
                              r"'param_groups\[0\]\['param_names'\]' is not a list of 2 names"),
    "integer momentum": (lambda s: s["state"][0].update(exp_avg=torch.ones(64, 8, dtype=torch.long)),
                         r"momentum for 'weight' has dtype torch.int64"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_optimizer_entry_is_named(tmp_path, case):
    damage, message = MALFORMED[case]
    model, state = optimizer_state()
    damage(state)
    torch.save({"model": model.state_dict(), "optimizer": state}, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match=rf"c\.pt: .*{message}"):
        load_checkpoint(tmp_path / "c.pt", factory())


def test_command_line_reports_a_malformed_optimizer_in_one_line(run, capsys, probe_calls):
    tmp_path, paths = run
    model, state = optimizer_state()
    state["param_groups"] = 5
    torch.save({"model": model.state_dict(), "optimizer": state}, paths[1])
    code, out, err = cli_probe(tmp_path, paths, tmp_path / "t.csv", capsys)
    assert_one_line_error(code, err, str(paths[1]), "'param_groups'")
    assert probe_calls == [] and not (tmp_path / "t.csv").exists()


# --- one writer at a time ------------------------------------------------------------------------


def test_a_second_writer_is_refused_before_probing_and_leaves_the_lock(run, probe_calls, capsys):
    tmp_path, paths = run
    out = tmp_path / "t.csv"
    lock = tmp_path / "t.csv.lock"
    lock.write_text(f"{os.getpid()}\n")  # the first writer, still running
    with pytest.raises(ValueError, match=rf"{literal(lock)}: .*process {os.getpid()}.*delete"):
        probe(paths, out)
    code, stdout, err = cli_probe(tmp_path, paths, out, capsys)
    assert_one_line_error(code, err, str(lock), "delete")
    assert "wrote" not in stdout
    assert probe_calls == [] and not out.exists()
    assert lock.read_text() == f"{os.getpid()}\n"  # the first writer's lock is not the second's to remove


def test_the_lock_is_held_while_probing_and_released_after_success_or_failure(run, monkeypatch):
    tmp_path, paths = run
    out, lock = tmp_path / "t.csv", tmp_path / "t.csv.lock"
    original = smoothness.trajectory.probe_point
    seen = []

    def checking(*args, **kwargs):
        seen.append(lock.read_text())
        if len(seen) == 2:
            raise RuntimeError("simulated crash")
        return original(*args, **kwargs)

    monkeypatch.setattr(smoothness.trajectory, "probe_point", checking)
    with pytest.raises(RuntimeError, match="simulated"):
        probe(paths, out)
    assert seen == [f"{os.getpid()}\n"] * 2 and not lock.exists()
    monkeypatch.setattr(smoothness.trajectory, "probe_point", original)
    probe(paths, out)
    assert not lock.exists() and len(read_table(out)) == 3


def test_a_stale_lock_is_named_as_stale(run, probe_calls):
    tmp_path, paths = run
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / "t.csv.lock").write_text(dead.stdout)
    stale = rf"process {dead.stdout.strip()}, which is no longer running"
    with pytest.raises(ValueError, match=stale):
        probe(paths, tmp_path / "t.csv")
    assert probe_calls == []


# --- rows keyed by the checkpoint file -----------------------------------------------------------


def test_relative_absolute_and_symlinked_paths_name_the_same_checkpoints(run, monkeypatch, probe_calls):
    tmp_path, paths = run
    out = tmp_path / "t.csv"
    monkeypatch.chdir(tmp_path)
    probe([Path("ckpts") / p.name for p in paths], Path("t.csv"))
    assert len(probe_calls) == 3
    first = read_table(out)
    probe(paths, out)  # absolute
    (tmp_path / "alias").symlink_to(tmp_path / "ckpts")
    probe([tmp_path / "alias" / p.name for p in paths], out)
    assert len(probe_calls) == 3  # nothing probed again
    again = read_table(out)
    assert len(again) == 3
    pd.testing.assert_frame_equal(again, first)
    assert list(again["checkpoint_resolved"]) == [str(p.resolve()) for p in paths]
    assert list(again["checkpoint_size"]) == [p.stat().st_size for p in paths]
    assert list(again["checkpoint_mtime_ns"]) == [p.stat().st_mtime_ns for p in paths]


def test_a_checkpoint_changed_on_disk_is_not_taken_as_probed(run, probe_calls):
    tmp_path, paths = run
    out = tmp_path / "t.csv"
    probe(paths, out)
    before = out.read_bytes()
    content = torch.load(paths[1], weights_only=True)
    content["model"]["bias"] += 1.0
    torch.save(content, paths[1])
    os.utime(paths[1], ns=(paths[1].stat().st_atime_ns, paths[1].stat().st_mtime_ns + 10**9))
    changed = rf"{literal(out)}: has rows for {literal(paths[1].resolve())} .*changed since"
    with pytest.raises(ValueError, match=changed):
        probe(paths, out)
    assert len(probe_calls) == 3 and out.read_bytes() == before


def test_a_table_without_identity_columns_is_read_but_not_resumed(run, probe_calls, capsys):
    tmp_path, paths = run
    out = tmp_path / "t.csv"
    probe(paths, out)
    table = read_table(out)
    write_table(table.drop(columns=[c for c in table if c.startswith(("checkpoint_", "next_checkpoint_"))]), out)
    with pytest.raises(ValueError, match=rf"{literal(out)}: lacks the checkpoint identity columns"):
        probe(paths, out)
    assert len(probe_calls) == 3
    code, stdout, _ = cli(["fit", out, "--measure", "fd_smoothness", "--n-boot", "20"], capsys)
    assert code == 0 and "L0*(L1)" in stdout


def test_the_same_checkpoint_given_twice_is_refused(run, monkeypatch, probe_calls):
    tmp_path, paths = run
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=rf"{literal(paths[0])}: the same checkpoint file as ckpts/step_0\.pt"):
        probe([Path("ckpts/step_0.pt"), paths[0], paths[1]], None)
    assert probe_calls == []


# --- the output path, checked before probing ------------------------------------------------------


@pytest.mark.parametrize("where,message", [("folder", "is a folder"), ("under_a_file", "is a file, not a folder")])
def test_an_unusable_out_is_refused_before_the_first_probe(run, probe_calls, capsys, where, message):
    tmp_path, paths = run
    if where == "folder":
        out = tmp_path / "t.csv"
        out.mkdir()
    else:
        (tmp_path / "plain").write_text("a file")
        out = tmp_path / "plain" / "t.csv"
    with pytest.raises(ValueError, match=message):
        probe(paths, out)
    code, _, err = cli_probe(tmp_path, paths, out, capsys)
    assert_one_line_error(code, err, str(out), message)
    assert probe_calls == []
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["ckpts", "hostile_problem.py", out.name
                                                                 if where == "folder" else "plain"])


def test_a_read_only_folder_is_refused_before_the_first_probe(run, probe_calls, monkeypatch):
    tmp_path, paths = run
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    if os.geteuid() == 0:  # root may write anywhere: show the check what another user would see
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda path, mode: real_access(path, mode) and not (
            Path(path) == ro and mode & os.W_OK))
    try:
        with pytest.raises(ValueError, match="is not writable"):
            probe(paths, ro / "t.csv")
    finally:
        ro.chmod(0o755)
    assert probe_calls == []


def test_fit_and_plot_check_their_outputs_before_writing(tmp_path, capsys):
    table = small_table(tmp_path)
    (tmp_path / "taken").mkdir()
    code, stdout, err = cli(["fit", table, "--json", tmp_path / "taken"], capsys)
    assert_one_line_error(code, err, str(tmp_path / "taken"), "is a folder")
    assert stdout == ""
    code, _, err = cli(["plot", table, "--out", tmp_path / "taken"], capsys)
    assert_one_line_error(code, err, str(tmp_path / "taken"), "is a folder")


# --- fit: --n-boot and truncated tables -----------------------------------------------------------


def small_table(tmp_path) -> Path:
    """A probe table with 6 points of the whole model, written as probe would."""
    rng = np.random.default_rng(0)
    g = rng.lognormal(size=6)
    table = pd.DataFrame({"checkpoint": [f"step_{i}.pt" for i in range(6)], "block": "all", "step": range(6),
                          "grad_norm": g, "momentum_norm": g / 2, "fd_smoothness": 1 + g * rng.uniform(1, 2, 6),
                          "gammas": "[0.25, 0.5, 0.75]"})
    return write_table(table, tmp_path / "table.csv")


@pytest.mark.parametrize("n_boot", [0, -5])
def test_fit_refuses_too_few_bootstrap_resamples(tmp_path, capsys, n_boot):
    code, stdout, err = cli(["fit", small_table(tmp_path), "--n-boot", n_boot], capsys)
    assert_one_line_error(code, err, "--n-boot", f"got {n_boot}")
    assert stdout == ""
    with pytest.raises(ValueError, match=f"n_boot must be an integer >= 1, got {n_boot}"):
        frontier_band([1.0, 2.0], [1.0, 2.0], [0.0], n_boot=n_boot)


def test_fit_with_a_single_resample_works(tmp_path, capsys):
    code, stdout, _ = cli(["fit", small_table(tmp_path), "--n-boot", 1], capsys)
    assert code == 0 and "90% band" in stdout


def cut_in_last_field(text):
    return text[:-4]  # the last row loses the end of its last value and its newline


def drop_fields_of_row_3(text):
    lines = text.splitlines(keepends=True)
    lines[3] = ",".join(lines[3].split(",")[:3]) + "\n"
    return "".join(lines)


def cut_mid_row(text):
    lines = text.splitlines(keepends=True)
    return "".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 3]


@pytest.mark.parametrize("damage,message", [
    (cut_in_last_field, r"the last row \(line 7\) ends without a newline"),
    (drop_fields_of_row_3, r"row 3 \(line 4\) has 3 fields, the header 7"),
    (cut_mid_row, r"row 6 \(line 7\) has \d fields, the header 7"),
])
def test_a_truncated_table_is_refused(tmp_path, capsys, damage, message):
    path = small_table(tmp_path)
    path.write_text(damage(path.read_text()))
    with pytest.raises(ValueError, match=rf"{literal(path)}: {message}"):
        read_table(path)
    code, stdout, err = cli(["fit", path], capsys)
    assert_one_line_error(code, err, str(path), "row")
    assert stdout == ""


def test_a_resumed_table_that_was_cut_off_is_refused_before_probing(run, probe_calls):
    tmp_path, paths = run
    out = tmp_path / "t.csv"
    probe(paths[:2], out)
    out.write_text(cut_mid_row(out.read_text()))
    with pytest.raises(ValueError, match=rf"{literal(out)}: row 2 \(line 3\)"):
        probe(paths, out)
    assert len(probe_calls) == 2


def test_the_command_line_exits_without_a_traceback(tmp_path):
    """The real entry point: exit code 2 and a single line on stderr."""
    done = subprocess.run([sys.executable, "-m", "smoothness", "fit", str(small_table(tmp_path)), "--n-boot", "0"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == "error: --n-boot must be at least 1 (bootstrap resamples), got 0\n"


# ---- after review: garbage checkpoints, bad --model files, a symlinked --out ----

@pytest.mark.parametrize("content", [b".", bytes(range(256)) * 4, b"PK\x03\x04" + b"\0" * 64])
def test_garbage_in_a_checkpoint_file_is_a_checkpoint_error(tmp_path, content):
    path = tmp_path / "garbage.pt"
    path.write_bytes(content)
    with pytest.raises(smoothness.CheckpointError, match="cannot be read as a torch checkpoint|refused"):
        smoothness.load_checkpoint(path, torch.nn.Linear(2, 1))


def test_a_folder_that_is_not_a_hugging_face_checkpoint_says_what_it_lacks(tmp_path):
    with pytest.raises(smoothness.CheckpointError, match="a folder without model.safetensors"):
        smoothness.load_checkpoint(tmp_path, torch.nn.Linear(2, 1))


@pytest.mark.parametrize("reference, message", [
    ("nonexistent.py:f", "no such file"),
    ("{problem}:no_such_function", "has no attribute 'no_such_function'"),
    ("{broken}:factory", "running it failed: SyntaxError"),
    ("no_such_package_xyz.module:f", "cannot import 'no_such_package_xyz.module'"),
])
def test_a_bad_model_reference_ends_in_one_line_and_exit_code_2(tmp_path, capsys, reference, message):
    from smoothness.cli import main

    problem = tmp_path / "problem.py"
    problem.write_text("def factory():\n    return None\n")
    broken = tmp_path / "broken.py"
    broken.write_text("def factory(:\n")
    reference = reference.format(problem=problem, broken=broken)
    code = main(["probe", str(problem), "--model", reference, "--data", f"{problem}:factory",
                 "--out", str(tmp_path / "t.csv")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ") and message in err, err


def test_a_symlinked_out_is_locked_and_written_through_its_target(run, probe_calls):
    tmp_path, paths = run
    target = tmp_path / "probes.csv"
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    held = target.with_name(target.name + ".lock")
    held.write_text("999999\n")
    with pytest.raises(ValueError, match="is being written by"):
        probe(paths, link)
    assert probe_calls == []
    held.unlink()
    probe(paths, link)
    assert link.is_symlink() and target.is_file()
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
