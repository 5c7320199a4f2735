"""``adams.AdamS``: a drop-in replacement for ``torch.optim.AdamW``."""
from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass, field
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import Callable, Iterable, Literal

import torch
from torch import Tensor

from adams import _fused
from adams import functional as F
from adams._state import checked_state_dict, validate_group
from adams.theory import step_bound

__all__ = ["AdamS", "BETA_DRIFT_TOLERANCE"]

#: AdamS warns once when a group's betas move (a scheduler cycling beta1, say) so that the bound on
#: each coordinate's step, :func:`adams.step_bound`, exceeds the bound at the betas the group was
#: made with by more than this factor (2%). OneCycleLR's default cycle, beta1 down to 0.85 with
#: beta2 = 0.95, raises it from 1.026 to 1.100.
BETA_DRIFT_TOLERANCE = 1.02

NonFinite = Literal["raise", "skip"]
_is_sparse = attrgetter("is_sparse")
_get_exp_avg, _get_step = itemgetter("exp_avg"), itemgetter("step")


class AdamS(torch.optim.Optimizer):
    r"""AdamS: Adam whose denominator is built from the momentum instead of a second moment.

    Zhang, Wang & Chen, *AdamS: Momentum Itself Can Be A Normalizer for LLM Pretraining and
    Post-training*, arXiv 2505.16363 (EMNLP 2025).

    **Symbols.** :math:`w` the parameters, :math:`g_t` the gradient at step :math:`t` (counted from
    1), :math:`m` the momentum (``exp_avg``, the *only* buffer), :math:`\eta` = ``lr``,
    :math:`\lambda` = ``weight_decay``, :math:`(\beta_1, \beta_2)` = ``betas``, :math:`\epsilon` =
    ``eps``, :math:`m_0 = 0`, :math:`c_t = 1 - \beta_1^t`.

    **Update** (default, ``bias_correction=True``, as in the authors' released code):

    .. math::

        w &\leftarrow (1 - \eta\lambda)\, w \\
        \nu_t &= \beta_2 \,(m_{t-1}/c_t)^2 + (1 - \beta_2)\, g_t^2 \\
        m_t &= \beta_1 m_{t-1} + (1 - \beta_1)\, g_t \\
        w &\leftarrow w - \eta\, \frac{m_t / c_t}{\sqrt{\nu_t} + \epsilon}

    With ``bias_correction=False`` every :math:`c_t` is 1: the form printed in the paper.
    The denominator uses :math:`m_{t-1}`, the momentum *before* :math:`g_t` is folded in.

    **Why it works.** With :math:`\epsilon = 0` the step is bounded per coordinate by a constant of
    the betas alone (:func:`adams.step_bound`: 1.026 at (0.9, 0.95) in the paper-text form), and it
    is invariant to rescaling all gradients. Under gradient noise, :math:`\nu_t` tracks Adam's
    second moment when the signal-to-noise ratio is large (see ``analysis.stationary``).

    **Memory.** The state is ``step`` and ``exp_avg``: one buffer the size of the parameters, half
    of AdamW's state and the same as SGD with momentum. A step reads w, g, m and writes w, m
    (20 bytes per fp32 parameter; AdamW moves 28). :func:`adams.state_bytes` measures it.

    Args:
        params: iterable of parameters or of dicts defining parameter groups; every argument below
            except ``nonfinite`` can be set per group.
        lr: learning rate :math:`\eta` (float or 1-element tensor), default 1e-3.
        betas: :math:`(\beta_1, \beta_2)`, each in [0, 1), default (0.9, 0.95). Keep
            :math:`\beta_2` close to :math:`\beta_1`; 0.999 makes the step bound 3.2x larger.
        eps: :math:`\epsilon`, added *outside* the square root, default 1e-8.
        weight_decay: decoupled weight decay :math:`\lambda`, applied first, default 1e-2.
        bias_correction: divide both the previous and the new momentum by :math:`c_t` (default)
            or use the paper-text form.
        maximize: maximize the objective (uses :math:`-g`).
        foreach: use the multi-tensor ``torch._foreach_*`` path.
        fused: use the single-pass compiled CPU kernel (:mod:`adams._fused`). With neither flag
            set, the fused kernel is used when it is built and accepts the tensors (plain dense
            contiguous CPU tensors), and the foreach path otherwise; with ``fused=True`` a
            fallback to foreach comes with a warning that says why;
            ``foreach=False, fused=False`` selects the readable for-loop path. On a GPU with
            Triton installed (the ``triton`` extra) the default (and ``fused=True``) is the
            single-pass Triton kernel (:mod:`adams._triton`), one launch per dtype; on an
            accelerator Triton does not serve, ``fused=True`` takes the step compiled by
            ``torch.compile`` (:mod:`adams._compiled`), with a warning. All paths
            compute the same function (tested to 1e-12 in float64 and 1e-6 in float32).
        nonfinite: ``None`` (default: no check, as in ``torch.optim``), ``"raise"`` to raise
            :class:`FloatingPointError` when any gradient holds a NaN or an infinity, or
            ``"skip"`` to skip the whole step, leaving every parameter and all state untouched
            (counted in :attr:`skipped_steps`). Checked before anything is modified; with
            distributed (``DTensor``) gradients all processes of their meshes agree on the verdict.

    **Distributed training.** Under ``DistributedDataParallel`` parameters are plain tensors and
    nothing changes. Under FSDP2 (``torch.distributed.fsdp.fully_shard``) parameters, gradients and
    ``exp_avg`` are ``DTensor`` shards: each process updates the shard it holds, with no extra
    communication, on the same path (the fused kernel included) as for plain tensors, and holds
    ``1/world_size`` of the momentum. :mod:`adams.distributed` saves and loads sharded checkpoints.

    Example:
        >>> import torch, adams
        >>> torch.manual_seed(0) and None
        >>> model = torch.nn.Linear(4, 1)
        >>> opt = adams.AdamS(model.parameters(), lr=1e-2, weight_decay=0.1)
        >>> x, y = torch.randn(64, 4), torch.randn(64, 1)
        >>> for _ in range(100):
        ...     opt.zero_grad()
        ...     loss = torch.nn.functional.mse_loss(model(x), y)
        ...     loss.backward()
        ...     opt.step()
        >>> sorted(opt.state[model.weight])
        ['exp_avg', 'step']

    .. warning:: Departures from ``torch.optim.AdamW``

       * **First step.** At :math:`t = 1`, :math:`m_0 = 0` makes every coordinate move by about
         :math:`\eta/\sqrt{1-\beta_2}` (4.47 :math:`\eta` at :math:`\beta_2 = 0.95`) in the default
         form and :math:`(1-\beta_1)\eta/\sqrt{1-\beta_2}` (0.45 :math:`\eta`) in the paper-text
         form; AdamW moves by about :math:`\eta`. Learning-rate warmup hides this; without warmup
         lower the first learning rates (:func:`adams.first_step_size`).
       * The denominator's bias correction divides :math:`m_{t-1}` by :math:`c_t`, not by
         :math:`c_{t-1}` (as the released code does).
       * Default ``betas`` are (0.9, 0.95), not (0.9, 0.999); default ``weight_decay`` is 1e-2.
       * No ``amsgrad``, ``capturable`` or ``differentiable`` options; 16-bit parameters are updated
         in float32 and rounded once (``exp_avg`` is kept in the parameter's dtype). An update
         smaller than half a unit in the last place of a 16-bit weight is lost to rounding, as in
         any optimizer without float32 master weights: keep master weights in float32 if that
         matters.
       * A zero gradient with zero momentum and ``eps = 0`` gives 0/0 = NaN, as AdamW does.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict],
        lr: float | Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.95),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        *,
        bias_correction: bool = True,
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | None = None,
        nonfinite: NonFinite | None = None,
    ) -> None:
        if foreach and fused:
            raise ValueError("foreach and fused cannot both be True: choose one path")
        if nonfinite not in (None, "raise", "skip"):
            raise ValueError(f"nonfinite must be None, 'raise' or 'skip', got {nonfinite!r}")
        if fused:
            ok, reason = _fused.fused_available()
            if not ok:
                raise RuntimeError(f"fused=True but the fused AdamS kernel is unavailable: {reason}")
        defaults = dict(
            lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
            bias_correction=bias_correction, maximize=maximize, foreach=foreach, fused=fused,
        )
        self.nonfinite = nonfinite
        self.skipped_steps = 0
        self._warned_no_grad = False
        self._warned_betas = False
        self._betas_seen: list = []  # per group: (betas it was made with, betas last seen)
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        validate_group(self.param_groups[-1])
        betas = tuple(self.param_groups[-1]["betas"])
        self._betas_seen.append((betas, betas))

    def load_state_dict(self, state_dict: dict, *, convert: bool = False) -> None:
        """Load a state saved by :meth:`state_dict`, after checking all of it; nothing changes on error.

        Checked before anything is loaded: the hyperparameters of every saved group, and for every
        parameter a state that is empty (no step taken yet) or holds exactly ``step`` (a whole
        number >= 0) and ``exp_avg`` (a tensor of the parameter's shape). A state from another
        optimizer is refused with a message that says so: AdamW's holds ``exp_avg_sq`` as well,
        and loading it as is would also carry its betas (0.9, 0.999) over.

        ``convert=True`` takes an Adam or AdamW state instead: each parameter keeps its ``step``
        and its ``exp_avg`` (the same exponential average of gradients AdamS keeps), the second
        moment is dropped, and every group keeps *this* optimizer's hyperparameters.
        """
        checked = checked_state_dict(self, state_dict, convert=convert)
        super().load_state_dict(checked)
        self._betas_seen = [(tuple(g["betas"]),) * 2 for g in self.param_groups]

    def __getstate__(self) -> dict:
        return {**super().__getstate__(), "nonfinite": self.nonfinite, "skipped_steps": self.skipped_steps}

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("nonfinite", None)
        self.__dict__.setdefault("skipped_steps", 0)
        self.__dict__.setdefault("_warned_no_grad", False)
        self.__dict__.setdefault("_warned_betas", False)
        self.__dict__.setdefault("_betas_seen", [])
        for group in self.param_groups:  # groups saved before an option existed get its default
            group.setdefault("bias_correction", True)
            group.setdefault("maximize", False)
            group.setdefault("foreach", None)
            group.setdefault("fused", None)
        # step counters are float32 CPU tensors, as torch.optim keeps them (an older or hand-made
        # state may hold a Python number or another dtype)
        for param_state in self.state.values():
            step = param_state.get("step")
            if step is not None and not (
                isinstance(step, Tensor) and step.dtype == torch.float32 and step.is_cpu and step.numel() == 1
            ):
                param_state["step"] = torch.tensor(float(step), dtype=torch.float32)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None):
        """Take one optimization step; ``closure`` re-evaluates the model and returns the loss.

        All or nothing: every group's hyperparameters, every gradient, momentum and step counter,
        and the memory they occupy are checked before the first write. A problem raises
        ``ValueError`` (``TypeError`` for a wrong type) naming it, with every parameter and all
        optimizer state exactly as before the call.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()

        plans, fresh = self._plan()
        if not self._warned_no_grad and not any(plan.params for plan in plans):
            self._warned_no_grad = True
            _warn("AdamS.step(): no parameter has a gradient, so nothing changes. If the model was "
                  "wrapped after the optimizer was made (FSDP2's fully_shard replaces the parameters), "
                  "make the optimizer after wrapping.")
        if self.nonfinite is not None and not _all_finite([g for plan in plans for g in plan.grads]):
            if self.nonfinite == "raise":
                raise FloatingPointError(
                    "AdamS: a gradient holds NaN or inf; no parameter or state was changed"
                )
            self.skipped_steps += 1
            return loss

        self.state.update(fresh)  # the first step of some parameters: their state starts now
        for plan in plans:
            if plan.calls is not None:  # increments every state["step"], then updates params and exp_avgs
                F.run_fused(plan.calls, plan.hyper)
            else:
                F.apply_checked(*plan.tensors, plan.steps, impl=plan.impl, hyper=plan.hyper, counts=plan.counts)
        return loss

    def _plan(self) -> tuple[list[_Plan], dict]:
        """Check everything a step needs, change nothing: one :class:`_Plan` per group, and the
        state to create for parameters taking their first step."""
        plans, fresh, fallbacks = [], {}, []
        for index, group in enumerate(self.param_groups):
            hyper = validate_group(group)
            self._note_betas(index, group)
            params = [p for p in group["params"] if p.grad is not None]
            grads = [p.grad for p in params]
            if any(map(_is_sparse, grads)):
                raise RuntimeError(
                    "AdamS does not support sparse gradients; use dense gradients "
                    "(e.g. nn.Embedding(sparse=False)) or torch.optim.SparseAdam"
                )
            states = [self.state.get(p) or fresh.setdefault(p, _initial_state(p)) for p in params]
            if not all(map(_complete, states)):
                i = next(i for i, state in enumerate(states) if not _complete(state))
                raise ValueError(f"AdamS: the state of parameter {i} of group {index} holds "
                                 f"{sorted(states[i])}, not 'step' and an 'exp_avg' tensor")
            tensors = F.local_tensors(params, grads, list(map(_get_exp_avg, states)))
            steps = list(map(_get_step, states))
            impl, calls = self._impl(group), None
            single_pass = _single_pass(group, tensors[0], impl)
            if single_pass is not None:
                impl = single_pass
            elif impl == "fused":
                try:  # the kernel's own checks of layout, dtype and counters, for every group first
                    calls = F.fused_calls(*tensors, steps, overlap_checked=True)
                except _fused.Rejected as rejected:
                    if group["fused"]:  # asked for explicitly: fall back, and say why once all is checked
                        fallbacks.append(str(rejected))
                    impl = "foreach"
            plans.append(_Plan(group, tensors, steps, hyper, impl, grads, calls))
        # checked over all groups at once: memory shared between groups is caught too
        joined = [[t for plan in plans for t in plan.tensors[k]] for k in range(3)]
        unfused = [[t for plan in plans if plan.calls is None for t in plan.tensors[k]] for k in range(3)]
        try:
            try:
                F.check_layout(*unfused)  # the kernel's calls have checked the others
            except ValueError:
                F.check_layout(*joined)  # the same problem, with the tensor counted over all groups
                raise
            F.check_overlap(*joined)
            counts = F.check_steps([t for plan in plans for t in plan.steps])
        except ValueError as err:
            raise ValueError(f"AdamS: {err} (tensors counted over all parameter groups, in order); "
                             "no parameter or state was changed") from None
        at = 0
        for plan in plans:  # each group's counter values, read once above
            plan.counts, at = counts[at:at + len(plan.steps)], at + len(plan.steps)
        for reason in fallbacks:
            _warn(f"AdamS: fused path unavailable ({reason}); using foreach")
        return plans, fresh

    def _note_betas(self, index: int, group: dict) -> None:
        """Warn once if the betas moved (a scheduler's ``cycle_momentum``, say) to where the step
        bound exceeds that of the betas the group was made with by more than
        :data:`BETA_DRIFT_TOLERANCE`."""
        betas = tuple(group["betas"])
        seen = self._betas_seen
        if index >= len(seen):  # a group made before this check existed (an unpickled optimizer)
            seen.extend([None] * (index + 1 - len(seen)))
        if seen[index] is None:
            seen[index] = (betas, betas)
        start, last = seen[index]
        if betas == last or self._warned_betas:
            return
        seen[index] = (start, betas)
        before, now = step_bound(*map(float, start)), step_bound(*map(float, betas))
        if now > before * BETA_DRIFT_TOLERANCE:
            self._warned_betas = True
            _warn(
                f"AdamS: the betas of parameter group {index} moved from {start} to {betas} (a learning-rate "
                f"scheduler with cycle_momentum=True does this), which raises the bound on each coordinate's "
                f"step (adams.step_bound) from {before:.3f} to {now:.3f} lr. AdamS keeps beta2 close to beta1; "
                "pass cycle_momentum=False to keep the betas fixed.")

    def _impl(self, group: dict) -> F.Impl:
        """The path a group asks for: the fused kernel (when it is built) unless told otherwise.

        Whether the kernel accepts the tensors is checked as it is called (``step`` falls back to
        foreach, with a warning if ``fused=True`` was asked for, when it does not).
        """
        foreach, fused = group["foreach"], group["fused"]
        if foreach is False and fused is False:
            return "forloop"
        if foreach or fused is False:
            return "foreach"
        if _fused.kernel_or_none() is not None:
            return "fused"
        if fused:
            _warn(f"AdamS: fused path unavailable ({_fused.fused_available()[1]}); using foreach")
        return "foreach"


def _single_pass(group: dict, params: list[Tensor], impl: F.Impl) -> F.Impl | None:
    """The single-pass path a group takes where the compiled CPU kernel does not apply, or ``None``.

    The Triton kernel when the group's tensors are on a GPU (or on the CPU with Triton's interpreter
    on and no compiled CPU kernel), it did not ask for foreach or the for-loop, and Triton runs
    there (:func:`adams._triton.triton_available`). Where Triton cannot run on an accelerator and
    the group asked for ``fused=True``, the step compiled by ``torch.compile``
    (:mod:`adams._compiled`), with a warning that says why.
    """
    if not params or group["foreach"] or group["fused"] is False or impl == "forloop":
        return None
    device = params[0].device
    if device.type == "cpu" and impl == "fused":  # the compiled CPU kernel is there: it is faster
        return None
    from adams import _compiled, _triton

    if device.type == "cpu" and not _triton._interpreting():
        return None
    if not all(p.device == device for p in params):
        return None

    triton_ok, why = _triton.triton_available(device)
    if triton_ok:
        return "triton"
    if group["fused"] and device.type != "cpu" and _compiled.compiled_available(device)[0]:
        _warn(f"AdamS: the Triton kernel cannot run on {device} ({why}); using the step compiled by torch.compile")
        return "compiled"
    return None


_LIBRARIES = (str(Path(torch.__file__).parent), str(Path(__file__).parent))


def _warn(message: str) -> None:
    """``warnings.warn`` attributed to the first caller outside adams and torch (the user's
    ``opt.step()``), however deep the decorators that torch wraps ``step`` in."""
    frame, level = sys._getframe(1), 2
    while frame is not None and frame.f_code.co_filename.startswith(_LIBRARIES):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, stacklevel=level)


