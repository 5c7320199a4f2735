"""The objective a probe measures: a model, a loss and a fixed evaluation set, as a function of weights.

``Objective(model, loss_fn, batches, mode=..., dtype=..., seed=...)`` freezes everything that
changes the function ``f(w)`` apart from the weights: the evaluation batches (the same at every
point, so that differences of gradients are not gradient noise), train or eval mode (dropout and
batch norm make them different objectives), the dtype, and the seed used for any randomness inside
the forward pass (reset before every evaluation, so that even train-mode dropout gives one
deterministic function). All of it is recorded in :meth:`Objective.describe`.

``loss_fn(model, batch)`` returns a scalar tensor; over several batches f is their mean. Weights
are dicts ``name -> tensor`` over the parameters being probed (all trainable parameters by default;
a subset gives the corresponding block of gradient and Hessian, the others held fixed).

Hessian-vector products come from one of two engines (:meth:`Objective.hvp_operator`). ``"graph"``,
the default, builds the gradient's graph once at a point and takes each product as one more
backward pass through it (double backward): the faster on CPU, at the memory of that graph.
``"jvp"`` is forward-over-reverse, ``torch.func.jvp`` of ``torch.func.grad`` (:meth:`Objective.hvp`),
recomputed per product and keeping nothing between them; when an operation lacks a forward-mode
rule it falls back to double backward and says so in ``hvp_method``. Decoupled weight decay is not part of
f: only the loss is. Attention written with ``torch.nn.functional.scaled_dot_product_attention`` is
evaluated with its math backend, the one that has second derivatives on CPU.

``device`` puts the model, the batches and every product on that device (``"cuda"``, ``"cuda:1"``,
``"cpu"``); weights handed to the objective are moved there, numbers come back as Python floats.
In float64 a probe gives the same numbers on every device up to rounding in the last digits.
"""
from __future__ import annotations

import contextlib
import copy
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import torch
from torch import nn
from torch.func import functional_call, grad, jvp
from torch.nn.attention import SDPBackend, sdpa_kernel

__all__ = ["Objective", "Params", "cross_entropy_loss", "resolve_device", "seeded_rng", "DEFAULT_ENGINE"]

Params = dict[str, torch.Tensor]
LossFn = Callable[[nn.Module, Any], torch.Tensor]
MODES = ("train", "eval")
#: how Hessian-vector products are taken unless told otherwise: ``"graph"`` was the faster engine on
#: every model of ``benchmarks/smoothness_probe.py`` (CPU); ``"jvp"`` keeps no graph between products
DEFAULT_ENGINE = "graph"



def cross_entropy_loss(model: torch.nn.Module, batch) -> torch.Tensor:
    """The default loss: cross entropy of ``model(inputs)`` against integer ``targets``; a model
    output with a ``.logits`` attribute (a Hugging Face model's) contributes its logits."""
    inputs, targets = batch
    logits = model(inputs)
    logits = getattr(logits, "logits", logits)
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))

def _cast(batch: Any, dtype: torch.dtype | None, device: torch.device | None = None) -> Any:
    """Tensors in a (nested) batch to ``device``, floating ones also to ``dtype``; the rest unchanged."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device=device, dtype=dtype if batch.is_floating_point() else None)
    if isinstance(batch, (list, tuple)):
        return type(batch)(_cast(b, dtype, device) for b in batch)
    if isinstance(batch, Mapping):
        return {k: _cast(v, dtype, device) for k, v in batch.items()}
    return batch


@contextlib.contextmanager
def seeded_rng(seed: int) -> Iterator[None]:
    """Inside: torch's global generators, the CPU's and every GPU's, seeded with ``seed`` (dropout on
    a GPU draws from that GPU's); after: every one of them as it was before."""
    gpus = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=gpus):
        torch.manual_seed(seed)
        yield


