"""AdaPM, our reconstruction (adams/adapm.py): block roles, state sizes, the reductions to AdamW and
Adam-mini, and the low-rank momentum and its bias correction against direct computations."""
from __future__ import annotations

import math

import pytest
import torch

import adams
from adams.adapm import DEFAULT_MOMENTUM, AdaPM, Block, classify, state_formula
from analysis.training.gpt import GPT, GPTConfig

ALL_FULL = {role: "full" for role in DEFAULT_MOMENTUM}


def gpt(dtype=torch.float64, seed=0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return GPT(GPTConfig(vocab=11, block=8, layers=2, heads=2, width=8)).to(dtype)


def hf_gpt2():
    transformers = pytest.importorskip("transformers", reason="the Hugging Face layout needs the [hf] extra")
    config = transformers.GPT2Config(vocab_size=13, n_positions=8, n_embd=8, n_layer=2, n_head=2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return transformers.GPT2LMHeadModel(config).double()


def set_gradients(model, step, seed=0):
    gen = torch.Generator().manual_seed(seed * 1000 + step)
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=gen, dtype=p.dtype) + 0.2 * math.sin(step)


def roles_of(model):
    return {name: [b.role for b in classify(name, p.shape)] for name, p in model.named_parameters()}


def test_the_package_gpt_gets_the_summary_roles():
    roles = roles_of(gpt())
    assert roles["wte.weight"] == ["embedding"] and roles["wpe.weight"] == ["position"]
    for layer in (0, 1):
        h = f"h.{layer}."
        assert [roles[h + f"attn.{x}_proj.weight"][0] for x in "qkvo"] == ["query", "key", "value", "attn_out"]
        assert roles[h + "mlp.0.weight"] == roles[h + "mlp.2.weight"] == ["mlp"]
        assert roles[h + "ln_1.weight"] == ["norm"] and roles[h + "mlp.0.bias"] == ["bias"]
    designs = {DEFAULT_MOMENTUM[r] for name, rs in roles.items() for r in rs if "attn.v_proj" in name}
    assert designs == {"full"}


def test_hugging_face_gpt2_splits_the_fused_attention_into_query_key_and_value():
    model = hf_gpt2()
    blocks = {name: classify(name, p.shape) for name, p in model.named_parameters()}
    assert blocks["transformer.h.0.attn.c_attn.weight"] == [Block("query", True, 0, 8), Block("key", True, 8, 16),
                                                           Block("value", True, 16, 24)]
    assert blocks["transformer.h.0.attn.c_proj.weight"] == [Block("attn_out", True)]
    assert blocks["transformer.h.1.mlp.c_fc.weight"] == blocks["transformer.h.1.mlp.c_proj.weight"] == [Block("mlp", True)]
    assert blocks["transformer.wte.weight"] == [Block("embedding")]  # tied with lm_head: listed once
    assert blocks["transformer.wpe.weight"] == [Block("position")]
    assert blocks["transformer.h.0.attn.c_attn.bias"] == [Block("bias")]
    assert blocks["transformer.ln_f.weight"] == [Block("norm")]


@pytest.mark.parametrize("layout", ["gpt", "gpt2"])
@pytest.mark.parametrize("second_moment", ["full", "mini"])
@pytest.mark.parametrize("rank", [1, 3])
def test_state_sizes_follow_the_formula_block_by_block(layout, second_moment, rank):
    model = gpt() if layout == "gpt" else hf_gpt2()
    opt = AdaPM(model.named_parameters(), second_moment=second_moment, rank=rank, n_heads=2)
    set_gradients(model, 1)
    opt.step()
    for name, p in model.named_parameters():
        blocks = classify(name, p.shape)
        want = state_formula(p.shape, blocks, momentum=DEFAULT_MOMENTUM, rank=rank, second_moment=second_moment,
                             n_heads=2)
        got = {kind: sum(v.numel() for k, v in opt.state[p].items() if k.startswith(kind))
               for kind in ("momentum", "second_moment")}
        assert got == want, name
    bytes_by_key = adams.state_bytes(opt, by_key=True)
    total = sum(v for k, v in bytes_by_key.items() if k != "step")
    formula = sum(sum(state_formula(p.shape, classify(n, p.shape), momentum=DEFAULT_MOMENTUM, rank=rank,
                                    second_moment=second_moment, n_heads=2).values())
                  for n, p in model.named_parameters())
    assert total == 8 * formula  # float64


def test_worked_formula_for_one_layer():
    # q_proj 8x8, rank 1: 8 momentum values; mini: one value per head
    assert state_formula((8, 8), [Block("query")], momentum=DEFAULT_MOMENTUM, rank=1, second_moment="mini",
                         n_heads=2) == {"momentum": 8, "second_moment": 2}
    # GPT-2 c_attn (in 8, out 24): q, k low-rank (8 each), v full (64); full second moment 192
    assert state_formula((8, 24), classify("h.0.attn.c_attn.weight", (8, 24)), momentum=DEFAULT_MOMENTUM, rank=1,
                         second_moment="full", n_heads=2) == {"momentum": 80, "second_moment": 192}
    assert state_formula((11, 8), [Block("embedding")], momentum=DEFAULT_MOMENTUM, rank=1, second_moment="mini",
                         n_heads=2) == {"momentum": 0, "second_moment": 11}


def assert_same_trajectory(ours, theirs, a, b, steps=10):
    """Both optimizers fed the same gradients for ``steps`` steps; the weights agree to 1e-13."""
    for t in range(1, steps + 1):
        for model in (a, b):
            set_gradients(model, t)
        ours.step()
        theirs.step()
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-13, atol=1e-15, msg=name)


