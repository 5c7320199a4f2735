r"""AdaPM, partial momentum by block role: a *reconstruction*, not the authors' algorithm.

AdaPM (arXiv 2510.09103) finds that most blocks of a transformer do not need a full momentum buffer,
assigns *different momentum designs to different blocks*, and repairs the partial momentum with a
bias correction; with a memory-efficient (Adam-mini-style) second moment it reports over 90% of
momentum memory saved and up to 95% of the optimizer state. No code was released, and the paper's
text was not available to us. What we follow is a third-party summary of the paper (the best
description we have; not the paper's words):

* no momentum for the embedding and the attention-output blocks;
* a low-rank, bias-corrected momentum for the query, key and MLP blocks;
* full momentum for the value blocks;
* the 95% figure combines this with an Adam-mini-style second moment.

Everything else here is ours. It is labelled a reconstruction wherever it appears.

**Blocks and roles.** Each parameter is cut into blocks, each with a role: ``embedding`` (token
embedding), ``position`` (position embedding), ``head`` (an untied output layer), ``query``,
``key``, ``value``, ``attn_out``, ``mlp``, ``norm`` (normalisation weights) and ``bias``. A block is
a set of rows of the parameter seen as a matrix of output neurons by fan-in: ``(out, in)`` for
``nn.Linear``, the transpose for GPT-2's ``Conv1D`` (stored ``(in, out)``), ``(n, 1)`` for a
vector. :func:`classify` assigns roles from parameter names, for the package's GPT
(``analysis.training.gpt``), Hugging Face GPT-2 (whose fused ``c_attn`` is three blocks: query, key,
value) and LLaMA-style names; any other model gets a ``ValueError`` listing the names it could not
place, and takes ``roles={name: role}``.

**One step** of a block with gradient rows :math:`G` (``n x k``), at step :math:`t`, with
:math:`c_1 = 1 - \beta_1^t` (1 with ``bias_correction=False``) and :math:`c_2 = 1 - \beta_2^t`:

* direction :math:`D` by the block's momentum design:

  - ``none``: :math:`D = G`;
  - ``full``: :math:`M \leftarrow \beta_1 M + (1 - \beta_1) G`, :math:`D = M / c_1` (AdamW's);
  - ``low-rank`` with rank :math:`r`: the fan-in is cut into :math:`r` contiguous groups of
    columns and :math:`P` (``k x r``) holds each group's indicator divided by the square root of its
    size (orthonormal columns). The state is :math:`\tilde M` (``n x r``), the EMA of :math:`GP`:
    :math:`\tilde M \leftarrow \beta_1 \tilde M + (1-\beta_1) GP`, and

    .. math:: D = G - G P P^\top + (\tilde M / c_1)\, P^\top .

    The momentum acts on the part of the gradient in the span of :math:`P` (rank 1: each row's
    mean), the rest of the gradient is used fresh. The division by :math:`c_1` is the bias
    correction: at :math:`t = 1`, :math:`D = G` exactly, and under a constant gradient
    :math:`D = G` at every step; without it the momentum part of step :math:`t` is shrunk by
    :math:`1 - \beta_1^t`. Rank :math:`k` is full momentum; rank 1 is the row-mean form of the
    uniform reconstruction this module replaced.

* second moment by ``second_moment``:

  - ``"full"`` (AdaPM alone): Adam's :math:`V \leftarrow \beta_2 V + (1-\beta_2) G^2` per element;
  - ``"mini"`` (AdaPM + Adam-mini): Adam-mini 1.1.1's partition, an EMA of the mean of
    :math:`G^2` over each part: per head (``n_heads`` rows of the query and key blocks), per output
    row (embedding, head, value, attention output, MLP), one value for a ``norm`` or ``position``
    tensor (Adam-mini's fallback for names it does not list), per element for a ``bias``;

* update: :math:`w \leftarrow (1 - \eta\lambda) w - \eta\, D / (\sqrt{V / c_2} + \epsilon)`.

With ``momentum`` set to ``full`` for every role this is AdamW (``second_moment="full"``) or Adam-mini
1.1.1 (``"mini"``, on names Adam-mini recognizes); both are tested.

**Our choices** (none is fixed by a source; the alternative we did not take in brackets):

1. Roles from parameter names, as Adam-mini does (rather than from module types or shapes).
2. The low-rank momentum is a fixed projection onto group means of the fan-in, so rank 1 needs one
   value per output row and no matrix products (rather than a projection learnt or refreshed from
   the gradients, as GaLore does, or a random one).
3. Default rank 1 (rather than a rank tuned per block).
4. The bias correction divides the low-rank part by Adam's :math:`1 - \beta_1^t` and leaves the
   fresh part alone (rather than rescaling the whole direction).
5. Norm weights and biases keep full momentum: they are a negligible share of the memory (rather
   than none).
6. An untied output layer and the position embedding are treated as the embedding: no momentum
   (rather than full momentum).
7. For GPT-2's ``Conv1D`` the output neurons are the columns of the stored weight, so blocks and the
   per-row second moment follow output neurons (Adam-mini, going by the stored layout, would use
   GPT-2's input dimension there).

Weight decay is decoupled, as in AdamW; ``adams.make_optimizer`` gives it to matrices only.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import torch
from torch import Tensor

__all__ = ["AdaPM", "Block", "classify", "DEFAULT_MOMENTUM", "ROLES", "state_formula"]

ROLES = ("embedding", "position", "head", "query", "key", "value", "attn_out", "mlp", "norm", "bias")
DESIGNS = ("none", "low-rank", "full")
#: the momentum design per role: the summary's assignment, and ours where it is silent (see above)
DEFAULT_MOMENTUM = {"embedding": "none", "position": "none", "head": "none", "attn_out": "none",
                    "query": "low-rank", "key": "low-rank", "mlp": "low-rank", "value": "full",
                    "norm": "full", "bias": "full"}
SECOND_MOMENTS = ("full", "mini")


@dataclass(frozen=True)
class Block:
    """Rows ``start:stop`` (``None``: all) of a parameter seen as (output neurons, fan-in), with a role.
    ``transpose``: the stored weight is (fan-in, output neurons), as GPT-2's ``Conv1D``."""

    role: str
    transpose: bool = False
    start: int | None = None
    stop: int | None = None


