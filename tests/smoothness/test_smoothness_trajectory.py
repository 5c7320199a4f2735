"""probe_trajectory and the command line on checkpoints written by a real (tiny) training loop."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import adams
import smoothness
from smoothness.cli import main as cli_main
from smoothness.trajectory import read_table

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL_FILE = textwrap.dedent(
    """
    import torch

    def factory():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))

    def batches():
        g = torch.Generator().manual_seed(1)
        return [(torch.randn(64, 6, generator=g), torch.randint(0, 3, (64,), generator=g)) for _ in range(2)]
    """
)


@pytest.fixture()
def run(tmp_path):
    """A user's module with model and data, and 5 checkpoints of an AdamS run on it."""
    (tmp_path / "problem.py").write_text(MODEL_FILE)
    namespace: dict = {}
    exec(MODEL_FILE, namespace)
    model = namespace["factory"]()
    opt = adams.AdamS(model.named_parameters(), lr=0.05)
    x, y = namespace["batches"]()[0]
    paths = []
    for step in range(0, 9):
        if step % 2 == 0:
            paths.append(tmp_path / f"ckpt_{step}.pt")
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step}, paths[-1])
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return tmp_path, namespace, paths


def probe(namespace, paths, **kwargs):
    return smoothness.probe_trajectory(namespace["factory"], smoothness.cross_entropy_loss, namespace["batches"](),
                                       paths, progress=False, **kwargs)


def test_probe_trajectory_table_has_every_quantity_and_its_settings(run):
    tmp_path, namespace, paths = run
    table = probe(namespace, list(reversed(paths)), blocks="tensor")  # sorted back by the recorded step
    whole = table[table["block"] == "all"]
    assert list(whole["step"]) == [0, 2, 4, 6, 8]
    assert whole["next_checkpoint"].iloc[-1] == "" and whole["fd_smoothness"].iloc[-1] != whole["fd_smoothness"].iloc[-1]
    assert whole["fd_smoothness"].iloc[:-1].gt(0).all() and whole["hessian_converged"].all()
    assert pd.isna(whole["momentum_norm"].iloc[0])  # no optimizer state before the first step
    assert whole["momentum_norm"].iloc[1:].gt(0).all()
    assert set(table["block"]) == {"all", "0.weight", "0.bias", "2.weight", "2.bias"}
    for column in ("mode", "dtype", "seed", "n_batches", "gammas", "tol", "hvp_method", "step_length", "curvature"):
        assert column in table
    assert (table["n_batches"] == 2).all() and (table["mode"] == "eval").all()


def test_spectral_norms_are_warm_started_from_the_checkpoint_before(run):
    _, namespace, paths = run
    warm = probe(namespace, paths, blocks="tensor", block_hessian=True, tol=1e-6, warm_start=True)
    cold = probe(namespace, paths, blocks="tensor", block_hessian=True, tol=1e-6)
    from smoothness.hessian import DENSE_BELOW

    first, dense = warm["step"] == 0, warm["n_params"] < DENSE_BELOW  # the dense path has no start
    assert dense.any() and not warm.loc[first | dense, "hessian_warm_start"].any()
    assert warm.loc[~first & ~dense, "hessian_warm_start"].all()
    assert not cold["hessian_warm_start"].any()
    np.testing.assert_allclose(warm["hessian_norm"], cold["hessian_norm"], rtol=1e-5)


def test_rerun_skips_done_checkpoints_and_new_ones_extend_the_table(run, monkeypatch):
    tmp_path, namespace, paths = run
    out = tmp_path / "probes.csv"
    probe(namespace, paths[:3], out=out, blocks=None)
    calls = []
    original = smoothness.trajectory.probe_point
    monkeypatch.setattr(smoothness.trajectory, "probe_point", lambda *a, **k: calls.append(1) or original(*a, **k))
    probe(namespace, paths[:3], out=out, blocks=None)
    assert calls == []  # nothing to redo
    with pytest.warns(UserWarning, match="replaced"):
        table = probe(namespace, paths, out=out, blocks=None)
    # the old last checkpoint now has a successor: it is probed again with it, plus the two new ones,
    # and its old row (no successor) is gone, so every checkpoint has one row
    assert len(calls) == 3
    assert read_table(out).equals(table) or len(read_table(out)) == len(table)
    pairs = set(zip(table["checkpoint"], table["next_checkpoint"].fillna("")))
    assert (str(paths[2]), str(paths[3])) in pairs and (str(paths[2]), "") not in pairs
    assert sorted(table["checkpoint"]) == sorted(map(str, paths))


def test_a_crash_leaves_the_previous_complete_file(run, monkeypatch):
    tmp_path, namespace, paths = run
    out = tmp_path / "probes.csv"
    original = smoothness.trajectory.probe_point
    calls = []

    def crash_on_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("simulated crash")
        return original(*args, **kwargs)

    monkeypatch.setattr(smoothness.trajectory, "probe_point", crash_on_third)
    with pytest.raises(RuntimeError, match="simulated"):
        probe(namespace, paths, out=out, blocks=None)
    written = pd.read_csv(out)
    assert len(written) == 2 and list(written["step"]) == [0, 2]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_settings_must_match_to_resume(run):
    tmp_path, namespace, paths = run
    out = tmp_path / "probes.csv"
    probe(namespace, paths[:2], out=out, blocks=None)
    with pytest.raises(ValueError, match="mode"):
        probe(namespace, paths[:2], out=out, blocks=None, mode="train")


