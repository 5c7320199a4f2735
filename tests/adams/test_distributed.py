"""AdamS under torch.distributed on CPU (gloo): DDP and FSDP2 against one process, sharded state,
sharded checkpoints (same and smaller world size), the fused path on DTensor shards, Adam-mini."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

import adams
import distributed_scenarios as S
from adams.distributed import CheckpointError, load_checkpoint, save_checkpoint, state_bytes_per_rank
from adams.functional import local_shards

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
# float32 runs agree to round-off: measured differences are 3e-6 (AdamS) and 2e-7 (AdamW) after 4 steps
# that move the weights by 0.1; float64 runs of the same scenarios must agree to 1e-12
TOL = {"float32": 1e-5, "float64": 1e-12}


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run([sys.executable, str(ROOT / "tests" / "adams" / "distributed_scenarios.py"), str(out)], env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    results = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]
    results[0]["out"] = out
    return results


@pytest.fixture(scope="module")
def reference():
    """The same training, in this process, on the whole batch."""
    runs = {}
    for name in ("adams", "adamw"):
        for dtype in (torch.float32, torch.float64):
            model = S.make_model("none", dtype)
            S.train(model, S.scenario_optimizer(name, model), range(S.STEPS))
            runs[f"{name}/{str(dtype)[6:]}"] = {n: p.detach().clone() for n, p in model.named_parameters()}
    model = S.make_model("none")
    S.train(model, S.scenario_optimizer("adam-mini", model), range(S.STEPS))
    runs["adam-mini"] = {n: p.detach().clone() for n, p in model.named_parameters()}
    return runs


def test_every_process_ends_with_the_same_full_parameters(ranks):
    r0, r1 = ranks
    compared = [k for k, v in r0.items() if isinstance(v, dict) and v and all(torch.is_tensor(t) for t in v.values())]
    assert len(compared) >= 15
    for key in compared:
        assert max_diff(r0[key], r1[key]) == 0.0, key


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", ["adams", "adamw"])
@pytest.mark.parametrize("how", ["ddp", "fsdp"])
def test_two_processes_match_one_process_on_the_global_batch(ranks, reference, how, name, dtype):
    ours, single = ranks[0][f"{how}/{name}/{dtype}"], reference[f"{name}/{dtype}"]
    assert max_diff(ours, single) <= TOL[dtype]
    init = {n: p.detach().to(getattr(torch, dtype)) for n, p in S.make_model("none").named_parameters()}
    assert max_diff(single, init) > 0.03  # the runs did move (4 steps of lr 0.01): agreement is not trivial


def test_power_a_wrong_gradient_average_would_be_caught(reference):
    """Summing instead of averaging the two halves' gradients (a classic DDP slip) moves the float64 run
    far outside the tolerance: AdamS is scale-invariant only up to eps and weight decay, AdamW is not."""
    model = S.make_model("none", torch.float64)
    optimizer = S.scenario_optimizer("adamw", model)
    for step in range(S.STEPS):
        optimizer.zero_grad(set_to_none=True)
        for rank in range(2):
            S.backward(model, step, rank, 2)  # accumulates: the sum of the two local means
        optimizer.step()
    wrong = {n: p.detach() for n, p in model.named_parameters()}
    assert max_diff(wrong, reference["adamw/float64"]) > 1e3 * TOL["float64"]


def test_fsdp2_shards_the_momentum_and_adams_holds_half_of_adamw_on_every_process(ranks):
    for rank, r in enumerate(ranks):
        ours, theirs = r["fsdp/adams/state_bytes_by_key"], r["fsdp/adamw/state_bytes_by_key"]
        assert ours["exp_avg"] == r["fsdp/adams/param_bytes"]  # one buffer the size of this process's shards
        assert ours["exp_avg"] / (theirs["exp_avg"] + theirs["exp_avg_sq"]) == 0.5
        assert ours["step"] == theirs["step"]  # one float32 counter per parameter tensor, in both
        total = r["fsdp/adams/state_bytes_per_rank"][rank] / r["fsdp/adamw/state_bytes_per_rank"][rank]
        assert 0.5 < total < 0.51
        assert r["fsdp/adams/state_bytes_per_rank"] == ranks[0]["fsdp/adams/state_bytes_per_rank"]
    local = [r["fsdp/adams-fused/exp_avg_local_numel"] for r in ranks]
    assert sum(local) == ranks[0]["fsdp/adams-fused/numel"]  # the shards partition the model
    assert max(local) - min(local) <= 2 * 8 * 16  # uneven only by the odd rows of a few tensors


def test_fused_kernel_runs_on_dtensor_shards_without_a_warning(ranks):
    for r in ranks:
        assert r["fsdp/adams-fused/kernel_calls"] == S.STEPS * 2  # one call per parameter group and step
        assert r["fsdp/adams-fused/warnings"] == []
        assert r["fsdp/adams-foreach/kernel_calls"] == 0
    assert max_diff(ranks[0]["fsdp/adams-fused"], ranks[0]["fsdp/adams-foreach"]) <= TOL["float32"]
    assert max_diff(ranks[0]["fsdp/adams-fused"], ranks[0]["fsdp/adams/float32"]) == 0.0  # the default path


def test_checkpoint_resumes_bit_identically_on_the_same_number_of_processes(ranks):
    r = ranks[0]
    assert r["ckpt/extra"] == {"step": 2}
    assert max_diff(r["ckpt/loaded_params"], r["ckpt/saved_params"]) == 0.0
    assert max_diff(r["ckpt/loaded_exp_avg"], r["ckpt/saved_exp_avg"]) == 0.0
    assert max_diff(r["ckpt/resumed"], r["ckpt/continued"]) == 0.0


def test_checkpoint_of_two_processes_resumes_on_one(ranks):
    """2 -> 1: the loaded state is bit-identical; the next steps agree to float32 round-off, since one
    process reduces the batch's loss in another order than two processes averaging their halves."""
    r = ranks[0]
    model = S.make_model("none")
    optimizer = S.scenario_optimizer("adams", model)
    assert load_checkpoint(r["out"] / "ckpt", model, optimizer) == {"step": 2}
    assert max_diff({n: p.detach() for n, p in model.named_parameters()}, r["ckpt/saved_params"]) == 0.0
    assert max_diff(S.full_momentum(model, optimizer), r["ckpt/saved_exp_avg"]) == 0.0
    assert all(float(optimizer.state[p]["step"]) == 2.0 for p in model.parameters())
    S.train(model, optimizer, range(2, S.STEPS))
    resumed = {n: p.detach() for n, p in model.named_parameters()}
    assert max_diff(resumed, r["ckpt/continued"]) <= TOL["float32"]
    assert max_diff(resumed, r["ckpt/saved_params"]) > 0.01


