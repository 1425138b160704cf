"""2-D toy distributions: ring of 8 Gaussians, 5x5 grid of 25 Gaussians, swiss roll."""
import math

import numpy as np
import torch

from ..errors import ConfigError
from .spec import Dataset

VARIANTS = ("ring8", "grid25", "swiss_roll")
# per-variant noise, as in the mode-collapse literature (Metz et al. 2017; Srivastava et al. 2017)
DEFAULT_STD = {"ring8": 0.02, "grid25": 0.05, "swiss_roll": 0.05}


def resolve_std(variant: str, std: float | None) -> float:
    mode_centers(variant)  # validates the variant name
    if std is None:
        return DEFAULT_STD[variant]
    if not isinstance(std, (int, float)) or isinstance(std, bool) or not math.isfinite(std) or std <= 0:
        raise ConfigError(f"data.std={std!r} is invalid; it must be a positive finite number (or null for the variant's default)")
    return float(std)


def mode_centers(variant: str, radius: float = 2.0, spacing: float = 2.0):
    """The Gaussian centers of a mixture variant (None for the swiss roll, which has no modes)."""
    if variant == "ring8":
        angles = np.arange(8) * 2 * math.pi / 8
        return np.stack([radius * np.cos(angles), radius * np.sin(angles)], 1)
    if variant == "grid25":
        ticks = (np.arange(5) - 2) * spacing
        return np.stack(np.meshgrid(ticks, ticks, indexing="ij"), -1).reshape(-1, 2)
    if variant == "swiss_roll":
        return None
    raise ConfigError(f"data.variant={variant!r} is not a toy2d variant; valid: {', '.join(VARIANTS)}")


def sample_toy2d(variant: str, n: int, seed: int, std: float, radius: float = 2.0, spacing: float = 2.0) -> torch.Tensor:
    """n points of the variant, drawn with a fixed seed (the training pool and the evaluation reference)."""
    rng = np.random.default_rng(seed)
    centers = mode_centers(variant, radius, spacing)
    if centers is None:
        from sklearn.datasets import make_swiss_roll

        pts, _ = make_swiss_roll(n, noise=0.0, random_state=seed)
        pts = pts[:, [0, 2]] / 7.5  # scale to roughly [-2, 2]
        pts = pts + rng.normal(0, std, pts.shape)
    else:
        idx = rng.integers(0, len(centers), n)
        pts = centers[idx] + rng.normal(0, std, (n, 2))
    return torch.as_tensor(pts, dtype=torch.float32)


def _check(dm) -> None:
    """data.variant / data.std / data.n_points, when the datamodule is built (one-line ConfigErrors)."""
    dm.std = resolve_std(dm.variant, dm.std)
    n = dm.n_points
    if not (isinstance(n, int) and not isinstance(n, bool) and n > 0):
        hint = f" (write {int(n)}, not {n})" if isinstance(n, float) and n.is_integer() else ""
        raise ConfigError(f"data.n_points={n!r} is invalid; it must be a positive integer (the size of the toy data pool){hint}")


def _load(dm) -> torch.Tensor:
    return sample_toy2d(dm.variant, dm.n_points, dm.data_seed, dm.std)


DATASET = Dataset("toy2d", _load, image=False, channels=(), features="toy", check=_check)
