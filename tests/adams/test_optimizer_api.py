"""AdamS behaves as a drop-in ``torch.optim`` optimizer."""
import copy
import io

import numpy as np
import pytest
import torch

import adams
from adams.reference import AdamSReference

PATHS = [dict(foreach=False, fused=False), dict(foreach=True), dict(fused=True)]
PATH_IDS = ["forloop", "foreach", "fused"]


def _model(seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)).to(dtype)


def _loss(model, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(16, 5, generator=gen, dtype=next(model.parameters()).dtype)
    return model(x).pow(2).mean()


def _train(model, opt, steps, start=0):
    for i in range(start, start + steps):
        opt.zero_grad()
        _loss(model, i).backward()
        opt.step()


@pytest.mark.parametrize("path", PATHS, ids=PATH_IDS)
def test_state_dict_round_trip_continues_bit_identically(path):
    model_a = _model()
    opt_a = adams.AdamS(model_a.parameters(), lr=1e-2, **path)
    _train(model_a, opt_a, 20)

    buffer = io.BytesIO()
    torch.save({"model": model_a.state_dict(), "optimizer": opt_a.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)  # no pickled code is needed to load it
    model_b = _model(seed=123)
    model_b.load_state_dict(saved["model"])
    opt_b = adams.AdamS(model_b.parameters(), lr=1e-2, **path)
    opt_b.load_state_dict(saved["optimizer"])

    _train(model_a, opt_a, 20, start=20)
    _train(model_b, opt_b, 20, start=20)
    for pa, pb in zip(model_a.parameters(), model_b.parameters()):
        assert torch.equal(pa, pb)
        assert torch.equal(opt_a.state[pa]["exp_avg"], opt_b.state[pb]["exp_avg"])
        assert opt_a.state[pa]["step"].item() == opt_b.state[pb]["step"].item() == 40


def test_state_holds_only_step_and_momentum():
    model = _model()
    opt = adams.AdamS(model.parameters())
    _train(model, opt, 3)
    for p in model.parameters():
        assert set(opt.state[p]) == {"step", "exp_avg"}
        assert opt.state[p]["exp_avg"].shape == p.shape


def test_state_bytes_half_of_adamw_and_equal_to_params():
    model = _model()
    n_tensors = len(list(model.parameters()))
    p_bytes = adams.param_bytes(model.parameters())
    opts = {
        "adams": adams.AdamS(model.parameters()),
        "adamw": torch.optim.AdamW(model.parameters()),
        "sgdm": torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
    }
    for opt in opts.values():
        _train(model, opt, 2)
    by_key = {name: adams.state_bytes(opt, by_key=True) for name, opt in opts.items()}
    buffers = {name: sum(v for k, v in d.items() if k != "step") for name, d in by_key.items()}
    assert buffers["adams"] == p_bytes  # 1.0x the parameter bytes
    assert buffers["adamw"] == 2 * p_bytes  # so AdamS is 0.5x AdamW
    assert buffers["sgdm"] == p_bytes
    # the totals differ only by the 4-byte step counters, one per tensor
    assert adams.state_bytes(opts["adams"]) == p_bytes + 4 * n_tensors
    assert adams.state_bytes(opts["adamw"]) == 2 * p_bytes + 4 * n_tensors


def test_param_groups_use_their_own_hyperparameters():
    w1 = torch.nn.Parameter(torch.tensor([1.0, -1.0], dtype=torch.float64))
    w2 = torch.nn.Parameter(torch.tensor([0.5, 2.0], dtype=torch.float64))
    opt = adams.AdamS(
        [{"params": [w1]}, {"params": [w2], "lr": 0.05, "betas": (0.8, 0.9), "weight_decay": 0.0,
                            "bias_correction": False}],
        lr=0.01, weight_decay=0.1,
    )
    ref1 = AdamSReference(lr=0.01, weight_decay=0.1)
    ref2 = AdamSReference(lr=0.05, betas=(0.8, 0.9), weight_decay=0.0, bias_correction=False)
    x1, x2 = w1.detach().numpy().copy(), w2.detach().numpy().copy()
    for t in range(10):
        g1, g2 = np.array([t + 1.0, -0.5]), np.array([np.cos(t), 1.0])
        w1.grad, w2.grad = torch.from_numpy(g1), torch.from_numpy(g2)
        opt.step()
        x1, x2 = ref1.step(x1, g1), ref2.step(x2, g2)
    np.testing.assert_allclose(w1.detach().numpy(), x1, rtol=1e-12)
    np.testing.assert_allclose(w2.detach().numpy(), x2, rtol=1e-12)


def test_closure_is_called_with_grad_enabled_and_loss_returned():
    model = _model()
    opt = adams.AdamS(model.parameters())
    seen = []

    def closure():
        opt.zero_grad()
        seen.append(torch.is_grad_enabled())
        loss = _loss(model, 0)
        loss.backward()
        return loss

    with torch.no_grad():  # step() must enable grad for the closure itself
        loss = opt.step(closure)
    assert seen == [True] and loss.grad_fn is not None
    assert all(len(opt.state[p]) == 2 for p in model.parameters())


@pytest.mark.parametrize("path", PATHS, ids=PATH_IDS)
def test_missing_and_zero_gradients_as_torch_does(path):
    a = torch.nn.Parameter(torch.ones(3))
    b = torch.nn.Parameter(torch.ones(3))
    opt = adams.AdamS([a, b], lr=0.1, weight_decay=0.5, **path)
    a.grad = torch.zeros(3)  # b.grad stays None
    opt.step()
    assert b not in opt.state and torch.equal(b.detach(), torch.ones(3))
    assert opt.state[a]["step"].item() == 1
    # a zero gradient still takes a step: the decoupled decay applies, the update is 0 / (0 + eps)
    torch.testing.assert_close(a.detach(), torch.full((3,), 1 - 0.1 * 0.5))


def test_deepcopy_gives_an_independent_optimizer():
    model = _model()
    opt = adams.AdamS(model.parameters(), nonfinite="skip")
    _train(model, opt, 3)
    clone = copy.deepcopy(opt)
    assert clone.nonfinite == "skip"
    p = next(model.parameters())
    cp = clone.param_groups[0]["params"][0]
    assert torch.equal(clone.state[cp]["exp_avg"], opt.state[p]["exp_avg"])
    assert clone.state[cp]["exp_avg"].data_ptr() != opt.state[p]["exp_avg"].data_ptr()


@pytest.mark.parametrize("path", PATHS, ids=PATH_IDS)
def test_tensor_learning_rate_equals_float_learning_rate(path):
    runs = []
    lr_tensor = torch.tensor(1e-2)  # float32: not exactly 1e-2, so compare with its own value
    for lr in (lr_tensor.item(), lr_tensor):
        model = _model()
        opt = adams.AdamS(model.parameters(), lr=lr, **path)
        _train(model, opt, 5)
        runs.append([p.detach().clone() for p in model.parameters()])
    for a, b in zip(*runs):
        assert torch.equal(a, b)


def test_sparse_gradient_is_a_clear_error():
    emb = torch.nn.Embedding(10, 3, sparse=True)
    opt = adams.AdamS(emb.parameters())
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match="sparse gradients"):
        opt.step()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(lr=-1e-3), "lr=-0.001"),
        (dict(betas=(1.0, 0.95)), r"betas\[0\]=1.0"),
        (dict(betas=(0.9, -0.1)), r"betas\[1\]=-0.1"),
        (dict(betas=(0.9, 1.0)), r"betas\[1\]=1.0"),
        (dict(eps=-1e-8), "eps=-1e-08"),
        (dict(weight_decay=-0.1), "weight_decay=-0.1"),
        (dict(lr=float("nan")), "lr=nan"),
        (dict(nonfinite="ignore"), "nonfinite"),
    ],
)
def test_invalid_hyperparameters_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        adams.AdamS([torch.nn.Parameter(torch.zeros(1))], **kwargs)