def test_a_nonfinite_gradient_on_one_process_makes_every_process_skip(ranks):
    for r in ranks:
        assert r["nonfinite/skipped_steps"] == 1
        assert r["nonfinite/unchanged"] is True


def test_adam_mini_runs_under_fsdp2_when_heads_split_evenly_and_fails_clearly_otherwise(ranks, reference):
    r = ranks[0]
    assert max_diff(r["fsdp/adam-mini/2heads"], reference["adam-mini"]) <= TOL["float32"]
    error = r["fsdp/adam-mini/3heads/error"]
    assert error.startswith("ValueError: adam-mini cannot run on this sharding")
    assert "3 heads do not divide over the 2 shards" in error


def test_launch_reports_a_failing_process_and_stops_the_others():
    from analysis.training.distributed import launch

    with pytest.raises(RuntimeError, match=r"(?s)failed on [12] of 2 processes.*rank 1 .*ArithmeticError: rank one gives up"):
        launch(S.fails_on_rank_one, 2, threads=1, timeout=120)
    with pytest.raises(TimeoutError, match="did not finish within 3 s"):
        launch(S.sleeps, 2, 60.0, threads=1, timeout=3)
    with pytest.raises(ValueError, match="not a module-level function"):
        launch(lambda rank, world: rank, 2)


# ---- in one process: a one-process gloo group and DTensors on a mesh of one -----------------------

@pytest.fixture
def mesh(tmp_path):
    from torch.distributed.device_mesh import init_device_mesh

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        yield init_device_mesh("cpu", (1,))
    finally:
        dist.destroy_process_group()


def test_adams_on_dtensor_parameters_equals_adams_on_plain_tensors(mesh):
    from torch.distributed.tensor import Shard, distribute_tensor

    g = torch.Generator().manual_seed(0)
    w0, grads = torch.randn(6, 5, generator=g), [torch.randn(6, 5, generator=g) for _ in range(3)]
    plain = torch.nn.Parameter(w0.clone())
    sharded = torch.nn.Parameter(distribute_tensor(w0.clone(), mesh, [Shard(0)]))
    opts = [adams.AdamS([plain], lr=0.1), adams.AdamS([sharded], lr=0.1)]
    for grad in grads:
        plain.grad = grad.clone()
        sharded.grad = distribute_tensor(grad.clone(), mesh, [Shard(0)])
        for opt in opts:
            opt.step()
    assert torch.equal(sharded.full_tensor(), plain.detach())
    assert torch.equal(opts[1].state[sharded]["exp_avg"].full_tensor(), opts[0].state[plain]["exp_avg"])


