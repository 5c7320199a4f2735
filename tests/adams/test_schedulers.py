"""Every ``torch.optim.lr_scheduler`` scheduler drives AdamS exactly as it drives AdamW."""
import copy

import pytest
import torch
from torch.optim import lr_scheduler as S

import adams

SCHEDULERS = {
    "LambdaLR": lambda o: S.LambdaLR(o, lambda e: 0.9**e),
    "MultiplicativeLR": lambda o: S.MultiplicativeLR(o, lambda e: 0.95),
    "StepLR": lambda o: S.StepLR(o, step_size=3, gamma=0.5),
    "MultiStepLR": lambda o: S.MultiStepLR(o, milestones=[2, 5], gamma=0.3),
    "ConstantLR": lambda o: S.ConstantLR(o, factor=0.5, total_iters=4),
    "LinearLR": lambda o: S.LinearLR(o, start_factor=0.1, total_iters=5),
    "ExponentialLR": lambda o: S.ExponentialLR(o, gamma=0.9),
    "PolynomialLR": lambda o: S.PolynomialLR(o, total_iters=8, power=2.0),
    "CosineAnnealingLR": lambda o: S.CosineAnnealingLR(o, T_max=10, eta_min=1e-4),
    "CosineAnnealingWarmRestarts": lambda o: S.CosineAnnealingWarmRestarts(o, T_0=4),
    "CyclicLR": lambda o: S.CyclicLR(o, base_lr=1e-4, max_lr=1e-2, step_size_up=3),
    "OneCycleLR": lambda o: S.OneCycleLR(o, max_lr=1e-2, total_steps=12),
    "ChainedScheduler": lambda o: S.ChainedScheduler(
        [S.LinearLR(o, start_factor=0.5, total_iters=3), S.ExponentialLR(o, gamma=0.9)]
    ),
    "SequentialLR": lambda o: S.SequentialLR(
        o, [S.LinearLR(o, start_factor=0.1, total_iters=3), S.CosineAnnealingLR(o, T_max=8)],
        milestones=[3],
    ),
    "ReduceLROnPlateau": lambda o: S.ReduceLROnPlateau(o, patience=1, factor=0.5),
}


# CyclicLR and OneCycleLR cycle beta1 by default, and AdamS says so once (tested in
# tests/adams/test_hostile_adams.py); here only the schedules themselves are compared.
pytestmark = pytest.mark.filterwarnings("ignore:AdamS. the betas of parameter group")

def test_every_scheduler_in_torch_is_covered():
    """A scheduler added to torch must be added here too."""
    public = {
        name for name in dir(S)
        if isinstance(getattr(S, name), type)
        and issubclass(getattr(S, name), (S.LRScheduler, S.ReduceLROnPlateau))
        and not name.startswith("_") and name not in ("LRScheduler", "_LRScheduler")
    }
    assert public <= set(SCHEDULERS), sorted(public - set(SCHEDULERS))


def _trace(opt_cls, make_scheduler, **kwargs):
    w = torch.nn.Parameter(torch.ones(4))
    opt = opt_cls([w], lr=1e-2, betas=(0.9, 0.95), weight_decay=0.0, **kwargs)
    sched = make_scheduler(opt)
    lrs, beta1s = [], []
    for i in range(12):
        w.grad = torch.full((4,), float(i % 3) - 1.0)
        opt.step()
        if isinstance(sched, S.ReduceLROnPlateau):
            sched.step(1.0)  # a plateau: the lr must drop
        else:
            sched.step()
        lrs.append(float(opt.param_groups[0]["lr"]))
        beta1s.append(float(opt.param_groups[0]["betas"][0]))
    return lrs, beta1s, w


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_scheduler_matches_adamw(name):
    lrs, betas, w = _trace(adams.AdamS, SCHEDULERS[name])
    lrs_ref, betas_ref, _ = _trace(torch.optim.AdamW, SCHEDULERS[name])
    assert lrs == lrs_ref
    assert betas == betas_ref  # CyclicLR and OneCycleLR cycle beta1 through `betas`
    assert len(set(lrs)) > 1 or name == "ConstantLR" and len(set(lrs)) >= 1
    assert torch.isfinite(w).all()


def test_scheduler_state_survives_optimizer_round_trip():
    w = torch.nn.Parameter(torch.ones(2))
    opt = adams.AdamS([w], lr=1e-2)
    sched = S.CosineAnnealingLR(opt, T_max=10)
    for _ in range(4):
        w.grad = torch.ones(2)
        opt.step()
        sched.step()
    w2 = torch.nn.Parameter(w.detach().clone())
    opt2 = adams.AdamS([w2], lr=1e-2)
    sched2 = S.CosineAnnealingLR(opt2, T_max=10)
    # deep copies: as in torch.optim, an in-memory state_dict shares its tensors with the optimizer
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))
    sched2.load_state_dict(copy.deepcopy(sched.state_dict()))
    for _ in range(3):
        for p, o, s in ((w, opt, sched), (w2, opt2, sched2)):
            p.grad = torch.ones(2)
            o.step()
            s.step()
    assert torch.equal(w, w2)
    assert opt.param_groups[0]["lr"] == opt2.param_groups[0]["lr"]
