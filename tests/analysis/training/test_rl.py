"""The RL post-training experiment: the reward, the GRPO objective, one step's effect, the cache and the rules."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from analysis.training import rl


@pytest.mark.parametrize("a, b, text, expected", [
    (482, 37, "519\n", 1.0),
    (482, 37, "519", 0.0),          # no newline: not an answer
    (482, 37, "0519\n", 0.0),       # a leading zero is another string
    (482, 37, "518\n", 0.0),
    (999, 999, "1998\n", 1.0),      # the longest answer
    (0, 0, "0\n", 1.0),
    (5, 5, "10\n7+", 1.0),          # what follows the first newline is ignored
    (5, 5, "\n10\n", 0.0),          # an empty answer
])
def test_reward_checks_the_exact_sum(a, b, text, expected):
    assert rl.reward(a, b, rl.encode(text)) == expected


def test_encode_refuses_foreign_characters_and_prompts_are_held_out_or_not():
    with pytest.raises(ValueError, match="not a character"):
        rl.encode("1-2")
    rng = np.random.default_rng(0)
    assert all(rl.is_held_out(a, b) for a, b in rl.prompts(rng, 50, held_out=True))
    assert not any(rl.is_held_out(a, b) for a, b in rl.prompts(rng, 50, held_out=False))
    share = np.mean([rl.is_held_out(a, b) for a in range(0, 1000, 7) for b in range(0, 1000, 11)])
    assert 0.08 < share < 0.12  # one pair in ten


def test_grpo_loss_equals_a_direct_computation_with_clipping_and_kl():
    g = torch.Generator().manual_seed(0)
    logp = -torch.rand(4, 5, generator=g) - 0.1
    old = logp + 0.4 * (torch.rand(4, 5, generator=g) - 0.5)   # ratios on both sides of the clip range
    ref = logp + 0.3 * torch.randn(4, 5, generator=g)
    adv = torch.tensor([1.2, -0.4, 0.0, -0.8])
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0], [1, 1, 0, 0, 0]], dtype=torch.float)
    loss, stats = rl.grpo_loss(logp, old, ref, adv, mask, clip=0.1, kl=0.05)
    total = 0.0
    for i in range(4):
        terms = []
        for t in range(5):
            if mask[i, t] == 0:
                continue
            rho = math.exp(float(logp[i, t] - old[i, t]))
            a = float(adv[i])
            surrogate = min(rho * a, min(max(rho, 0.9), 1.1) * a)
            d = float(ref[i, t] - logp[i, t])
            terms.append(surrogate - 0.05 * (math.exp(d) - d - 1))
        total += sum(terms) / len(terms)
    assert float(loss) == pytest.approx(-total / 4, rel=1e-6)
    assert 0 < stats["clipped"] < 1 and stats["kl"] > 0


def test_one_step_on_a_positive_advantage_raises_that_answers_probability():
    pre = rl.PretrainConfig(width=16, layers=1, heads=2, seed=3)
    model = rl._model(pre.seed, pre.width, pre.layers, pre.heads)
    pairs = [(12, 30), (12, 30)]
    prompt = rl.TASK.prompt_ids(pairs)
    answers = torch.stack([torch.tensor(rl.encode("42\n\n\n")), torch.tensor(rl.encode("17\n\n\n"))])
    mask = rl.answer_mask(answers)
    assert mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 0, 0]]
    adv = rl.group_advantages(torch.tensor([1.0, 0.0]), 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = rl.answer_logprobs(model, prompt, answers).detach()
    loss, _ = rl.grpo_loss(rl.answer_logprobs(model, prompt, answers), before, None, adv, mask)
    opt.zero_grad()
    loss.backward()
    opt.step()
    after = rl.answer_logprobs(model, prompt, answers).detach()
    gain = ((after - before) * mask).sum(dim=1)
    assert gain[0] > 0 > gain[1]  # the rewarded answer became more likely, the other less


def test_group_advantages_are_zero_where_a_group_agrees():
    adv = rl.group_advantages(torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]), 4)
    assert torch.allclose(adv[:4], torch.tensor([1.5, -0.5, -0.5, -0.5]), atol=1e-4) and torch.all(adv[4:] == 0)


def test_a_tiny_run_is_seeded_and_the_pretrained_state_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("ADAMS_CACHE", str(tmp_path))
    pre = rl.PretrainConfig(steps=20, batch=8, width=16, layers=1, heads=2, eval_prompts=16)
    state, record = rl.pretrained(pre)
    again, record_again = rl.pretrained(pre)  # read back: tensors only, weights_only=True
    assert record == record_again and all(torch.equal(state[k], again[k]) for k in state)
    config = rl.RLConfig(optimizer="adams", lr=1e-3, steps=3, prompts=2, group=2, eval_every=2, eval_prompts=8)
    a, b = rl.rl_run(config, state, pre), rl.rl_run(config, state, pre)
    assert {k: v for k, v in a.items() if k != "seconds"} == {k: v for k, v in b.items() if k != "seconds"}
    assert a["eval_step"] == [0, 2, 3] and len(a["reward"]) == 3 and not a["diverged"]
    cached = rl.cached_run(config, pre)
    assert cached["success"] == a["success"] and rl.cached_run(config, pre) == cached
    on_cpu = rl.rl_run(config, state, pre, device=torch.device("cpu"))  # the device named: the same run
    assert {k: v for k, v in on_cpu.items() if k != "seconds"} == {k: v for k, v in a.items() if k != "seconds"}


@pytest.mark.parametrize("device, match", [("meta", "shapes but no numbers"), ("cuda:0", "CUDA is not available"),
                                           ("gpu", "not a device name")])
def test_runs_refuse_a_device_they_cannot_train_on(device, match):
    if device.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    pre = rl.PretrainConfig(steps=1, batch=2, width=8, layers=1, heads=2, eval_prompts=4)
    with pytest.raises(ValueError, match=match):
        rl.pretrain(pre, device=device)
    with pytest.raises(ValueError, match=match):
        rl.rl_run(rl.RLConfig(steps=1, prompts=1, group=2), {}, pre, device=device)


def test_rl_config_refuses_bad_values():
    with pytest.raises(ValueError, match="unknown optimizer"):
        rl.RLConfig(optimizer="lion")
    with pytest.raises(ValueError, match="group"):
        rl.RLConfig(group=1)
    with pytest.raises(ValueError, match="lr"):
        rl.RLConfig(lr=-1.0)


def test_instability_signals_on_made_up_records():
    calm = {"success": [0.3, 0.32, 0.35], "grad_norm": [1.0] * 20, "kl": [0.1] * 20, "diverged": False}
    assert rl.instability(calm) == {"collapse": False, "kl_blowup": False, "grad_spikes": 0, "diverged": False}
    wild = {"success": [0.3, 0.1, 0.2], "grad_norm": [1.0] * 15 + [9.0] + [1.0] * 4, "kl": [0.1, 2.0],
            "diverged": False}
    assert rl.instability(wild) == {"collapse": True, "kl_blowup": True, "grad_spikes": 1, "diverged": False}


@pytest.mark.parametrize("rule, a, b, verdict", [
    (rl.parity_verdict, [0.50, 0.52, 0.51], [0.51, 0.50, 0.52], "holds at our scale"),
    (rl.parity_verdict, [0.30, 0.31, 0.29], [0.50, 0.52, 0.51], "does not hold"),
    (rl.parity_verdict, [0.45, 0.55, 0.40], [0.50, 0.50, 0.50], "inconclusive"),
    (rl.beta2_verdict, [0.50, 0.52, 0.51], [0.50, 0.51, 0.50], "holds at our scale"),
    (rl.beta2_verdict, [0.30, 0.31, 0.30], [0.50, 0.52, 0.50], "does not hold"),
    (rl.beta2_verdict, [0.45, 0.55, 0.40], [0.50, 0.50, 0.50], "inconclusive"),
    (rl.control_verdict, [0.20, 0.22, 0.21], [0.50, 0.52, 0.51], "holds at our scale"),
    (rl.control_verdict, [0.50, 0.52, 0.50], [0.50, 0.51, 0.50], "does not hold"),
    (rl.control_verdict, [0.40, 0.50, 0.35], [0.50, 0.50, 0.50], "inconclusive"),
])
def test_each_rule_returns_each_of_its_verdicts(rule, a, b, verdict):
    assert rule(a, b)["verdict"] == verdict


def test_a_diverged_run_counts_as_zero_success():
    d = rl.paired_difference([float("nan"), 0.5], [0.5, 0.5])
    assert d["mean"] == pytest.approx(-0.25)
    assert math.isnan(rl.final_success({"diverged": True, "success": [0.3]}))


def test_the_sweep_extends_a_grid_whose_best_rate_sits_at_an_end(monkeypatch):
    # made-up runs whose final success peaks at lr = 1e-4: a grid centred far below must grow upwards
    def fake_run_all(configs, pre, workers=2):
        return [{"diverged": False, "success": [1.0 - abs(math.log10(c.lr) + 4.0)] * 3, "grad_norm": [1.0] * 3,
                 "kl": [0.1] * 3} for c in configs]

    monkeypatch.setattr(rl, "run_all", fake_run_all)
    monkeypatch.setitem(rl.SWEEP_CENTERS, "adamw-0.95", 1e-5)
    out = rl.sweep(False, rl.PretrainConfig(), setups=("adamw-0.95",), max_extensions=3)["adamw-0.95"]
    assert out["bracketed"] and out["best"] == pytest.approx(1e-5 * 9) and len(out["lrs"]) == 5  # one rate added above


def test_the_power_check_gates_every_row():
    learned = [0.50, 0.52, 0.51]
    assert rl.power_check(0.28, learned)["testable"]
    weak = rl.power_check(0.28, [0.33, 0.34, 0.32])   # RL gains about the margin: an inert optimizer would pass
    assert not weak["testable"]
    assert rl.gated("holds at our scale", weak) == "not testable here"
    assert rl.gated("does not hold", rl.power_check(0.28, learned)) == "does not hold"


def test_answer_logprobs_are_the_sampling_distribution_character_by_character():
    pre = rl.PretrainConfig(width=16, layers=1, heads=2, seed=5)
    model = rl._model(pre.seed, pre.width, pre.layers, pre.heads)
    prompt = rl.TASK.prompt_ids([(1, 2), (300, 45), (999, 1)])
    answers = rl.sample_answers(model, prompt, torch.Generator().manual_seed(0))
    seq, expected = prompt, []
    with torch.no_grad():
        for t in range(answers.shape[1]):  # the distribution each character was drawn from
            logp = torch.log_softmax(model(seq)[:, -1].float(), dim=-1)
            expected.append(logp.gather(1, answers[:, t:t + 1]).squeeze(1))
            seq = torch.cat([seq, answers[:, t:t + 1]], dim=1)
        got = rl.answer_logprobs(model, prompt, answers)
    assert torch.allclose(got, torch.stack(expected, dim=1), atol=1e-6)
    again = rl.sample_answers(model, prompt, torch.Generator().manual_seed(0))
    assert torch.equal(answers, again)  # seeded


def test_a_sweep_run_and_a_comparison_run_read_disjoint_held_out_pairs():
    test, validation = rl.evaluation_pairs(0, "test", 512), rl.evaluation_pairs(0, "validation", 512)
    assert len(validation) == 512 and not set(test) & set(validation)
    assert rl.rl_config(False, "adams-0.95", 1e-5, 100, "validation").eval_set == "validation"
    with pytest.raises(ValueError, match="eval_set"):
        rl.RLConfig(eval_set="train")