@dataclass
class _Plan:
    """One parameter group's checked step: what :func:`adams.functional.apply_checked` is given."""

    group: dict
    tensors: tuple[list[Tensor], list[Tensor], list[Tensor]]  # params, grads, exp_avgs as updated
    steps: list[Tensor]
    hyper: F.Hyper
    impl: F.Impl

    @property
    def params(self) -> list[Tensor]:
        return self.tensors[0]

    grads: list[Tensor]  # as the parameters hold them (DTensors under FSDP2), for the non-finite check
    calls: list | None  # the fused kernel's checked calls, or None on another path
    counts: list[int] = field(default_factory=list)  # the step counters' values before this step


def _complete(state: dict) -> bool:
    return "step" in state and isinstance(state.get("exp_avg"), Tensor)


def _initial_state(p: Tensor) -> dict:
    """The state of a parameter before its first step: no steps taken, zero momentum."""
    return {"step": torch.tensor(0.0, dtype=torch.float32),
            "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format)}


def _all_finite(grads: list[Tensor]) -> bool:
    """True if no gradient holds a NaN or an infinity, on any process that holds a shard of one.

    Distributed gradients (``DTensor``) are checked through their local shards, and the verdict is
    then agreed over every process group of their device meshes, so that all processes skip, or
    all take, the same step.
    """
    if not grads:
        return True
    meshes = []
    local = []
    for g in grads:
        mesh = getattr(g, "device_mesh", None)
        if mesh is not None:  # a DTensor
            if not any(mesh is seen for seen in meshes):
                meshes.append(mesh)
            g = g.to_local()
        local.append(torch.view_as_real(g) if g.is_complex() else g)
    norms = torch._foreach_norm(local, float("inf"))
    finite = bool(torch.isfinite(torch.stack([n.float() for n in norms])).all())
    if meshes:
        import torch.distributed as dist

        flag = torch.tensor(0.0 if finite else 1.0)
        for mesh in meshes:  # in the order the gradients list them, the same on every process
            flag = flag.to(mesh.device_type)
            for dim in range(mesh.ndim):
                dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=mesh.get_group(dim))
        finite = flag.item() == 0.0
    return finite