# name patterns, tried in order; GPT-2's Conv1D weights (c_attn, c_proj, c_fc) are stored transposed
_PATTERNS: list[tuple[str, str]] = [
    (r"(^|\.)(wte|embed_tokens|tok_embeddings|word_embeddings)\.weight$", "embedding"),
    (r"(^|\.)(wpe|embed_positions|position_embeddings)\.weight$", "position"),
    (r"(^|\.)(lm_head|output)\.weight$", "head"),
    (r"(^|\.)(q_proj|wq|query)\.weight$", "query"),
    (r"(^|\.)(k_proj|wk|key)\.weight$", "key"),
    (r"(^|\.)(v_proj|wv|value)\.weight$", "value"),
    (r"(^|\.)(o_proj|wo|out_proj|attn\.proj|attn\.c_proj)\.weight$", "attn_out"),
    (r"(^|\.)(mlp|feed_forward|ffn)\..*weight$|(^|\.)(gate_proj|up_proj|down_proj|w1|w2|w3)\.weight$", "mlp"),
]


def classify(name: str, shape: Sequence[int]) -> list[Block]:
    """The blocks of parameter ``name`` (of ``shape``) for the layouts this module knows, else
    ``ValueError``. Vectors are ``bias`` (names ending in ``bias``) or ``norm``."""
    if len(shape) <= 1:
        return [Block("bias" if name.endswith("bias") else "norm")]
    if name.endswith("c_attn.weight"):  # GPT-2: one Conv1D (d, 3d) for query, key and value
        d = shape[1] // 3
        if shape[1] != 3 * d:
            raise ValueError(f"{name}: a fused c_attn weight has 3 x width output columns, got shape {tuple(shape)}")
        return [Block(role, True, i * d, (i + 1) * d) for i, role in enumerate(("query", "key", "value"))]
    transpose = bool(re.search(r"(c_proj|c_fc)\.weight$", name))
    for pattern, role in _PATTERNS:
        if re.search(pattern, name):
            return [Block(role, transpose)]
    raise ValueError(f"no role for {name}")


def state_formula(shape: Sequence[int], blocks: Sequence[Block], *, momentum: Mapping[str, str], rank: int,
                  second_moment: str, n_heads: int | None) -> dict[str, int]:
    """Numbers of state elements a parameter holds: ``{"momentum": ..., "second_moment": ...}``."""
    rows_all, cols = _matrix_shape(shape, blocks[0].transpose)
    out = {"momentum": 0, "second_moment": 0}
    for block in blocks:
        rows = len(range(rows_all)[slice(block.start, block.stop)])
        design = momentum[block.role]
        out["momentum"] += {"none": 0, "full": rows * cols, "low-rank": rows * min(rank, cols)}[design]
        if second_moment == "full":
            out["second_moment"] += rows * cols
        else:
            out["second_moment"] += {"rows": rows, "heads": n_heads or 0, "one": 1,
                                     "elements": rows * cols}[_MINI_PART[block.role]]
    return out


#: Adam-mini 1.1.1's partition of the second moment, by role
_MINI_PART = {"embedding": "rows", "head": "rows", "value": "rows", "attn_out": "rows", "mlp": "rows",
              "query": "heads", "key": "heads", "norm": "one", "position": "one", "bias": "elements"}


