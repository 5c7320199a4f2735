"""smoothness.checkpoints: every accepted format round-trips; every broken file gets a named error."""
from __future__ import annotations

import os

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from smoothness.checkpoints import CheckpointError, load_checkpoint


def make_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


def trained(optimizer_factory, steps=2):
    model = make_model()
    opt = optimizer_factory(model)
    for _ in range(steps):
        model(torch.randn(5, 3)).pow(2).mean().backward()
        opt.step()
        opt.zero_grad()
    return model, opt


def test_plain_state_dict(tmp_path):
    model = make_model()
    torch.save(model.state_dict(), tmp_path / "plain.pt")
    ckpt = load_checkpoint(tmp_path / "plain.pt", make_model())
    assert ckpt.momentum is None and ckpt.step is None
    for k, v in model.state_dict().items():
        torch.testing.assert_close(ckpt.model_state[k], v)


@pytest.mark.parametrize("named", [True, False])
@pytest.mark.parametrize("kind,key", [("adamw", "exp_avg"), ("sgd", "momentum_buffer")])
def test_model_and_optimizer_give_momentum_by_name(tmp_path, kind, key, named):
    def factory(m):
        params = m.named_parameters() if named else m.parameters()
        return torch.optim.AdamW(params, lr=0.1) if kind == "adamw" else torch.optim.SGD(params, lr=0.1, momentum=0.9)

    model, opt = trained(factory)
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": 2, "epoch": 1}, tmp_path / "c.pt")
    ckpt = load_checkpoint(tmp_path / "c.pt", make_model())
    assert ckpt.step == 2 and ckpt.meta == {"epoch": 1}
    for name, p in model.named_parameters():
        torch.testing.assert_close(ckpt.momentum[name], opt.state[p][key])


def test_named_groups_in_another_order_are_matched_by_name(tmp_path):
    model = make_model()
    named = dict(model.named_parameters())
    groups = [{"params": [("2.weight", named["2.weight"]), ("0.bias", named["0.bias"])], "weight_decay": 0.0},
              {"params": [("0.weight", named["0.weight"]), ("2.bias", named["2.bias"])]}]
    opt = torch.optim.AdamW(groups, lr=0.1)
    model(torch.randn(5, 3)).sum().backward()
    opt.step()
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict()}, tmp_path / "c.pt")
    ckpt = load_checkpoint(tmp_path / "c.pt", make_model())
    for name, p in named.items():
        torch.testing.assert_close(ckpt.momentum[name], opt.state[p]["exp_avg"])


def test_unnamed_groups_that_do_not_fit_the_model_order_are_refused(tmp_path):
    model = make_model()
    ps = list(model.parameters())
    opt = torch.optim.AdamW([{"params": [ps[2], ps[1]]}, {"params": [ps[0], ps[3]]}], lr=0.1)
    model(torch.randn(5, 3)).sum().backward()
    opt.step()
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict()}, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match="c.pt.*cannot be matched"):
        load_checkpoint(tmp_path / "c.pt", make_model())


def test_safetensors_with_momentum_and_step(tmp_path):
    model, opt = trained(lambda m: torch.optim.AdamW(m.named_parameters(), lr=0.1))
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    tensors.update({f"optimizer.exp_avg.{n}": opt.state[p]["exp_avg"] for n, p in model.named_parameters()})
    save_file(tensors, tmp_path / "c.safetensors", metadata={"step": "40"})
    ckpt = load_checkpoint(tmp_path / "c.safetensors", make_model())
    assert ckpt.step == 40 and set(ckpt.momentum) == {n for n, _ in model.named_parameters()}
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "m.safetensors")
    assert load_checkpoint(tmp_path / "m.safetensors", make_model()).momentum is None


def test_ddp_and_compile_prefixes_are_stripped(tmp_path):
    state = {f"module._orig_mod.{k}": v for k, v in make_model().state_dict().items()}
    torch.save(state, tmp_path / "ddp.pt")
    assert set(load_checkpoint(tmp_path / "ddp.pt", make_model()).model_state) == set(make_model().state_dict())


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_runs_code_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"model": make_model().state_dict(), "extra": Payload(marker)}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="evil.pt.*refused"):
        load_checkpoint(tmp_path / "evil.pt", make_model())
    assert not marker.exists()


def good_file(tmp_path):
    path = tmp_path / "good.pt"
    torch.save(make_model().state_dict(), path)
    return path


