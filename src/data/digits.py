"""scikit-learn's 8x8 handwritten digits (1,797 images, shipped with scikit-learn: always offline)."""
import numpy as np
import torch


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
