"""Real data: one module per dataset (toy2d, digits, cifar10, stl10, image_folder), each declaring what it
is (``DATASET``, src/data/spec.py); the datamodule that holds, samples or streams it."""
from .datamodule import GANDataModule
from .spec import Dataset, dataset, datasets, names

__all__ = ["GANDataModule", "Dataset", "dataset", "datasets", "names"]