def test_local_shards_redistributes_a_gradient_and_rejects_what_cannot_be_updated_in_place(mesh):
    from torch.distributed.tensor import Replicate, Shard, distribute_tensor

    w = distribute_tensor(torch.ones(4, 2), mesh, [Shard(0)])
    g = distribute_tensor(torch.full((4, 2), 2.0), mesh, [Replicate()])
    m = distribute_tensor(torch.zeros(4, 2), mesh, [Shard(0)])
    ws, gs, ms = local_shards([w], [g], [m])
    assert type(ws[0]) is torch.Tensor and torch.equal(gs[0], torch.full((4, 2), 2.0))
    ws[0].add_(1.0)  # the shard is the DTensor's memory
    assert torch.equal(w.full_tensor(), torch.full((4, 2), 2.0))
    with pytest.raises(ValueError, match="all three must be DTensors or all plain tensors"):
        local_shards([w], [torch.ones(4, 2)], [m])
    with pytest.raises(ValueError, match="the momentum must be laid out as its parameter"):
        local_shards([w], [g], [distribute_tensor(torch.zeros(4, 2), mesh, [Replicate()])])


def test_step_warns_once_when_no_parameter_has_a_gradient():
    """The trap of making the optimizer before fully_shard replaces the parameters: a silent no-op."""
    opt = adams.AdamS([torch.nn.Parameter(torch.ones(3))])
    with pytest.warns(UserWarning, match="make the optimizer after wrapping"):
        opt.step()
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opt.step()  # once only


# ---- adams.distributed in one process ---------------------------------------------------------

def _trained(seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    opt = adams.AdamS(model.parameters(), lr=0.1)
    model(torch.ones(5, 3)).square().sum().backward()
    opt.step()
    return model, opt


def test_save_refuses_to_overwrite_and_is_atomic(tmp_path):
    model, opt = _trained()
    path = save_checkpoint(tmp_path / "c", model, opt, extra={"step": 1, "lr": 0.5})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]  # no .partial left behind
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_checkpoint(path, model, opt)
    save_checkpoint(path, model, opt, extra={"step": 2}, overwrite=True)
    assert load_checkpoint(path, *_trained(1)) == {"step": 2}
    with pytest.raises(TypeError, match=r"extra\['note'\] is a str"):
        save_checkpoint(tmp_path / "d", model, opt, extra={"note": "text"})
    assert not (tmp_path / "d").exists() and not (tmp_path / "d.partial").exists()


def test_load_names_an_incomplete_or_mismatched_checkpoint(tmp_path):
    model, opt = _trained()
    (tmp_path / "c.partial").mkdir()
    with pytest.raises(CheckpointError, match="no .metadata file.*interrupted save"):
        load_checkpoint(tmp_path / "c", model, opt)
    save_checkpoint(tmp_path / "model-only", model)
    with pytest.raises(CheckpointError, match="holds no optimizer state"):
        load_checkpoint(tmp_path / "model-only", model, opt)
    assert load_checkpoint(tmp_path / "model-only", _trained(1)[0]) == {}
    save_checkpoint(tmp_path / "full", model, opt)
    smaller = torch.nn.Sequential(torch.nn.Linear(3, 4))
    with pytest.raises(CheckpointError, match="this model does not have: 2.bias, 2.weight"):
        load_checkpoint(tmp_path / "full", smaller, adams.AdamS(smaller.parameters()))
    wider = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2))
    with pytest.raises(CheckpointError, match="cannot load .* into this model"):
        load_checkpoint(tmp_path / "full", wider, adams.AdamS(wider.parameters()))


class _Payload:
    """Unpickling this would run code (here: flip a flag)."""

    ran = False

    def __reduce__(self):
        return (setattr, (_Payload, "ran", True))


def test_load_never_unpickles_code(tmp_path):
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model, opt = _trained()
    model_state, optim_state = get_state_dict(model, opt)
    optim_state["param_groups"][0]["lr"] = _Payload()  # a hyperparameter a loader reads back
    with pytest.warns(UserWarning):  # DCP: no process group, so one process
        dcp.save({"model": model_state, "optim": optim_state, "extra": {}}, checkpoint_id=str(tmp_path / "evil"))
    with pytest.raises(CheckpointError, match="'optim.param_groups.*lr' of the checkpoint is not plain data"):
        load_checkpoint(tmp_path / "evil", *_trained(1), verify=False)  # made by DCP directly: no digests
    assert _Payload.ran is False
    with pytest.warns(UserWarning):
        dcp.load({"model": model_state, "optim": optim_state}, checkpoint_id=str(tmp_path / "evil"))
    assert _Payload.ran is True  # power: DCP's own loader would have run it
    _Payload.ran = False