def resolve_device(device: str | torch.device | None) -> torch.device | None:
    """``device`` as a ``torch.device``, or a ``ValueError`` that says why it cannot hold a probe
    (not a device name, CUDA absent on this machine, or ``meta``, whose tensors hold no values)."""
    if device is None:
        return None
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device {device!r} is not a device name (cpu, cuda, cuda:1, ...): {err}") from None
    if device.type == "meta":
        raise ValueError("device 'meta' holds shapes without values: a probe needs numbers (use cpu or cuda)")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(device)!r}: CUDA is not available on this machine (use --device cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {str(device)!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


class _WithLoss(nn.Module):
    """Holds the model so that ``functional_call`` can swap its weights around a whole loss call."""

    def __init__(self, model: nn.Module, loss_fn: LossFn):
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, batch: Any) -> torch.Tensor:
        return self.loss_fn(self.model, batch)


class Objective:
    """f(w) = mean over ``batches`` of ``loss_fn(model with weights w, batch)``."""

    def __init__(
        self, model: nn.Module, loss_fn: LossFn, batches: Any | Sequence[Any], *, mode: str = "eval",
        dtype: torch.dtype | None = None, seed: int = 0, params: Iterable[str] | None = None,
        device: str | torch.device | None = None,
    ):
        if mode not in MODES:
            raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")
        if not callable(loss_fn):
            raise TypeError("loss_fn must be callable as loss_fn(model, batch) -> scalar tensor")
        batches = list(batches) if isinstance(batches, list) else [batches]
        if not batches:
            raise ValueError("need at least one evaluation batch")
        device = resolve_device(device)
        if dtype is not None and not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating type, got {dtype}")
        model = copy.deepcopy(model).to(device=device, dtype=dtype)
        if dtype is not None or device is not None:
            batches = [_cast(b, dtype, device) for b in batches]
        model.train(mode == "train")
        for p in model.parameters():
            p.requires_grad_(False)
        self.module = _WithLoss(model, loss_fn)
        self.batches = batches
        self.mode, self.seed = mode, seed
        self.dtype = next(model.parameters()).dtype
        self.device = next(model.parameters()).device
        trainable = [n for n, p in model.named_parameters()]
        names = trainable if params is None else list(params)
        unknown = sorted(set(names) - set(trainable))
        if unknown:
            raise KeyError(f"not parameters of the model: {unknown[:5]}")
        if not names:
            raise ValueError("no parameters to probe")
        self.names = names
        self.hvp_method = "jvp(grad)"
        # per batch; "graph" counts gradients built with create_graph=True for the one-graph engine
        self.evaluations = {"loss": 0, "grad": 0, "hvp": 0, "graph": 0}

    # -- weights ---------------------------------------------------------------------------------
    def weights(self) -> Params:
        """The model's current weights for the probed names (detached copies)."""
        state = dict(self.module.model.named_parameters())
        return {n: state[n].detach().clone() for n in self.names}

    def load(self, state: Mapping[str, torch.Tensor]) -> Params:
        """Load a full state dict (parameters and buffers) and return the probed weights."""
        self.module.model.load_state_dict({k: v.to(self.device, self.dtype) if v.is_floating_point() else v
                                           for k, v in state.items()})
        return self.weights()

    def _full(self, w: Params) -> Params:
        return {f"model.{n}": t for n, t in w.items()}

    def _call(self, w: Params, batch: Any) -> torch.Tensor:
        # The math backend of scaled_dot_product_attention is the one with second derivatives.
        with seeded_rng(self.seed), sdpa_kernel([SDPBackend.MATH]):
            out = functional_call(self.module, self._full(w), (batch,))
        if out.ndim != 0:
            raise ValueError(f"loss_fn must return a scalar, got shape {tuple(out.shape)}")
        return out

    # -- f, grad f, Hessian-vector products -------------------------------------------------------
    def loss(self, w: Params) -> float:
        with torch.no_grad():
            total = sum(self._call(w, b) for b in self.batches)
        self.evaluations["loss"] += len(self.batches)
        return float(total) / len(self.batches)

    def grad(self, w: Params) -> Params:
        out = {n: torch.zeros_like(t) for n, t in w.items()}
        for batch in self.batches:
            g = grad(lambda p: self._call(p, batch))(w)
            for n in out:
                out[n] += g[n]
        self.evaluations["grad"] += len(self.batches)
        return {n: t / len(self.batches) for n, t in out.items()}

    def batch_grads(self, w: Params) -> list[Params]:
        """The gradient of each batch's loss at ``w``, one dict per batch (their mean is :meth:`grad`).
        When the batches are independent random minibatches of one size, these are K draws of a
        minibatch gradient (:mod:`smoothness.noise`)."""
        out = [grad(lambda p: self._call(p, batch))(w) for batch in self.batches]
        self.evaluations["grad"] += len(self.batches)
        return out

    def hvp(self, w: Params, v: Params) -> Params:
        """H(w) v, summed over the batches and divided by their number, like f."""
        out = {n: torch.zeros_like(t) for n, t in w.items()}
        for batch in self.batches:
            hv = self._hvp_one(w, v, batch)
            for n in out:
                out[n] += hv[n]
        self.evaluations["hvp"] += len(self.batches)
        return {n: t / len(self.batches) for n, t in out.items()}

    def engine_method(self, engine: str) -> str:
        """How ``engine`` takes its products here (the ``hvp_method`` column of a probe table)."""
        return self.hvp_method if engine == "jvp" else "double backward (one graph)"

    def hvp_operator(self, w: Params, engine: str = DEFAULT_ENGINE):
        """A function v -> H(w) v for many products at one point.

        ``engine="jvp"``: :meth:`hvp` (forward-over-reverse, recomputed per product).
        ``engine="graph"``: build the gradient's graph once (``create_graph=True``) and take each
        product as one backward pass through it (double backward, as PyHessian does): cheaper per
        product, at the cost of keeping the graph in memory while the operator lives.
        """
        if engine == "jvp":
            return lambda v: self.hvp(w, v)
        if engine != "graph":
            raise ValueError(f"engine must be 'jvp' or 'graph', got {engine!r}")
        leaves = {n: t.detach().requires_grad_(True) for n, t in w.items()}
        graphs = []
        with torch.enable_grad():
            for batch in self.batches:
                loss = self._call(leaves, batch)
                graphs.append(torch.autograd.grad(loss, list(leaves.values()), create_graph=True))
        self.evaluations["graph"] += len(self.batches)

        def apply(v: Params) -> Params:
            out = {n: torch.zeros_like(t) for n, t in w.items()}
            for g in graphs:
                hv = torch.autograd.grad(g, list(leaves.values()), grad_outputs=[v[n] for n in leaves],
                                         retain_graph=True, allow_unused=True)
                for n, h in zip(leaves, hv):
                    if h is not None:
                        out[n] += h
            self.evaluations["hvp"] += len(self.batches)
            return {n: t / len(self.batches) for n, t in out.items()}

        return apply

    def _hvp_one(self, w: Params, v: Params, batch: Any) -> Params:
        if self.hvp_method == "jvp(grad)":
            try:
                return jvp(grad(lambda p: self._call(p, batch)), (w,), (v,))[1]
            except (NotImplementedError, RuntimeError) as err:
                if "forward" not in str(err).lower() and "jvp" not in str(err).lower():
                    raise
                self.hvp_method = "double backward"  # an op without a forward-mode rule
        leaves = {n: t.detach().requires_grad_(True) for n, t in w.items()}
        with torch.enable_grad():
            loss = self._call(leaves, batch)
            g = torch.autograd.grad(loss, list(leaves.values()), create_graph=True)
            dot = sum((gi * v[n]).sum() for gi, n in zip(g, leaves))
            hv = torch.autograd.grad(dot, list(leaves.values()), allow_unused=True)
        return {n: (h if h is not None else torch.zeros_like(leaves[n])).detach() for n, h in zip(leaves, hv)}

    def describe(self) -> dict:
        """What defines this objective, to be stored next to every number measured on it."""
        return {"mode": self.mode, "dtype": str(self.dtype).replace("torch.", ""), "device": str(self.device),
                "seed": self.seed,
                "n_batches": len(self.batches), "n_params": sum(self.module.model.get_parameter(n).numel()
                                                                for n in self.names)}