def _matrix_shape(shape: Sequence[int], transpose: bool) -> tuple[int, int]:
    if len(shape) <= 1:
        n = int(shape[0]) if shape else 1
        return n, 1
    if transpose:
        return int(shape[1]), int(shape[0])
    return int(shape[0]), math.prod(int(s) for s in shape[1:])


def _matrix_view(t: Tensor, transpose: bool) -> Tensor:
    """``t`` as (output neurons, fan-in), sharing its memory."""
    if t.dim() <= 1:
        return t.reshape(-1, 1)
    return t.t() if transpose else t.reshape(t.shape[0], -1)


def _groups(cols: int, rank: int) -> list[tuple[int, int]]:
    """``rank`` contiguous column ranges of near-equal size covering ``cols`` columns."""
    bounds = [round(j * cols / rank) for j in range(rank + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def _project(g: Tensor, groups: list[tuple[int, int]]) -> Tensor:
    """``g P``: each group's column sum divided by the square root of its size, shape (rows, r)."""
    return torch.stack([g[:, a:b].sum(dim=1) / math.sqrt(b - a) for a, b in groups], dim=1)


def _expand(coef: Tensor, groups: list[tuple[int, int]], cols: int) -> Tensor:
    """``coef P^T``, shape (rows, cols)."""
    sizes = torch.tensor([b - a for a, b in groups], device=coef.device)
    scale = torch.tensor([1.0 / math.sqrt(b - a) for a, b in groups], dtype=coef.dtype, device=coef.device)
    return torch.repeat_interleave(coef * scale, sizes, dim=1, output_size=cols)


class AdaPM(torch.optim.Optimizer):
    """Partial momentum by block role; a reconstruction of AdaPM (see the module docstring).

    Args:
        params: ``model.named_parameters()`` pairs, or groups of them (``{"params": [(name, p), ...],
            ...}``): roles come from the names.
        lr, betas, eps, weight_decay: as in ``torch.optim.AdamW`` (decoupled weight decay).
        second_moment: ``"full"`` (Adam's, per element) or ``"mini"`` (Adam-mini's partition).
        rank: rank of the low-rank momentum (capped at each block's fan-in).
        n_heads: attention heads, needed by ``second_moment="mini"`` for the query and key blocks.
        roles: ``{name: role or [Block, ...]}`` for parameters :func:`classify` does not place (or to
            override it).
        momentum: ``{role: "none" | "low-rank" | "full"}``, overriding :data:`DEFAULT_MOMENTUM`.
        bias_correction: divide the momentum by :math:`1 - \\beta_1^t` (the low-rank part and full
            momentum alike).

    >>> import torch
    >>> model = torch.nn.ModuleDict({"wte": torch.nn.Embedding(10, 4), "mlp": torch.nn.Linear(4, 8)})
    >>> opt = AdaPM(model.named_parameters(), lr=0.1)
    >>> for p in model.parameters(): p.grad = torch.ones_like(p)
    >>> opt.step()
    >>> {n: sorted(k for k in opt.state[p] if k != "step") for n, p in model.named_parameters()}
    {'wte.weight': ['second_moment'], 'mlp.weight': ['momentum', 'second_moment'], 'mlp.bias': ['momentum', 'second_moment']}
    >>> tuple(opt.state[model.mlp.weight]["momentum"].shape)  # rank 1: one value per output row
    (8, 1)
    """

    name = "AdaPM (reconstruction)"

    def __init__(self, params: Iterable, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.95), eps: float = 1e-8,
                 weight_decay: float = 0.0, *, second_moment: str = "full", rank: int = 1, n_heads: int | None = None,
                 roles: Mapping[str, str | Sequence[Block]] | None = None, momentum: Mapping[str, str] | None = None,
                 bias_correction: bool = True):
        if not lr >= 0:
            raise ValueError(f"lr must be >= 0, got {lr}")
        if not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"betas must lie in [0, 1), got {betas}")
        if not eps >= 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        if not weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        if second_moment not in SECOND_MOMENTS:
            raise ValueError(f"second_moment must be 'full' or 'mini', got {second_moment!r}")
        if not (isinstance(rank, int) and rank >= 1):
            raise ValueError(f"rank must be an int >= 1, got {rank!r}")
        designs = dict(DEFAULT_MOMENTUM)
        for role, design in (momentum or {}).items():
            if role not in ROLES or design not in DESIGNS:
                raise ValueError(f"momentum: {role!r}: {design!r} is not a role ({', '.join(ROLES)}) with a design "
                                 f"({', '.join(DESIGNS)})")
            designs[role] = design
        self.momentum, self.rank, self.second_moment, self.n_heads = designs, rank, second_moment, n_heads
        self.bias_correction = bool(bias_correction)
        self._roles = dict(roles or {})
        self.blocks: dict[Tensor, list[Block]] = {}
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    def add_param_group(self, param_group: dict) -> None:
        """Add a group (named parameters, as at construction) and assign its blocks; a ``ValueError``
        lists every parameter of the group that has no role, and nothing is added."""
        names = [n for n, _ in param_group["params"]] if isinstance(param_group.get("params"), list) and all(
            isinstance(x, tuple) for x in param_group["params"]) else param_group.get("param_names")
        if names is None:
            raise TypeError("AdaPM assigns momentum by parameter role: pass model.named_parameters()")
        params = [x[1] if isinstance(x, tuple) else x for x in param_group["params"]]
        blocks, unplaced = {}, []
        for name, p in zip(names, params):
            try:
                blocks[p] = self._blocks(name, p, self._roles)
            except ValueError as err:
                unplaced.append(str(err))
        if unplaced:
            raise ValueError("AdaPM: " + "; ".join(unplaced) + ". Pass roles={name: role} with a role from "
                             f"{', '.join(ROLES)} (or a list of adams.adapm.Block) for each of them")
        super().add_param_group(param_group)
        self.blocks.update(blocks)

    def _blocks(self, name: str, p: Tensor, roles: Mapping) -> list[Block]:
        given = roles.get(name)
        blocks = ([Block(given)] if isinstance(given, str) else list(given)) if given is not None \
            else classify(name, p.shape)
        for block in blocks:
            if block.role not in ROLES:
                raise ValueError(f"{name}: unknown role {block.role!r}")
            if self.second_moment == "mini" and _MINI_PART[block.role] == "heads":
                rows = len(range(_matrix_shape(p.shape, block.transpose)[0])[slice(block.start, block.stop)])
                if not self.n_heads or rows % self.n_heads:
                    raise ValueError(f"{name}: second_moment='mini' splits {block.role} rows by head: pass n_heads= "
                                     f"(a divisor of {rows}), got {self.n_heads!r}")
        return blocks

    def _key(self, kind: str, blocks: list[Block], k: int) -> str:
        return kind if len(blocks) == 1 else f"{kind}.{k}.{blocks[k].role}"

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("AdaPM does not support sparse gradients")
                state, blocks = self.state[p], self.blocks[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                state["step"] += 1
                t = int(state["step"].item())
                c1 = 1 - beta1**t if self.bias_correction else 1.0
                c2_sqrt = math.sqrt(1 - beta2**t)
                if wd != 0:
                    p.mul_(1 - lr * wd)
                w_all, g_all = _matrix_view(p, blocks[0].transpose), _matrix_view(p.grad, blocks[0].transpose)
                for k, block in enumerate(blocks):
                    rows = slice(block.start, block.stop)
                    w, g = w_all[rows], g_all[rows]
                    direction = self._direction(state, self._key("momentum", blocks, k), self.momentum[block.role],
                                                g, beta1, c1)
                    denom = self._denominator(state, self._key("second_moment", blocks, k), block.role, g, beta2,
                                              c2_sqrt, eps)
                    w.add_(direction / denom, alpha=-lr)
        return loss

    def _direction(self, state: dict, key: str, design: str, g: Tensor, beta1: float, c1: float) -> Tensor:
        if design == "none":
            return g
        if design == "full":
            m = state.get(key)
            if m is None:
                m = state[key] = torch.zeros_like(g, memory_format=torch.contiguous_format)
            m.lerp_(g, 1 - beta1)
            return m / c1
        groups = _groups(g.shape[1], min(self.rank, g.shape[1]))
        gp = _project(g, groups)
        m = state.get(key)
        if m is None:
            m = state[key] = torch.zeros_like(gp)
        m.lerp_(gp, 1 - beta1)
        return g - _expand(gp, groups, g.shape[1]) + _expand(m / c1, groups, g.shape[1])

    def _denominator(self, state: dict, key: str, role: str, g: Tensor, beta2: float, c2_sqrt: float,
                     eps: float) -> Tensor:
        part = "elements" if self.second_moment == "full" else _MINI_PART[role]
        if part == "elements":
            square = g * g
        elif part == "rows":
            square = (g * g).mean(dim=1, keepdim=True)
        elif part == "heads":
            square = (g * g).reshape(self.n_heads, -1).mean(dim=1, keepdim=True)
        else:
            square = (g * g).mean()
        v = state.get(key)
        if v is None:
            v = state[key] = torch.zeros_like(square, memory_format=torch.contiguous_format)
        v.mul_(beta2).add_(square, alpha=1 - beta2)
        denom = (v.sqrt() / c2_sqrt).add_(eps)
        if part == "heads":
            denom = denom.expand(self.n_heads, g.numel() // self.n_heads).reshape(g.shape)
        return denom

    def __repr__(self) -> str:
        return f"{self.name}(second_moment={self.second_moment!r}, rank={self.rank}, {self.defaults})"
