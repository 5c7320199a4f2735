"""Input checks shared by the closed forms and the simulator: clear errors instead of NaNs."""
from __future__ import annotations

import numpy as np


def check_grid(mu, sigma, beta1, beta2, skewness: float = 0.0, kurtosis: float = 3.0):
    """Broadcast (mu, sigma, beta1, beta2) to float arrays of one shape, or say what is wrong."""
    try:
        arrays = np.broadcast_arrays(*(np.asarray(x, dtype=float) for x in (mu, sigma, beta1, beta2)))
    except ValueError as err:
        raise ValueError(f"mu, sigma, beta1 and beta2 do not broadcast together: {err}") from None
    mu, sigma, beta1, beta2 = arrays
    if not np.all(np.isfinite(mu)):
        raise ValueError("mu must be finite")
    if not (np.all(np.isfinite(sigma)) and np.all(sigma > 0)):
        raise ValueError("sigma must be finite and > 0 (with sigma = 0 there is no noise to study)")
    for name, beta in (("beta1", beta1), ("beta2", beta2)):
        if not np.all((beta >= 0) & (beta < 1)):
            raise ValueError(f"{name} must lie in [0, 1), got values from {beta.min()} to {beta.max()}")
    if not np.isfinite(kurtosis) or kurtosis < 1 + skewness**2:
        raise ValueError(f"kurtosis must be finite and >= 1 + skewness^2, got {kurtosis} (skewness {skewness})")
    return mu, sigma, beta1, beta2