def test_full_momentum_everywhere_with_adams_second_moment_is_adamw():
    a, b = gpt(), gpt()
    ours = adams.make_optimizer("adapm", a.named_parameters(), lr=3e-3, weight_decay=0.1, momentum=ALL_FULL)
    adamw = adams.make_optimizer("adamw", b.named_parameters(), lr=3e-3, weight_decay=0.1, foreach=False)
    assert_same_trajectory(ours, adamw, a, b)


def test_full_momentum_everywhere_with_the_mini_second_moment_is_adam_mini():
    pytest.importorskip("adam_mini", reason="Adam-mini comes with the [analysis] extra")
    a, b = gpt(), gpt()
    ours = adams.make_optimizer("adapm-mini", a.named_parameters(), lr=3e-3, weight_decay=0.1, n_heads=2,
                                momentum=ALL_FULL)
    mini = adams.make_optimizer("adam-mini", b.named_parameters(), lr=3e-3, weight_decay=0.1, model_dim=8, n_heads=2)
    assert_same_trajectory(ours, mini, a, b)


def test_the_comparisons_above_can_fail():
    """With the default (partial) designs the optimizer is not AdamW: the equality tests have power."""
    a, b = gpt(), gpt()
    ours = adams.make_optimizer("adapm", a.named_parameters(), lr=3e-3)
    adamw = adams.make_optimizer("adamw", b.named_parameters(), lr=3e-3, foreach=False)
    for t in (1, 2):
        for model in (a, b):
            set_gradients(model, t)
        ours.step()
        adamw.step()
    assert not torch.allclose(a.h[0].attn.q_proj.weight, b.h[0].attn.q_proj.weight, rtol=1e-6, atol=0)


@pytest.mark.parametrize("bias_correction", [True, False])
@pytest.mark.parametrize("rank", [1, 2, 5])
def test_low_rank_momentum_and_its_bias_correction_against_a_direct_computation(bias_correction, rank):
    """D = G - G P P^T + (Mtilde / c1) P^T with P the orthonormal group-mean basis, written as a
    matrix here; Adam's second moment; three steps."""
    rows, cols, lr, (b1, b2) = 4, 7, 0.1, (0.9, 0.95)
    w = torch.zeros(rows, cols, dtype=torch.float64, requires_grad=True)
    opt = AdaPM([("mlp.fc.weight", w)], lr=lr, betas=(b1, b2), eps=0.0, rank=rank, bias_correction=bias_correction)
    bounds = [round(j * cols / rank) for j in range(rank + 1)]
    P = torch.zeros(cols, rank, dtype=torch.float64)
    for j in range(rank):
        P[bounds[j]:bounds[j + 1], j] = 1 / math.sqrt(bounds[j + 1] - bounds[j])
    torch.testing.assert_close(P.T @ P, torch.eye(rank, dtype=torch.float64))
    gen = torch.Generator().manual_seed(rank)
    m, v, want = torch.zeros(rows, rank, dtype=torch.float64), torch.zeros(rows, cols, dtype=torch.float64), w.detach().clone()
    for t in range(1, 4):
        g = torch.randn(rows, cols, generator=gen, dtype=torch.float64)
        w.grad = g.clone()
        opt.step()
        m = b1 * m + (1 - b1) * g @ P
        v = b2 * v + (1 - b2) * g * g
        c1 = 1 - b1**t if bias_correction else 1.0
        d = g - g @ P @ P.T + (m / c1) @ P.T
        want -= lr * d / (v / (1 - b2**t)).sqrt()
        torch.testing.assert_close(w.detach(), want, rtol=1e-13, atol=1e-15)
        if t == 1 and bias_correction:  # debiased: the first direction is the gradient itself
            torch.testing.assert_close(d, g)
    assert tuple(opt.state[w]["momentum"].shape) == (rows, rank)