def test_invalid_hyperparameters_in_an_added_group():
    opt = adams.AdamS([torch.nn.Parameter(torch.zeros(1))])
    with pytest.raises(ValueError, match="weight_decay=-1"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(1))], "weight_decay": -1})


@pytest.mark.parametrize("as_saved", [lambda t: int(t.item()), lambda t: t.double()], ids=["int", "float64"])
@pytest.mark.parametrize("path", PATHS, ids=PATH_IDS)
def test_step_counters_of_another_type_are_normalized_on_load(path, as_saved):
    """A state whose counters are Python ints or float64 tensors (older or hand-made checkpoints)
    loads, and training continues exactly as from the float32 counters AdamS writes."""
    model_a = _model()
    opt_a = adams.AdamS(model_a.parameters(), lr=1e-2, **path)
    _train(model_a, opt_a, 7)
    saved = copy.deepcopy(opt_a.state_dict())
    for param_state in saved["state"].values():
        param_state["step"] = as_saved(param_state["step"])
    model_b = copy.deepcopy(model_a)
    opt_b = adams.AdamS(model_b.parameters(), lr=1e-2, **path)
    opt_b.load_state_dict(saved)
    for p in model_b.parameters():
        step = opt_b.state[p]["step"]
        assert isinstance(step, torch.Tensor) and step.dtype == torch.float32 and step.item() == 7
    _train(model_a, opt_a, 5, start=7)
    _train(model_b, opt_b, 5, start=7)
    for pa, pb in zip(model_a.parameters(), model_b.parameters()):
        assert torch.equal(pa, pb)