@pytest.mark.parametrize(
    "damage,message",
    [
        (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "truncated or corrupt"),
        (lambda p: p.write_bytes(b""), "empty"),
        (lambda p: p.unlink(), "no such file"),
        (lambda p: torch.save([1, 2, 3], p), "expected a state_dict"),
        (lambda p: torch.save({k: v for k, v in make_model().state_dict().items() if k != "0.bias"}, p), "missing keys: 0.bias"),
        (lambda p: torch.save({**make_model().state_dict(), "extra.weight": torch.ones(1)}, p), "unexpected keys: extra.weight"),
        (lambda p: torch.save({**make_model().state_dict(), "0.weight": torch.ones(4, 2)}, p), "wrong shape for '0.weight'"),
        (lambda p: torch.save({**make_model().state_dict(), "0.bias": torch.tensor([1.0, float("nan"), 0, 0])}, p),
         "'0.bias' has 1 non-finite"),
        (lambda p: torch.save({**make_model().state_dict(), "0.bias": torch.ones(4, dtype=torch.long)}, p), "dtype"),
    ],
)
def test_broken_files_get_an_error_naming_file_and_problem(tmp_path, damage, message):
    path = good_file(tmp_path)
    damage(path)
    with pytest.raises(CheckpointError, match=f"good.pt.*{message}"):
        load_checkpoint(path, make_model())


def test_non_finite_momentum_is_refused(tmp_path):
    model, opt = trained(lambda m: torch.optim.AdamW(m.named_parameters(), lr=0.1))
    next(iter(opt.state.values()))["exp_avg"][0] = float("inf")
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict()}, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match="c.pt.*momentum.*non-finite"):
        load_checkpoint(tmp_path / "c.pt", make_model())


# ---- sharded torch.distributed.checkpoint folders (adams.distributed.save_checkpoint) -------------

def _sharded(tmp_path, name, step, optimizer=True):
    import adams
    from adams.distributed import save_checkpoint

    model, opt = trained(lambda m: adams.AdamS(m.parameters(), lr=0.01), steps=step)
    save_checkpoint(tmp_path / name, model, opt if optimizer else None, extra={"step": step})
    return model, opt


def test_a_sharded_checkpoint_folder_gives_weights_momentum_and_step(tmp_path):
    model, opt = _sharded(tmp_path, "step_3", 3)
    ckpt = load_checkpoint(tmp_path / "step_3", make_model())
    assert ckpt.step == 3
    for name, p in model.named_parameters():
        torch.testing.assert_close(ckpt.model_state[name], p.detach(), rtol=0, atol=0)
        torch.testing.assert_close(ckpt.momentum[name], opt.state[p]["exp_avg"], rtol=0, atol=0)
    assert load_checkpoint(tmp_path / "step_3", make_model(), momentum=False).momentum is None
    _sharded(tmp_path, "weights_only", 2, optimizer=False)
    assert load_checkpoint(tmp_path / "weights_only", make_model()).momentum is None


def test_sharded_checkpoints_probe_in_step_order_and_damage_is_named(tmp_path):
    from smoothness import probe_trajectory

    for step in (12, 3):  # the glob order would put step_12 first
        _sharded(tmp_path, f"step_{step}", step)
    batch = (torch.randn(6, 3, generator=torch.Generator().manual_seed(0)),)
    table = probe_trajectory(make_model, lambda m, b: m(b[0]).pow(2).mean(), batch,
                             sorted(tmp_path.glob("step_*")), blocks=None, hessian=False, progress=False)
    assert table["step"].tolist() == [3, 12] and table["momentum_norm"].notna().all()
    with pytest.raises(CheckpointError, match="does not fit the model"):
        load_checkpoint(tmp_path / "step_3", nn.Linear(3, 2))
    shard = next((tmp_path / "step_3").glob("*.distcp"))
    shard.write_bytes(shard.read_bytes()[:-1] + bytes([shard.read_bytes()[-1] ^ 1]))
    with pytest.raises(CheckpointError, match="damaged"):
        load_checkpoint(tmp_path / "step_3", make_model())
    (tmp_path / "step_12" / "checksums.json").unlink()  # copied without its digests: read, with a warning
    with pytest.warns(UserWarning, match="cannot be verified"):
        assert load_checkpoint(tmp_path / "step_12", make_model()).step == 12