def test_a_checkpoint_saved_before_the_first_step_resumes_as_a_fresh_start(tmp_path):
    """DCP would fill the missing state by a zero-learning-rate step: step 1 recorded, and 0/0 = NaN
    written into the weights when eps = 0. The saved state must be AdamS's own initial state."""
    def fresh():
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 2)
        return model, adams.AdamS(model.parameters(), lr=0.1, eps=0.0)

    model, opt = fresh()
    save_checkpoint(tmp_path / "c", model, opt)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    loaded, loaded_opt = fresh()
    load_checkpoint(tmp_path / "c", loaded, loaded_opt)
    assert all(float(s["step"]) == 0.0 for s in loaded_opt.state.values())
    reference, reference_opt = fresh()
    for m, o in ((loaded, loaded_opt), (reference, reference_opt)):
        for _ in range(3):
            o.zero_grad()
            m(torch.ones(4, 3)).square().sum().backward()
            o.step()
    assert all(torch.equal(a, b) for a, b in zip(loaded.parameters(), reference.parameters()))


def test_state_bytes_per_rank_without_a_process_group():
    _, opt = _trained()
    assert state_bytes_per_rank(opt) == [adams.state_bytes(opt)]


# ---- the example: 2 processes with FSDP2, then resumed on 1 -----------------------------------

def test_example_trains_on_two_processes_as_on_one_and_resumes_on_one(tmp_path):
    from analysis.training import TrainConfig, train

    example = [sys.executable, str(ROOT / "examples" / "train_fsdp.py"), "--steps", "6", "--checkpoint-dir",
               str(tmp_path / "ckpt")]
    first = subprocess.run([*example, "--save-every", "3", "--json", str(tmp_path / "a.json")], env=ENV,
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-4000:]
    assert "rank 1: optimizer state" in first.stdout
    (two,) = json.loads((tmp_path / "a.json").read_text())
    assert [Path(c).name for c in two["checkpoints"]] == ["step_000003", "step_000006"]

    # the sharded checkpoints probe as they are, with the example's own model and batches
    probe = subprocess.run([sys.executable, "-m", "smoothness", "probe", *two["checkpoints"][::-1], "--model",
                            f"{ROOT / 'examples' / 'train_fsdp.py'}:model", "--data",
                            f"{ROOT / 'examples' / 'train_fsdp.py'}:batches", "--blocks", "none", "--no-hessian",
                            "--out", str(tmp_path / "probes.csv")], env=ENV, capture_output=True, text=True, timeout=300)
    assert probe.returncode == 0, probe.stderr[-4000:]
    import pandas as pd
    probes = pd.read_csv(tmp_path / "probes.csv")
    assert probes["step"].tolist() == [3, 6] and probes["momentum_norm"].gt(0).all()
    assert probes["step_length"].iloc[0] > 0

    single = train(TrainConfig(steps=6, warmup=6), cache_dir=tmp_path / "cache", progress=False)
    assert two["val_loss"] == pytest.approx(single.evals["val_loss"], abs=1e-5)
    assert two["train_loss"][0] == pytest.approx(single.history["train_loss"][0], abs=1e-5)

    import shutil
    shutil.rmtree(tmp_path / "ckpt" / "step_000006")
    resumed = subprocess.run([*example, "--nproc", "1", "--resume", "--save-every", "3", "--json",
                              str(tmp_path / "b.json")], env=ENV, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    (one,) = json.loads((tmp_path / "b.json").read_text())
    assert one["resumed_from"] == 3 and one["world_size"] == 1
    assert one["val_loss"][-1] == pytest.approx(two["val_loss"][-1], abs=1e-5)
    assert one["state_bytes_per_rank"][0] == pytest.approx(sum(two["state_bytes_per_rank"]), abs=4 * 64)

    other = subprocess.run([*example, "--nproc", "1", "--resume", "--lr", "1e-3"], env=ENV, capture_output=True,
                           text=True, timeout=300)
    assert other.returncode != 0 and "written by another configuration" in other.stderr


def test_devices_other_than_cpu_and_available_gpus_are_refused_before_launching():
    from analysis.training import TrainConfig
    from analysis.training.distributed import launch, train_distributed

    with pytest.raises(ValueError, match="'cpu' \\(gloo\\) or 'cuda' \\(NCCL\\), got device 'meta'"):
        train_distributed(TrainConfig(steps=2, warmup=0, batch_size=4, device="meta"), world_size=2)
    if torch.cuda.device_count() < 2:
        with pytest.raises(ValueError, match="a GPU, but"):
            train_distributed(TrainConfig(steps=2, warmup=0, batch_size=4, device="cuda"), world_size=2)
    with pytest.raises(ValueError, match="backend must be 'gloo' or 'nccl'"):
        launch(print, 1, backend="mpi")
