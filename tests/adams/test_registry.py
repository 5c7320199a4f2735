"""One battery for every optimizer in adams.make_optimizer's registry."""
from __future__ import annotations

import io

import pytest
import torch

import adams
from analysis.training.gpt import GPT, GPTConfig

CFG = GPTConfig(vocab=16, block=8, layers=1, heads=2, width=16)


def problem(seed=0):
    """A tiny GPT and a fixed batch of a deterministic sequence it can learn."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT(CFG)
    x = torch.arange(64).reshape(8, 8) % CFG.vocab
    return model, x, (x + 1) % CFG.vocab


def loss_of(model, x, y):
    return torch.nn.functional.cross_entropy(model(x).reshape(-1, CFG.vocab), y.reshape(-1))


def make(name, model, **hp):
    extra = {"adam-mini": {"model_dim": CFG.width, "n_heads": CFG.heads},
             "adapm-mini": {"n_heads": CFG.heads}}.get(name, {})
    return adams.make_optimizer(name, model.named_parameters(), **{"lr": 1e-2, **hp}, **extra)


def run(model, opt, x, y, steps):
    losses = []
    for _ in range(steps):
        loss = loss_of(model, x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("name", list(adams.OPTIMIZERS))
def test_loss_goes_down(name):
    model, x, y = problem()
    losses = run(model, make(name, model, lr=0.1 if name == "sgdm" else 1e-2), x, y, 40)
    assert losses[-1] < 0.5 * losses[0], losses[::10]


@pytest.mark.parametrize("name", list(adams.OPTIMIZERS))
def test_state_dict_round_trip_continues_identically(name):
    model, x, y = problem()
    opt = make(name, model)
    run(model, opt, x, y, 3)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    run(model, opt, x, y, 3)

    clone, _, _ = problem(seed=1)  # different weights, overwritten by the load
    clone.load_state_dict(saved["model"])
    opt2 = make(name, clone)
    opt2.load_state_dict(saved["optimizer"])
    run(clone, opt2, x, y, 3)
    for a, b in zip(model.parameters(), clone.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("name", list(adams.OPTIMIZERS))
def test_state_bytes_are_reported(name):
    model, x, y = problem()
    opt = make(name, model)
    assert adams.state_bytes(opt) == 0
    run(model, opt, x, y, 1)
    n = sum(p.numel() for p in model.parameters())
    measured = adams.state_bytes(opt)
    expected_floats = {"adams": n, "adamw": 2 * n, "sgdm": n}  # plus step counters for the adaptive ones
    if name in expected_floats:
        assert 4 * expected_floats[name] <= measured <= 4 * expected_floats[name] + 8 * len(list(model.parameters()))
    elif name == "adam-mini":
        assert 4 * n < measured < 1.2 * 4 * n  # full m plus a tiny v
    else:  # AdaPM: the formula of adams.adapm, block by block (tested in detail in test_adapm.py)
        from adams.adapm import DEFAULT_MOMENTUM, classify, state_formula

        second = "mini" if name == "adapm-mini" else "full"
        floats = sum(sum(state_formula(p.shape, classify(k, p.shape), momentum=DEFAULT_MOMENTUM, rank=1,
                                       second_moment=second, n_heads=CFG.heads).values())
                     for k, p in model.named_parameters())
        params = list(model.parameters())
        assert measured == 4 * floats + 4 * len(params)  # float32 step counters
        assert measured < (0.6 if second == "full" else 0.25) * 4 * 2 * n  # against AdamW's state


def test_weight_decay_goes_to_matrices_only():
    model, _, _ = problem()
    opt = make("adams", model, weight_decay=0.1)
    decayed = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    for name, p in model.named_parameters():
        assert (id(p) in decayed) == (p.dim() >= 2), name


def test_registry_errors_are_clear():
    model, _, _ = problem()
    with pytest.raises(ValueError, match="unknown optimizer 'lion'"):
        adams.make_optimizer("lion", model.named_parameters())
    with pytest.raises(TypeError, match="adam-mini partitions parameters by name"):
        adams.make_optimizer("adam-mini", list(model.parameters()), model_dim=16, n_heads=2)
    with pytest.raises(TypeError, match="model_dim"):
        adams.make_optimizer("adam-mini", model.named_parameters())
    with pytest.raises(ValueError, match="no parameters"):
        adams.make_optimizer("adamw", [])
