"""The hyperparameters of one AdamS update, as one small frozen type passed down every path.

:class:`Hyper` is made (and checked, :func:`check_hyperparameters`) once per parameter group and
step, at the public entry points (:class:`adams.AdamS`, :func:`adams.functional.adams`,
:func:`adams.functional.fused_adams_`), and then handed to the for-loop, foreach and fused paths.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

__all__ = ["Hyper", "check_hyperparameters"]


@dataclass(frozen=True)
class Hyper:
    """``lr`` (eta), ``beta1``, ``beta2``, ``eps`` (outside the square root), ``weight_decay`` (lambda,
    decoupled), ``bias_correction`` (divide by c_t = 1 - beta1^t) and ``maximize``; checked when made."""

    lr: float
    beta1: float
    beta2: float
    eps: float
    weight_decay: float
    bias_correction: bool = True
    maximize: bool = False

    def __post_init__(self) -> None:
        check_hyperparameters(lr=self.lr, beta1=self.beta1, beta2=self.beta2, eps=self.eps,
                              weight_decay=self.weight_decay, bias_correction=self.bias_correction,
                              maximize=self.maximize)

    def as_kwargs(self) -> dict:
        """The keyword arguments of :func:`adams.functional.adams_update`."""
        return {"lr": self.lr, "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps,
                "weight_decay": self.weight_decay, "bias_correction": self.bias_correction,
                "maximize": self.maximize}


def check_hyperparameters(*, lr: float, beta1: float, beta2: float, eps: float, weight_decay: float,
                          bias_correction: bool = True, maximize: bool = False) -> None:
    """Raise ``ValueError`` (``TypeError`` for a wrong type) naming the first unusable hyperparameter.

    ``lr``, ``eps`` and ``weight_decay`` are finite numbers >= 0, the betas lie in [0, 1), and the
    two flags are booleans (a string such as ``'no'`` would otherwise count as true).
    """
    if type(lr) is type(eps) is type(weight_decay) is type(beta1) is type(beta2) is float and (
            0.0 <= lr < math.inf and 0.0 <= eps < math.inf and 0.0 <= weight_decay < math.inf
            and 0.0 <= beta1 < 1.0 and 0.0 <= beta2 < 1.0 and type(bias_correction) is type(maximize) is bool):
        return  # the usual case, in one expression
    for name, value in (("lr", lr), ("eps", eps), ("weight_decay", weight_decay)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
        if not (math.isfinite(float(value)) and value >= 0.0):
            raise ValueError(f"Invalid {name}: {name}={value} (must be a finite number >= 0)")
    for i, beta in enumerate((beta1, beta2)):
        if isinstance(beta, bool) or not isinstance(beta, numbers.Real):
            raise TypeError(f"betas[{i}] must be a number, got {type(beta).__name__} {beta!r}")
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"Invalid beta{i + 1}: betas[{i}]={beta} (must be in [0, 1))")
    for name, flag in (("bias_correction", bias_correction), ("maximize", maximize)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be True or False, got {type(flag).__name__} {flag!r}")