def test_a_bad_checkpoint_stops_before_anything_is_written(run):
    tmp_path, namespace, paths = run
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(paths[1].read_bytes()[:100])
    out = tmp_path / "probes.csv"
    with pytest.raises(smoothness.CheckpointError, match="truncated.pt"):
        probe(namespace, [paths[0], bad], out=out)
    assert not out.exists()


def test_command_line_probe_fit_plot(run):
    tmp_path, _, paths = run
    out = tmp_path / "results.csv"
    env_cmd = [sys.executable, "-m", "smoothness"]
    probe_cmd = env_cmd + ["probe", "--model", f"{tmp_path / 'problem.py'}:factory",
                           "--data", f"{tmp_path / 'problem.py'}:batches", *map(str, paths), "--out", str(out),
                           "--blocks", "layer"]
    done = subprocess.run(probe_cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "5 checkpoints" in done.stdout
    table = read_table(out)
    assert (table["hvp_method"] == "double backward (one graph)").all() and not table["hessian_warm_start"].any()
    warm = subprocess.run(probe_cmd[:-1] + ["none", "--warm-start", "--out", str(tmp_path / "warm.csv")], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300)
    assert warm.returncode == 0, warm.stderr
    assert read_table(tmp_path / "warm.csv")["hessian_warm_start"].tolist() == [False] + [True] * 4
    fit = subprocess.run(env_cmd + ["fit", str(out), "--json", str(tmp_path / "fit.json")], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=300)
    assert fit.returncode == 0, fit.stderr
    assert "L0*(L1)" in fit.stdout and "not a bound" in fit.stdout
    assert cli_main(["plot", str(out), "--out", str(tmp_path / "plot.png"), "--measure", "hessian_norm"]) == 0
    assert (tmp_path / "plot.png").stat().st_size > 0
    assert cli_main(["fit", str(tmp_path / "missing.csv")]) == 2  # a clear error, not a traceback


def test_readme_command_line_example_runs_as_written(tmp_path):
    """The README's smoothness block, line by line, with runs/demo moved into a temporary directory."""
    text = (REPO_ROOT / "README.md").read_text()
    block = text.split("<!-- smoothness-cli")[1].split("```bash\n")[1].split("```")[0]
    lines = [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]
    assert len(lines) == 4
    for line in lines:
        command = line.replace("runs/demo", str(tmp_path / "demo"))
        done = subprocess.run(command.replace("python ", f"{sys.executable} ", 1), shell=True, cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{line}\n{done.stderr[-2000:]}"
    assert (tmp_path / "demo" / "smoothness.png").stat().st_size > 0
    assert len(read_table(tmp_path / "demo" / "probes.csv")["checkpoint"].unique()) == 6


# ---- devices and streaming ---------------------------------------------------------------------

def _devices():
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", _devices())
def test_float64_probes_agree_across_devices(run, device):
    _, namespace, paths = run
    kwargs = dict(blocks=None, dtype=torch.float64, tol=1e-8)
    here = probe(namespace, paths[:3], **kwargs)
    there = probe(namespace, paths[:3], device=device, **kwargs)
    assert set(there["device"]) == {str(torch.device(device)) if device == "cpu" else f"{device}:0"}
    for column in ("loss", "grad_norm", "momentum_norm", "fd_smoothness", "curvature", "hessian_norm"):
        np.testing.assert_allclose(there[column], here[column], rtol=1e-9, atol=1e-12, err_msg=column)


def test_devices_that_cannot_hold_a_probe_are_refused_before_anything_is_read(run, monkeypatch):
    _, namespace, paths = run
    monkeypatch.setattr(smoothness.trajectory, "load_checkpoint", lambda *a, **k: pytest.fail("read a checkpoint"))
    with pytest.raises(ValueError, match="'meta' holds shapes without values"):
        probe(namespace, paths, device="meta")
    with pytest.raises(ValueError, match="not a device name"):
        probe(namespace, paths, device="gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            probe(namespace, paths, device="cuda")


def test_checkpoints_are_streamed_two_at_a_time(run, monkeypatch):
    import gc
    import weakref

    _, namespace, paths = run
    alive, loads = [], []
    original_load, original_probe = smoothness.trajectory.load_checkpoint, smoothness.trajectory.probe_point

    def load(path, *args, **kwargs):
        checkpoint = original_load(path, *args, **kwargs)
        loads.append(Path(path).name)
        alive.append(weakref.ref(checkpoint))
        return checkpoint

    def probe_point(*args, **kwargs):
        gc.collect()
        held.append(sum(ref() is not None for ref in alive))
        return original_probe(*args, **kwargs)

    held: list[int] = []
    monkeypatch.setattr(smoothness.trajectory, "load_checkpoint", load)
    monkeypatch.setattr(smoothness.trajectory, "probe_point", probe_point)
    table = probe(namespace, paths[::-1], blocks=None, hessian=False)
    assert table["step"].tolist() == [0, 2, 4, 6, 8]
    assert max(held) == 2 and held[-1] == 1  # a checkpoint and its successor; the last alone
    names = [p.name for p in paths]
    assert loads == names[::-1] + names  # each validated once, then read once more when probed
