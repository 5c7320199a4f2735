"""(L0, L1)-smoothness probes along a trajectory of checkpoints.

>>> import torch, smoothness
>>> model = torch.nn.Linear(3, 1)
>>> x, y = torch.randn(64, 3, generator=torch.Generator().manual_seed(0)), torch.zeros(64, 1)
>>> loss_fn = lambda m, batch: ((m(batch[0]) - batch[1]) ** 2).mean()
>>> smoothness.hessian_spectral_norm(model, loss_fn, (x, y), dtype=torch.float64).converged
True
>>> smoothness.frontier([2.0, 5.0], [0.0, 3.0], [0.0, 1.0])
array([5., 2.])

Modules: :mod:`~smoothness.objective` (the function being probed), :mod:`~smoothness.hessian`
(Hessian-vector products, spectral norm), :mod:`~smoothness.probes` (all probes at one point),
:mod:`~smoothness.frontier` (fitting (L0, L1)), :mod:`~smoothness.checkpoints` (safe loading),
:mod:`~smoothness.trajectory` (a whole run into one table), :mod:`~smoothness.spectrum` (Hessian
trace and spectral density, with the optional ``curvature`` extra), and the command line
(``python -m smoothness --help``).
"""
from smoothness.checkpoints import Checkpoint, CheckpointError, load_checkpoint
from smoothness.frontier import choose_pair, frontier, frontier_band, trend_line
from smoothness.hessian import SpectralNorm, directional_curvature, hessian_spectral_norm, spectral_norm
from smoothness.objective import Objective, cross_entropy_loss
from smoothness.probes import blocks, interior_gammas, probe_point
from smoothness.trajectory import TableError, TableLockedError, probe_trajectory, read_table, write_table

__all__ = [
    "Checkpoint", "CheckpointError", "load_checkpoint",
    "choose_pair", "frontier", "frontier_band", "trend_line",
    "SpectralNorm", "directional_curvature", "hessian_spectral_norm", "spectral_norm",
    "Objective", "cross_entropy_loss", "blocks", "interior_gammas", "probe_point",
    "probe_trajectory", "read_table", "write_table", "TableError", "TableLockedError",
]
