"""CIFAR-10 in its official python format (cifar-10-batches-py), downloaded when online.

We read the pickled batches ourselves instead of through torchvision.datasets.CIFAR10 because that
class insists on the official md5 sums, which rejects test fixtures and re-packed copies.
"""
import pickle
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"
FOLDER = "cifar-10-batches-py"
SPLITS = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}


def _download(root: Path) -> None:
    from torchvision.datasets.utils import download_and_extract_archive

    download_and_extract_archive(URL, str(root), filename="cifar-10-python.tar.gz", md5=MD5)


def load_cifar10(root: str, split: str = "train", download: bool = True) -> torch.Tensor:
    """uint8 tensor (N, 3, 32, 32) of the split's images."""
    root_path = Path(root).expanduser()
    folder = root_path / FOLDER
    if split not in SPLITS:
        raise DataError(f"data.split={split!r} is not a CIFAR-10 split; valid: train, test")
    if not folder.is_dir():
        reason = "downloads are off (data.download=false)"
        if download:
            try:
                root_path.mkdir(parents=True, exist_ok=True)
                _download(root_path)
            except Exception as exc:  # offline, DNS failure, bad archive...
                reason = f"the download failed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no detail'})"
        if not folder.is_dir():
            raise DataError(
                f"CIFAR-10 not found at {folder} and {reason}; download cifar-10-python.tar.gz from {URL}, "
                f"extract it into {root_path} (giving {folder}), or set data.root to where it is")
    arrays = []
    for name in SPLITS[split]:
        path = folder / name
        if not path.is_file():
            raise DataError(f"CIFAR-10 batch file {path} is missing; re-extract cifar-10-python.tar.gz into {root_path}")
        try:
            with open(path, "rb") as f:
                entry = pickle.load(f, encoding="latin1")
            arrays.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        except Exception as exc:
            raise DataError(f"CIFAR-10 batch file {path} is corrupt ({type(exc).__name__}); re-extract cifar-10-python.tar.gz") from None
    return torch.from_numpy(np.concatenate(arrays))