def test_bias_correction_matters_on_the_first_steps():
    """Under a constant gradient the debiased direction is the gradient at every step; without the
    correction the momentum part of step t is shrunk by 1 - beta1^t."""
    g = torch.tensor([[1.0, 3.0], [2.0, -2.0]], dtype=torch.float64)
    out = {}
    for corrected in (True, False):
        w = torch.zeros(2, 2, dtype=torch.float64, requires_grad=True)
        opt = AdaPM([("mlp.fc.weight", w)], lr=1.0, betas=(0.9, 0.0), eps=0.0, bias_correction=corrected)
        w.grad = g.clone()
        opt.step()
        out[corrected] = -w.detach() * g.abs()  # the direction, times |g| / |g| (beta2 = 0: v = g^2)
    torch.testing.assert_close(out[True], g)
    mean = g.mean(dim=1, keepdim=True)
    torch.testing.assert_close(out[False], g - mean + 0.1 * mean)


def test_rank_equal_to_the_fan_in_is_full_momentum():
    a, b = gpt(), gpt()
    full = AdaPM(a.named_parameters(), lr=1e-2, momentum={"query": "full", "key": "full", "mlp": "full"})
    wide = AdaPM(b.named_parameters(), lr=1e-2, rank=10_000)  # capped at each block's fan-in
    for t in range(1, 6):
        for model in (a, b):
            set_gradients(model, t)
        full.step()
        wide.step()
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)


def test_a_model_it_cannot_place_gets_an_error_naming_the_parameters_and_takes_a_mapping():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    with pytest.raises(ValueError, match=r"no role for 0\.weight; no role for 1\.weight\. Pass roles="):
        AdaPM(model.named_parameters())
    opt = AdaPM(model.named_parameters(), roles={"0.weight": "mlp", "1.weight": "head"})
    set_gradients(model.double(), 1)
    opt.step()
    assert tuple(opt.state[model[0].weight]["momentum"].shape) == (4, 1)
    assert "momentum" not in opt.state[model[1].weight]
    with pytest.raises(TypeError, match="named_parameters"):
        AdaPM(model.parameters())
    with pytest.raises(TypeError, match="partitions parameters by name"):
        adams.make_optimizer("adapm", list(model.parameters()))
    with pytest.raises(ValueError, match="n_heads"):
        AdaPM(gpt().named_parameters(), second_moment="mini", n_heads=3)
    with pytest.raises(TypeError, match="adapm-mini needs n_heads"):
        adams.make_optimizer("adapm-mini", gpt().named_parameters())
    with pytest.raises(ValueError, match="not a role"):
        AdaPM(gpt().named_parameters(), momentum={"value": "half"})


def test_both_configurations_are_labelled_reconstructions():
    assert AdaPM.name == "AdaPM (reconstruction)"
    assert adams.registry.LABELS["adapm"] == "AdaPM (reconstruction)"
    assert "reconstruction" in adams.registry.LABELS["adapm-mini"]
    assert adams.registry.REVISIONS["adapm"] >= 2  # runs of the uniform design are not read as this one's


def test_the_training_loops_momentum_norm_reads_every_block():
    """analysis.training's momentum_norm: with full momentum everywhere it is AdamW's; with the
    default design it is the norm of the momentum matrices, low-rank ones expanded (their buffers hold
    coefficients in an orthonormal basis, so the buffers' norm is the matrices')."""
    from analysis.training import momentum_norm

    a, b, c = gpt(), gpt(), gpt()
    full = AdaPM(a.named_parameters(), lr=1e-3, momentum=ALL_FULL)
    adamw = torch.optim.AdamW(b.parameters(), lr=1e-3)
    default = AdaPM(c.named_parameters(), lr=1e-3)
    for t in (1, 2, 3):
        for model in (a, b, c):
            set_gradients(model, t)
        for opt in (full, adamw, default):
            opt.step()
    assert momentum_norm(full) == pytest.approx(momentum_norm(adamw), rel=1e-12)
    from adams.adapm import _expand, _groups

    want = 0.0  # the momentum matrices themselves: low-rank ones expanded to (rows, fan-in)
    for p in c.parameters():
        for key, value in default.state[p].items():
            if key.startswith("momentum"):
                cols = p.reshape(p.shape[0], -1).shape[1] if p.dim() > 1 else 1
                if value.shape[-1] != cols and p.dim() > 1:
                    value = _expand(value, _groups(cols, value.shape[1]), cols)
                want += float((value**2).sum())
    norm = momentum_norm(default)
    assert norm == pytest.approx(math.sqrt(want), rel=1e-12) and 0 < norm < momentum_norm(full)


def test_a_group_added_later_is_placed_too_or_refused_whole():
    model = torch.nn.ModuleDict({"wte": torch.nn.Embedding(4, 3), "mlp": torch.nn.Linear(3, 5)})
    opt = AdaPM([("wte.weight", model.wte.weight)])
    opt.add_param_group({"params": list(model.mlp.named_parameters(prefix="mlp")), "weight_decay": 0.1})
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    opt.step()
    assert "momentum" not in opt.state[model.wte.weight]
    assert tuple(opt.state[model.mlp.weight]["momentum"].shape) == (5, 1)
    with pytest.raises(ValueError, match="no role for extra.weight"):
        opt.add_param_group({"params": [("extra.weight", torch.nn.Parameter(torch.ones(2, 2)))]})
    assert len(opt.param_groups) == 2
