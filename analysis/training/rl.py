r"""Reinforcement learning with a verifiable reward, at CPU scale: addition, a small GPT, and GRPO.

The task: a prompt ``"482+37="`` and an answer ``"519"`` ended by a newline, written character by
character (:data:`VOCAB`). The reward is exact (:func:`reward`): 1 if the characters the model wrote
before its first newline are the sum, 0 otherwise (no newline within the length limit is 0 too).
Sums whose operand pair falls in the held-out set (:func:`is_held_out`) are never trained on; the
success rate is measured on them.

The recipe, in the order :func:`post_train` runs it:

1. **Supervised pre-training** (:func:`pretrain`): next-character loss on the answer characters of
   training pairs, stopped early so that the model is mediocre: it solves some held-out sums and
   fails on many, so that the samples of one prompt differ in reward and RL has something to learn.
2. **GRPO** (group-relative policy optimization, Shao et al. 2024, as in DeepSeek-R1-Zero): for each
   of ``prompts`` prompts, ``group`` answers are sampled from the current policy; each answer's
   advantage is its reward standardized within its group,
   :math:`A_i = (r_i - \bar r)/(s_r + 10^{-6})` (0 when the group agrees); the objective, over
   ``inner`` updates on the same samples, is the clipped ratio objective averaged over an answer's
   characters,

   .. math::

       J = \frac{1}{G}\sum_i \frac{1}{|o_i|}\sum_t \min\big(\rho_{i,t} A_i,\ \mathrm{clip}(\rho_{i,t},
       1-\epsilon, 1+\epsilon) A_i\big) - \beta\, \mathrm{KL}_{i,t},\qquad
       \rho_{i,t} = \frac{\pi_\theta(o_{i,t} \mid \cdot)}{\pi_{\text{old}}(o_{i,t} \mid \cdot)},

   with the KL to the pre-trained reference model estimated per character by
   :math:`e^{\ell_{\text{ref}} - \ell} - (\ell_{\text{ref}} - \ell) - 1` (:func:`grpo_loss`).

Everything is seeded: the model's initialization, the prompts, and the sampling draw from generators
built from the run's seeds, never from the global RNG.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

import adams
from analysis.training.gpt import GPT, GPTConfig
from analysis.training.recipe import training_device

__all__ = ["VOCAB", "DIGITS", "encode", "decode", "is_held_out", "reward", "prompts", "AdditionTask",
           "sample_answers", "answer_logprobs", "grpo_loss", "group_advantages", "greedy_success",
           "PretrainConfig", "pretrain", "RLConfig", "rl_run"]

VOCAB = "0123456789+=\n"
DIGITS = 3  # operands 0..999
_INDEX = {c: i for i, c in enumerate(VOCAB)}
NEWLINE = _INDEX["\n"]
#: the longest answer the model may write: four digits (999 + 999) and the newline
MAX_ANSWER = DIGITS + 2
#: the held-out evaluation sets (:func:`evaluation_pairs`): disjoint sets of held-out pairs
EVAL_SETS = {"test": 2, "validation": 3}


def encode(text: str) -> list[int]:
    """Character ids of ``text`` (only characters of :data:`VOCAB`)."""
    try:
        return [_INDEX[c] for c in text]
    except KeyError as err:
        raise ValueError(f"encode: {err.args[0]!r} is not a character of the addition task") from None


def decode(ids: Sequence[int]) -> str:
    return "".join(VOCAB[int(i)] for i in ids)


def is_held_out(a: int, b: int) -> bool:
    """One pair in ten, chosen by a hash of the pair (not by its digits), is held out for evaluation."""
    return hashlib.sha256(f"{a}+{b}".encode()).digest()[0] % 10 == 0


def reward(a: int, b: int, answer: Sequence[int]) -> float:
    """1.0 if ``answer`` (character ids as sampled) is the decimal sum of ``a`` and ``b`` followed by a
    newline, else 0.0. Characters after the first newline are ignored; no newline scores 0.

    >>> reward(12, 30, encode("42\\n")), reward(12, 30, encode("42")), reward(12, 30, encode("042\\n"))
    (1.0, 0.0, 0.0)
    >>> reward(12, 30, encode("42\\n7+")), reward(999, 999, encode("1998\\n"))
    (1.0, 1.0)
    """
    ids = [int(i) for i in answer]
    if NEWLINE not in ids:
        return 0.0
    return 1.0 if decode(ids[:ids.index(NEWLINE)]) == str(a + b) else 0.0


def prompts(rng: np.random.Generator, n: int, *, held_out: bool) -> list[tuple[int, int]]:
    """``n`` operand pairs drawn uniformly from the training pairs or from the held-out ones."""
    out = []
    while len(out) < n:
        a, b = (int(v) for v in rng.integers(0, 10**DIGITS, 2))
        if is_held_out(a, b) == held_out:
            out.append((a, b))
    return out


@dataclass(frozen=True)
class AdditionTask:
    """The prompt layout: ``"a+b="`` left-padded with newlines to a fixed width, so that a batch of
    prompts is one tensor and every answer starts at the same position."""

    @property
    def prompt_len(self) -> int:
        return 2 * DIGITS + 2

    @property
    def block(self) -> int:
        return self.prompt_len + MAX_ANSWER

    def prompt_ids(self, pairs: Sequence[tuple[int, int]]) -> torch.Tensor:
        rows = [encode(f"{a}+{b}=".rjust(self.prompt_len, "\n")) for a, b in pairs]
        return torch.tensor(rows, dtype=torch.long)

    def answer_ids(self, pairs: Sequence[tuple[int, int]]) -> torch.Tensor:
        """The correct answers, newline-ended and right-padded with newlines to :data:`MAX_ANSWER`."""
        rows = [encode(f"{a + b}\n".ljust(MAX_ANSWER, "\n")) for a, b in pairs]
        return torch.tensor(rows, dtype=torch.long)


TASK = AdditionTask()


def answer_mask(answers: torch.Tensor) -> torch.Tensor:
    """1 for the characters of each answer up to and including its first newline, 0 after it."""
    is_nl = answers == NEWLINE
    before = torch.cumsum(is_nl.long(), dim=1) - is_nl.long()  # newlines strictly before each position
    return (before == 0).float()


def answer_logprobs(model: torch.nn.Module, prompt: torch.Tensor, answers: torch.Tensor) -> torch.Tensor:
    """log pi(answer character t | prompt, answer characters < t), shape (batch, answer length)."""
    seq = torch.cat([prompt, answers], dim=1)
    logits = model(seq[:, :-1])[:, prompt.shape[1] - 1:]
    return torch.gather(F.log_softmax(logits.float(), dim=-1), 2, answers.unsqueeze(-1)).squeeze(-1)


@torch.no_grad()
def sample_answers(model: torch.nn.Module, prompt: torch.Tensor, generator: torch.Generator,
                   temperature: float = 1.0) -> torch.Tensor:
    """:data:`MAX_ANSWER` characters per prompt row, sampled one at a time (batched over rows) from
    ``generator``; rows keep being sampled after their newline (those characters are masked later)."""
    if any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in model.modules()):
        raise ValueError("sample_answers: the model has dropout, which would draw from the global RNG")
    seq = prompt
    for _ in range(MAX_ANSWER):
        logits = model(seq)[:, -1].float() / temperature
        nxt = torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator)
        seq = torch.cat([seq, nxt], dim=1)
    return seq[:, prompt.shape[1]:]


@torch.no_grad()
def greedy_success(model: torch.nn.Module, pairs: Sequence[tuple[int, int]]) -> float:
    """Share of ``pairs`` the model answers exactly when it writes its most likely character each time."""
    was = model.training
    model.eval()
    try:
        seq = TASK.prompt_ids(pairs).to(next(model.parameters()).device)
        for _ in range(MAX_ANSWER):
            seq = torch.cat([seq, model(seq)[:, -1].argmax(dim=-1, keepdim=True)], dim=1)
    finally:
        model.train(was)
    answers = seq[:, TASK.prompt_len:]
    return float(np.mean([reward(a, b, row.tolist()) for (a, b), row in zip(pairs, answers)]))


def evaluation_pairs(seed: int, eval_set: str, n: int) -> list[tuple[int, int]]:
    """``n`` held-out pairs of ``eval_set``: "test" draws them from the stream ``[seed, 2]``;
    "validation" from ``[seed, 3]``, leaving out every pair of the test set of the same size, so that
    the two sets are disjoint."""
    if eval_set not in EVAL_SETS:
        raise ValueError(f"eval_set must be one of {sorted(EVAL_SETS)}, got {eval_set!r}")
    test = prompts(np.random.default_rng([seed, EVAL_SETS["test"]]), n, held_out=True)
    if eval_set == "test":
        return test
    taken, out = set(test), []
    rng = np.random.default_rng([seed, EVAL_SETS["validation"]])
    while len(out) < n:
        out.extend(p for p in prompts(rng, n - len(out), held_out=True) if p not in taken)
    return out


def group_advantages(rewards: torch.Tensor, group: int) -> torch.Tensor:
    """Rewards standardized within consecutive groups of ``group`` samples (0 where a group agrees).

    >>> [round(v, 3) for v in group_advantages(torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0]), 3).tolist()]
    [1.155, -0.577, -0.577, 0.0, 0.0, 0.0]
    """
    r = rewards.reshape(-1, group)
    std = r.std(dim=1, keepdim=True)
    return ((r - r.mean(dim=1, keepdim=True)) / (std + 1e-6)).where(std > 0, torch.zeros_like(r)).reshape(-1)


def grpo_loss(logp: torch.Tensor, old_logp: torch.Tensor, ref_logp: torch.Tensor | None, advantages: torch.Tensor,
              mask: torch.Tensor, *, clip: float = 0.2, kl: float = 0.0) -> tuple[torch.Tensor, dict]:
    """The negative GRPO objective of the module docstring (a loss to minimize) and its parts.

    ``logp``, ``old_logp``, ``ref_logp`` and ``mask`` are (samples, characters); ``advantages`` is one
    per sample. Each answer's terms are averaged over its own characters (``mask``), then over answers.
    """
    ratio = torch.exp(logp - old_logp)
    adv = advantages.unsqueeze(1)
    surrogate = torch.minimum(ratio * adv, ratio.clamp(1 - clip, 1 + clip) * adv)
    per_char = surrogate
    kl_term = torch.zeros_like(logp)
    if ref_logp is not None and kl > 0:
        d = ref_logp - logp
        kl_term = torch.exp(d) - d - 1
        per_char = surrogate - kl * kl_term
    lengths = mask.sum(dim=1).clamp_min(1.0)
    objective = ((per_char * mask).sum(dim=1) / lengths).mean()
    with torch.no_grad():
        stats = {"kl": float(((kl_term * mask).sum(dim=1) / lengths).mean()),
                 "clipped": float(((ratio.clamp(1 - clip, 1 + clip) * adv < ratio * adv).float() * mask).sum()
                                  / mask.sum().clamp_min(1.0))}
    return -objective, stats


# ---------------------------------------------------------------------------------------------
# pre-training and post-training runs


def _model(seed: int, width: int, layers: int, heads: int) -> GPT:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return GPT(GPTConfig(vocab=len(VOCAB), block=TASK.block, layers=layers, heads=heads, width=width))


@dataclass(frozen=True)
class PretrainConfig:
    """Supervised pre-training: ``steps`` AdamW steps of ``batch`` training sums (answer characters only)."""

    steps: int = 1500
    batch: int = 64
    lr: float = 3e-3
    width: int = 64
    layers: int = 2
    heads: int = 2
    seed: int = 0
    eval_prompts: int = 512

    def key(self) -> dict:
        return {"pretrain": dataclasses.asdict(self), "vocab": VOCAB, "digits": DIGITS, "version": adams.__version__}


def pretrain(config: PretrainConfig, *, device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], dict]:
    """Train from scratch on ``device``; returns the model's state dict (on the CPU) and a record
    (loss, and greedy success on the validation pairs, every 100 steps: the test pairs are left for
    the comparison). The model is initialised on the CPU, so its start does not depend on the device."""
    device = training_device(device)
    model = _model(config.seed, config.width, config.layers, config.heads).to(device)
    opt = adams.make_optimizer("adamw", model, lr=config.lr, betas=(0.9, 0.95), weight_decay=0.0)
    rng = np.random.default_rng([config.seed, 1])
    eval_pairs = evaluation_pairs(config.seed, "validation", config.eval_prompts)
    record = {"step": [], "loss": [], "success": []}
    for step in range(config.steps + 1):
        if step % 100 == 0 or step == config.steps:
            record["step"].append(step)
            record["success"].append(greedy_success(model, eval_pairs))
        if step == config.steps:
            break
        pairs = prompts(rng, config.batch, held_out=False)
        answers = TASK.answer_ids(pairs).to(device)
        logp = answer_logprobs(model, TASK.prompt_ids(pairs).to(device), answers)
        mask = answer_mask(answers)
        loss = -(logp * mask).sum() / mask.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 100 == 0:
            record["loss"].append(float(loss.detach()))
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}, record


@dataclass(frozen=True)
class RLConfig:
    """One GRPO run from a pre-trained state: the optimizer (a name of :func:`adams.make_optimizer`) and
    its hyperparameters, the run's seed (prompts and sampling), and the GRPO settings of the module
    docstring. Weight decay 0, gradient clipping at ``grad_clip``, a constant learning rate."""

    optimizer: str = "adamw"
    lr: float = 3e-4
    betas: tuple[float, float] = (0.9, 0.95)
    seed: int = 0
    steps: int = 150
    prompts: int = 16
    group: int = 8
    inner: int = 2
    clip: float = 0.2
    kl: float = 0.01
    temperature: float = 1.0
    grad_clip: float = 1.0
    eval_every: int = 10
    eval_prompts: int = 512
    #: which held-out pairs score the run: "test" (the comparison's) or "validation" (a disjoint draw,
    #: for the learning-rate sweeps, so that no rate is chosen on the pairs that judge the rows)
    eval_set: str = "test"

    def __post_init__(self):
        if self.optimizer not in adams.OPTIMIZERS:
            raise ValueError(f"RLConfig: unknown optimizer {self.optimizer!r}; registered: {', '.join(adams.OPTIMIZERS)}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"RLConfig: lr must be a positive number, got {self.lr!r}")
        for name in ("steps", "prompts", "inner", "eval_every", "eval_prompts"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"RLConfig.{name} must be an int >= 1, got {getattr(self, name)!r}")
        if not isinstance(self.group, int) or self.group < 2:
            raise ValueError(f"RLConfig.group must be an int >= 2 (advantages compare samples), got {self.group!r}")
        if self.eval_set not in EVAL_SETS:
            raise ValueError(f"RLConfig.eval_set must be one of {sorted(EVAL_SETS)}, got {self.eval_set!r}")

    def key(self) -> dict:
        return dataclasses.asdict(self)


def _grad_norm(params: list[torch.Tensor]) -> float:
    return math.sqrt(sum(float(p.grad.double().pow(2).sum()) for p in params if p.grad is not None))


def rl_run(config: RLConfig, init_state: dict[str, torch.Tensor], pre: PretrainConfig, *,
           device: str | torch.device = "cpu") -> dict:
    """GRPO from ``init_state`` (a model of ``pre``'s shape) on ``device``; returns the run's record.
    Answers are sampled from a generator on ``device`` seeded with the run's seed, so runs repeat
    exactly on one device and differ in their samples between devices. The record:

    * ``eval_step``, ``success``: held-out greedy success every ``eval_every`` steps (and at the end);
    * per step: ``reward`` (mean sampled reward), ``kl`` (to the reference), ``grad_norm`` (before
      clipping, first inner update), ``clipped`` (share of characters whose ratio left the clip range);
    * ``diverged`` (a non-finite loss or gradient ended the run early), ``seconds``.
    """
    device = training_device(device)
    model = _model(0, pre.width, pre.layers, pre.heads)
    model.load_state_dict(init_state)
    model.to(device)
    reference = _model(0, pre.width, pre.layers, pre.heads)
    reference.load_state_dict(init_state)
    reference.to(device)
    reference.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = adams.make_optimizer(config.optimizer, model, lr=config.lr, betas=config.betas, weight_decay=0.0)
    rng = np.random.default_rng([config.seed, 10])
    gen = torch.Generator(device=device).manual_seed(config.seed)
    eval_pairs = evaluation_pairs(pre.seed, config.eval_set, config.eval_prompts)
    out = {k: [] for k in ("eval_step", "success", "reward", "kl", "grad_norm", "clipped")}
    out["diverged"] = False
    start = time.perf_counter()
    for step in range(config.steps + 1):
        if step % config.eval_every == 0 or step == config.steps:
            out["eval_step"].append(step)
            out["success"].append(greedy_success(model, eval_pairs))
        if step == config.steps:
            break
        pairs = prompts(rng, config.prompts, held_out=False)
        prompt = TASK.prompt_ids(pairs).repeat_interleave(config.group, dim=0).to(device)
        answers = sample_answers(model, prompt, gen, config.temperature)
        rewards = torch.tensor([reward(a, b, row) for (a, b), row in
                                zip([p for p in pairs for _ in range(config.group)], answers.tolist())],
                               device=device)
        adv = group_advantages(rewards, config.group)
        mask = answer_mask(answers)
        with torch.no_grad():
            old = answer_logprobs(model, prompt, answers)
            ref = answer_logprobs(reference, prompt, answers)
        for inner in range(config.inner):
            loss, stats = grpo_loss(answer_logprobs(model, prompt, answers), old, ref, adv, mask,
                                    clip=config.clip, kl=config.kl)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            norm = _grad_norm(params)
            if not (math.isfinite(float(loss.detach())) and math.isfinite(norm)):
                out["diverged"] = True
                break
            torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            opt.step()
            if inner == 0:
                first = (norm, stats)
        if out["diverged"]:
            if out["eval_step"][-1] != step:
                out["eval_step"].append(step)
                out["success"].append(float("nan"))
            else:
                out["success"][-1] = float("nan")
            break
        out["reward"].append(float(rewards.mean()))
        out["grad_norm"].append(first[0])
        out["kl"].append(first[1]["kl"])
        out["clipped"].append(stats["clipped"])
    out["seconds"] = time.perf_counter() - start
    return out


# ---------------------------------------------------------------------------------------------
# the experiment: cached runs, sweeps, seeds, verdicts

#: the compared setups: optimizer and betas. The paper runs AdamS with beta2 = 0.95 where AdamW uses
#: 0.999; both get both, and SGD with momentum is the control (its beta2 is unused)
SETUPS = {"adams-0.95": ("adams", (0.9, 0.95)), "adams-0.999": ("adams", (0.9, 0.999)),
          "adamw-0.95": ("adamw", (0.9, 0.95)), "adamw-0.999": ("adamw", (0.9, 0.999)),
          "sgdm": ("sgdm", (0.9, 0.95))}
LABELS = {"adams-0.95": "AdamS (0.9, 0.95)", "adams-0.999": "AdamS (0.9, 0.999)", "adamw-0.95": "AdamW (0.9, 0.95)",
          "adamw-0.999": "AdamW (0.9, 0.999)", "sgdm": "SGD with momentum 0.9"}
#: where each setup's learning-rate sweep is centred (a factor-3 grid of four rates, extended until bracketed)
SWEEP_CENTERS = {"adams-0.95": 1e-5, "adams-0.999": 1e-5, "adamw-0.95": 3e-5, "adamw-0.999": 3e-5, "sgdm": 3e-3}
SWEEP_FACTOR = 3.0
#: two held-out success rates closer than this (absolute) count as the same; fixed before any run
MARGIN = 0.05
#: a run's final success: the mean of its last this many evaluations (one evaluation is noisy)
FINAL_EVALS = 3


def pretrain_config(quick: bool) -> PretrainConfig:
    return PretrainConfig(steps=300, eval_prompts=128) if quick else PretrainConfig(steps=1200)


def rl_config(quick: bool, setup: str, lr: float, seed: int, eval_set: str = "test") -> RLConfig:
    name, betas = SETUPS[setup]
    if quick:
        return RLConfig(optimizer=name, lr=lr, betas=betas, seed=seed, steps=12, prompts=4, group=4, inner=2,
                        eval_every=4, eval_prompts=64, eval_set=eval_set)
    return RLConfig(optimizer=name, lr=lr, betas=betas, seed=seed, steps=200, eval_every=20, eval_prompts=512,
                    eval_set=eval_set)


def sweep_seeds(quick: bool) -> tuple[int, ...]:
    return (100,) if quick else (100, 101)


def headline_seeds(quick: bool) -> tuple[int, ...]:
    return (0, 1) if quick else (0, 1, 2, 3, 4)


def _cache_dir() -> Path:
    from analysis.report.runs import cache_root

    return cache_root() / "rl"


def pretrained(pre: PretrainConfig) -> tuple[dict[str, torch.Tensor], dict]:
    """:func:`pretrain`, or its stored state (a tensors-only ``torch.save`` file, loaded with
    ``weights_only=True``) and record, keyed by the configuration."""
    from analysis.report.files import atomic_write_bytes, atomic_write_text
    import io

    digest = hashlib.sha256(json.dumps(pre.key(), sort_keys=True).encode()).hexdigest()[:16]
    weights, record_path = _cache_dir() / f"pretrain-{digest}.pt", _cache_dir() / f"pretrain-{digest}.json"
    from analysis.report import is_fresh

    if not (is_fresh(weights) and is_fresh(record_path)):
        state, record = pretrain(pre)
        buffer = io.BytesIO()
        torch.save(state, buffer)
        weights.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(weights, buffer.getvalue())
        atomic_write_text(record_path, json.dumps({"key": pre.key(), "record": record}) + "\n")
    state = torch.load(weights, map_location="cpu", weights_only=True)
    stored = json.loads(record_path.read_text(encoding="utf-8"))
    if stored["key"] != pre.key():
        raise RuntimeError(f"{record_path} records another pre-training configuration than the one asked for")
    return state, {**stored["record"], "weights_sha256": hashlib.sha256(weights.read_bytes()).hexdigest()}


def start_success(pre: PretrainConfig, eval_prompts: int = 512) -> float:
    """Greedy success of the pre-trained model (no RL) on the comparison's test pairs."""
    state, _ = pretrained(pre)
    model = _model(0, pre.width, pre.layers, pre.heads)
    model.load_state_dict(state)
    return greedy_success(model, evaluation_pairs(pre.seed, "test", eval_prompts))


def cached_run(config: RLConfig, pre: PretrainConfig) -> dict:
    """:func:`rl_run` from :func:`pretrained`, stored by ``analysis.report.cached`` under its configuration."""
    from analysis.report.runs import cached

    def compute() -> dict:
        torch.set_num_threads(1)
        state, _ = pretrained(pre)
        return rl_run(config, state, pre)

    return cached("rl_run", _run_key(config, pre), compute)


def _run_key(config: RLConfig, pre: PretrainConfig) -> dict:
    """A run is identified by its configuration and by the exact pre-trained weights it starts from,
    so that runs from regenerated weights are never mixed with runs from the old ones."""
    return {"rl": config.key(), **pre.key(), "start": pretrained(pre)[1]["weights_sha256"]}


def _is_cached(config: RLConfig, pre: PretrainConfig) -> bool:
    from analysis.report import is_fresh
    from analysis.report.runs import cached_path

    return is_fresh(cached_path("rl_run", _run_key(config, pre)))


def _config_from(payload: dict) -> RLConfig:
    return RLConfig(**{**payload, "betas": tuple(payload["betas"])})


def _worker_main(payload: str) -> None:
    """Entry point of a worker interpreter: one cached run (the cache carries the record back)."""
    job = json.loads(payload)
    cached_run(_config_from(job["config"]), PretrainConfig(**job["pre"]))


def _run_in_subprocess(config: RLConfig, pre: PretrainConfig) -> dict:
    """:func:`cached_run` in a fresh ``python -c`` with one torch thread (spawned multiprocessing would
    re-run the calling notebook, and fork is unsafe once torch's thread pool exists)."""
    import os
    import subprocess
    import sys

    payload = json.dumps({"config": dataclasses.asdict(config), "pre": dataclasses.asdict(pre)})
    code = "import sys; from analysis.training.rl import _worker_main; _worker_main(sys.stdin.read())"
    done = subprocess.run([sys.executable, "-c", code], input=payload, text=True, capture_output=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    if done.returncode != 0:
        raise RuntimeError(f"RL run {config} failed:\n{done.stderr[-3000:]}")
    return cached_run(config, pre)


def run_all(configs: Sequence[RLConfig], pre: PretrainConfig, *, workers: int = 2) -> list[dict]:
    """Every configuration's record (cached), in ``workers`` worker interpreters (in this process if 1)."""
    pretrained(pre)  # once, before the workers read it
    cached_before = [_is_cached(c, pre) for c in configs]
    todo = [c for c, done in zip(configs, cached_before) if not done]
    if workers > 1 and len(todo) > 1:  # the runs not cached yet, in worker interpreters
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(lambda c: _run_in_subprocess(c, pre), todo))
    records = [cached_run(c, pre) for c in configs]
    _READ_FROM_CACHE.update({json.dumps(_run_key(c, pre), sort_keys=True): r["seconds"]
                             for c, r, done in zip(configs, records, cached_before) if done})
    return records


#: the training seconds of the runs this process read from the cache (trained by an earlier one), by run
_READ_FROM_CACHE: dict[str, float] = {}


def cached_seconds() -> float:
    """What the runs that this process read from the cache cost when they were trained (for
    ``analysis.report.save_results``'s ``cached_s``: a notebook whose runs were cached finishes in
    seconds, and its record should still say what the result cost)."""
    return float(sum(_READ_FROM_CACHE.values()))


def final_success(record: dict) -> float:
    """The mean of the last :data:`FINAL_EVALS` held-out success rates; NaN for a diverged run."""
    if record["diverged"]:
        return float("nan")
    return float(np.mean(record["success"][-FINAL_EVALS:]))


def sweep(quick: bool, pre: PretrainConfig, setups: Sequence[str] = tuple(SETUPS), max_extensions: int = 2,
          workers: int = 2) -> dict[str, dict]:
    """Each setup's learning-rate sweep: four rates a factor 3 apart around its centre, scored by the
    mean final success over :func:`sweep_seeds` on the validation pairs (a rate with a diverged seed
    scores below every finite one); while the best rate is at an end of the grid, the grid grows by
    one rate on that side (at most ``max_extensions`` times). Returns per setup the rates, their
    scores, the best rate, whether it is bracketed, and each rate's :func:`instability` signals."""
    grids = {s: [SWEEP_CENTERS[s] * SWEEP_FACTOR**k for k in (-1, 0, 1, 2)] for s in setups}
    scores: dict[str, dict[float, float]] = {s: {} for s in setups}
    signals: dict[str, dict[float, list]] = {s: {} for s in setups}
    for _ in range(max_extensions + 1):
        todo = [(s, lr) for s in setups for lr in grids[s] if lr not in scores[s]]
        configs = [rl_config(quick, s, lr, seed, "validation") for s, lr in todo for seed in sweep_seeds(quick)]
        records = run_all(configs, pre, workers=workers)
        n = len(sweep_seeds(quick))
        for i, (s, lr) in enumerate(todo):
            finals = [final_success(r) for r in records[i * n:(i + 1) * n]]
            scores[s][lr] = float(np.mean(finals)) if all(np.isfinite(finals)) else -math.inf
            signals[s][lr] = [instability(r) for r in records[i * n:(i + 1) * n]]
        grew = False
        for s in setups:
            lrs = sorted(grids[s])
            best = max(lrs, key=lambda lr: scores[s][lr])
            if best == lrs[0]:
                grids[s] = [lrs[0] / SWEEP_FACTOR] + lrs
                grew = True
            elif best == lrs[-1]:
                grids[s] = lrs + [lrs[-1] * SWEEP_FACTOR]
                grew = True
        if not grew:
            break
    out = {}
    for s in setups:
        lrs = sorted(scores[s])
        best = max(lrs, key=lambda lr: scores[s][lr])
        out[s] = {"lrs": lrs, "scores": [scores[s][lr] for lr in lrs], "best": best,
                  "bracketed": lrs[0] < best < lrs[-1], "instability": [signals[s][lr] for lr in lrs]}
    return out


def headline(quick: bool, pre: PretrainConfig, best: dict[str, float], workers: int = 2) -> dict[str, list[dict]]:
    """Every setup at its best rate, one run per :func:`headline_seeds` seed (none of which chose a rate)."""
    setups = list(best)
    seeds = headline_seeds(quick)
    records = run_all([rl_config(quick, s, best[s], seed) for s in setups for seed in seeds], pre, workers=workers)
    return {s: records[i * len(seeds):(i + 1) * len(seeds)] for i, s in enumerate(setups)}


def instability(record: dict) -> dict:
    """A run's instability signals: ``collapse`` (held-out success fell below half its starting value
    at some evaluation), ``kl_blowup`` (KL to the reference above 1 nat a character at some step),
    ``grad_spikes`` (steps whose gradient norm exceeds 5 times the median of the run so far)."""
    success = np.asarray(record["success"], dtype=float)
    grads = np.asarray(record["grad_norm"], dtype=float)
    spikes = sum(1 for t in range(10, grads.size) if grads[t] > 5 * np.median(grads[:t]))
    return {"collapse": bool(record["diverged"] or np.nanmin(success[1:]) < 0.5 * success[0]) if success.size > 1 else
            bool(record["diverged"]),
            "kl_blowup": bool(record["kl"] and max(record["kl"]) > 1.0), "grad_spikes": int(spikes),
            "diverged": bool(record["diverged"])}


def paired_difference(a: Sequence[float], b: Sequence[float]) -> dict:
    """Mean of a - b over paired seeds with its Student-t 95% interval (a diverged run counts as
    success 0, the worst outcome, so that it is neither dropped nor averaged away)."""
    from scipy import stats

    d = np.nan_to_num(np.asarray(a, dtype=float), nan=0.0) - np.nan_to_num(np.asarray(b, dtype=float), nan=0.0)
    if d.size < 2:
        raise ValueError("paired_difference: at least two paired seeds")
    se = float(d.std(ddof=1) / math.sqrt(d.size))
    half = float(stats.t.ppf(0.975, d.size - 1) * se)
    return {"mean": float(d.mean()), "se": se, "ci": [float(d.mean() - half), float(d.mean() + half)], "n": int(d.size)}


def power_check(start: float, adamw_final: Sequence[float], margin: float = MARGIN) -> dict:
    """Can the task tell an optimizer that learns from one that does not? The pre-trained model
    without any update (its held-out success ``start``, the same for every seed) must fall short of
    AdamW by more than the margin (:func:`analysis.report.claims.inferiority_verdict` on AdamW minus
    it). If not, a rule with this margin would pass an optimizer that did nothing, and rows 80-82
    are "not testable here".

    >>> power_check(0.28, [0.50, 0.52, 0.51])["testable"], power_check(0.28, [0.33, 0.34, 0.32])["testable"]
    (True, False)
    """
    from analysis.report.claims import inferiority_verdict

    d = paired_difference(adamw_final, [start] * len(adamw_final))
    return {**d, "margin": margin, "testable": inferiority_verdict(d["ci"], margin) == "holds at our scale"}


def gated(verdict: str, power: dict) -> str:
    """``verdict``, or "not testable here" when :func:`power_check` says the task cannot separate."""
    return verdict if power["testable"] else "not testable here"


def parity_verdict(adams_final: Sequence[float], adamw_final: Sequence[float], margin: float = MARGIN) -> dict:
    """"AdamS matches AdamW": the interval of AdamS minus AdamW (success, paired by seed) inside
    [-margin, margin] holds; wholly outside does not; else inconclusive.

    >>> parity_verdict([0.50, 0.52, 0.51], [0.51, 0.50, 0.52])["verdict"]
    'holds at our scale'
    >>> parity_verdict([0.30, 0.31, 0.29], [0.50, 0.52, 0.51])["verdict"]
    'does not hold'
    """
    from analysis.report.claims import equivalence_verdict

    d = paired_difference(adams_final, adamw_final)
    return {**d, "margin": margin, "verdict": equivalence_verdict(d["ci"], margin)}


def beta2_verdict(at_095: Sequence[float], at_0999: Sequence[float], margin: float = MARGIN) -> dict:
    """"beta2 = 0.95 is no worse than 0.999 for AdamS": 0.95 is no worse than 0.999 by more than the margin
    (success of 0.999 minus 0.95, paired by seed, has its interval below the margin); does not hold if
    the interval lies above it; else inconclusive.

    >>> beta2_verdict([0.5, 0.52, 0.51], [0.5, 0.51, 0.5])["verdict"], beta2_verdict([0.3, 0.31, 0.3], [0.5, 0.52, 0.5])["verdict"]
    ('holds at our scale', 'does not hold')
    """
    from analysis.report.claims import noninferiority_verdict

    d = paired_difference(at_0999, at_095)
    return {**d, "margin": margin, "verdict": noninferiority_verdict(d["ci"], margin)}


def control_verdict(sgd_final: Sequence[float], adamw_final: Sequence[float], margin: float = MARGIN) -> dict:
    """"The SGD control falls short of AdamW" (so that AdamS matching AdamW says something about
    AdamS): AdamW minus SGD (paired by seed) has its interval above the margin: holds; below it (SGD
    as good as AdamW within the margin, or better): does not hold; else inconclusive.

    >>> control_verdict([0.2, 0.22, 0.21], [0.5, 0.52, 0.51])["verdict"], control_verdict([0.5, 0.52, 0.5], [0.5, 0.51, 0.5])["verdict"]
    ('holds at our scale', 'does not hold')
    """
    from analysis.report.claims import inferiority_verdict

    d = paired_difference(adamw_final, sgd_final)
    return {**d, "margin": margin, "verdict": inferiority_verdict(d["ci"], margin)}
