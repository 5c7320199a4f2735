"""adams: the AdamS optimizer (arXiv 2505.16363) for PyTorch, with a NumPy teaching reference.

``adams.AdamS`` is the optimizer; ``adams.functional`` the update as tensor functions;
``adams.reference`` the NumPy float64 version for teaching; ``adams.distributed`` sharded
checkpoints and per-process memory under ``torch.distributed`` (DDP, FSDP2).

>>> import torch, adams
>>> w = torch.nn.Parameter(torch.ones(3))
>>> opt = adams.AdamS([w], lr=0.1, weight_decay=0.0)
>>> w.grad = torch.tensor([1.0, -2.0, 0.5])
>>> opt.step()
>>> torch.round(1.0 - w.detach(), decimals=4)  # first step: lr / sqrt(1 - beta2) per coordinate
tensor([ 0.4472, -0.4472,  0.4472])
"""
from adams import checkpoints
from adams.adapm import AdaPM
from adams.checkpoints import CheckpointError
from adams.memory import param_bytes, state_bytes
from adams.optimizer import AdamS
from adams.registry import OPTIMIZERS, make_optimizer
from adams.theory import first_step_size, step_bound

__all__ = ["AdamS", "make_optimizer", "OPTIMIZERS", "AdaPM", "state_bytes", "param_bytes",
           "step_bound", "first_step_size", "CheckpointError", "checkpoints"]
__version__ = "0.1.0"
