"""The standard picture of a probe table: local smoothness against gradient norm and momentum norm.

Log-log axes, one dot per checkpoint (coloured by training step), the sample frontier drawn as the
envelope lines L0*(L1) + L1 |grad f| for a few L1 along it, the bootstrap band of the frontier at
those L1, and the least-squares trend (dashed, labelled as not a bound).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.colors import Normalize
from matplotlib.ticker import NullFormatter

from smoothness.frontier import frontier, frontier_band, trend_line
from smoothness.probes import GLOBAL

__all__ = ["default_l1_grid", "plot_table", "MEASURES"]

MEASURES = {
    "fd_smoothness": "step finite difference L_hat",
    "hessian_norm": "Hessian spectral norm",
    "curvature": "directional curvature d'Hd/|d|^2",
}


def default_l1_grid(local_smoothness, grad_norm, n: int = 9) -> np.ndarray:
    """0 up to the L1 at which the sample frontier reaches 0 (max of L_hat / |grad f|)."""
    L, G = np.asarray(local_smoothness, float), np.asarray(grad_norm, float)
    ok = np.isfinite(L) & np.isfinite(G) & (G > 0)
    top = float(np.max(L[ok] / G[ok])) if ok.any() else 1.0
    return np.linspace(0.0, max(top, 1e-12), n)


def _panel(ax, x, L, steps, xlabel, ylabel, quantile, seed, norm):
    ok = np.isfinite(x) & np.isfinite(L) & (x > 0) & (L > 0)
    x, L, steps = x[ok], L[ok], steps[ok]
    if not ok.any():
        ax.text(0.5, 0.5, "no finite points", transform=ax.transAxes, ha="center")
        return None
    dots = ax.scatter(x, L, c=steps, cmap="viridis", norm=norm, s=18, zorder=3)
    grid = np.geomspace(x.min() / 2, x.max() * 2, 200)
    l1 = default_l1_grid(L, x, 5)[:-1]  # the last one has L0* = 0 and a line through the origin
    l0 = frontier(L, x, l1, quantile=quantile)
    low, high = frontier_band(L, x, l1, quantile=quantile, n_boot=300, seed=seed)
    for i, (a, b) in enumerate(zip(l0, l1)):
        label = "frontier: L0*(L1) + L1 x" if i == 0 else None
        ax.plot(grid, a + b * grid, color="tab:red", lw=1, alpha=0.8, label=label)
        ax.fill_between(grid, low[i] + b * grid, high[i] + b * grid, color="tab:red", alpha=0.08,
                        label="90% bootstrap band" if i == 0 else None)
    if ok.sum() >= 2:
        slope, intercept = trend_line(L, x)
        ax.plot(grid, np.exp(intercept) * grid**slope, "k--", lw=1, label=f"trend, slope {slope:.2f} (not a bound)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels collide on short log ranges
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_ylim(L.min() / 3, L.max() * 3)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)
    return dots


def plot_table(table: pd.DataFrame, *, measure: str = "fd_smoothness", block: str = GLOBAL,
               quantile: float | None = None, seed: int = 0, title: str | None = None):
    """Figure with local smoothness vs gradient norm (and vs momentum norm, when the table has it)."""
    import matplotlib.pyplot as plt

    if measure not in MEASURES:
        raise ValueError(f"measure must be one of {sorted(MEASURES)}, got {measure!r}")
    rows = table[table["block"] == block]
    if rows.empty:
        names = sorted(table["block"].unique())
        raise ValueError(f"no rows for block {block!r}; the table's {len(names)} blocks: {', '.join(map(str, names))}")
    L = rows[measure].to_numpy(float)
    if not np.isfinite(L).any():
        hint = {"hessian_norm": " (block rows carry it only when probed with --block-hessian)",
                "curvature": " (block rows carry it only when probed with --block-curvature)"}.get(measure, "")
        raise ValueError(f"block {block!r} has no finite {measure!r} to plot{hint}; "
                         f"measures with values there: {[m for m in MEASURES if np.isfinite(rows[m].to_numpy(float)).any()]}")
    steps = rows["step"].to_numpy(float) if "step" in rows and rows["step"].notna().all() else np.arange(len(rows), dtype=float)
    momentum = rows["momentum_norm"].to_numpy(float) if "momentum_norm" in rows else np.full(len(rows), np.nan)
    panels = [("grad_norm", "gradient norm |grad f(w_t)|")]
    if np.isfinite(momentum).any():
        panels.append(("momentum_norm", "momentum norm |m_t|"))
    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 4.8), squeeze=False)
    dots, norm = None, Normalize(steps.min(), steps.max())  # one colour scale for both panels
    for ax, (column, xlabel) in zip(axes[0], panels):
        dots = _panel(ax, rows[column].to_numpy(float), L, steps, xlabel, MEASURES[measure], quantile, seed, norm) or dots
    if dots is not None:
        has_steps = "step" in rows and rows["step"].notna().all()
        fig.colorbar(dots, ax=axes[0].tolist(), label="training step" if has_steps else "checkpoint index")
    fig.suptitle(title or f"{MEASURES[measure]} along the trajectory (block: {block})")
    return fig
