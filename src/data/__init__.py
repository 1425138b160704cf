"""Real data: toy2d, digits (scikit-learn), cifar10, stl10 (48x48), image_folder."""
from .datamodule import GANDataModule, NAMES

__all__ = ["GANDataModule", "NAMES"]
