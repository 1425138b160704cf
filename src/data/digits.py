"""scikit-learn's 8x8 handwritten digits (1,797 images, shipped with scikit-learn: always offline)."""
import numpy as np
import torch

from .spec import Dataset


def load_digits_images(resolution: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (N, 1, 8, 8) scaled from 0..16 to 0..255, and their labels."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    tensor = torch.from_numpy(images)
    if resolution != 8:
        from .images import resize_uint8

        tensor = resize_uint8(tensor, resolution)
    return tensor, torch.from_numpy(bunch.target.astype(np.int64))


def _load(dm) -> torch.Tensor:
    dm.data, dm.labels = load_digits_images(dm.resolution)
    return dm.data


# its feature network: a small classifier trained on these digits (src/metrics/digits.py)
DATASET = Dataset("digits", _load, channels=(1,), features="digits-mlp", named_reference=True)
