"""CIFAR-10 in its official python format (cifar-10-batches-py), downloaded when online.

We read the pickled batches ourselves instead of through torchvision.datasets.CIFAR10 because that
class insists on the official md5 sums, which rejects test fixtures and re-packed copies.

A pickle can name any importable callable and have it called while loading, so a crafted
``data_batch_1`` would run code under plain ``pickle.load``. The batches are therefore read with a
restricted unpickler that resolves only what the official format (and numpy arrays re-pickled by
Python 3) refers to: numpy's array reconstruction and ``_codecs.encode`` (how protocol-2 pickles
store bytes). Anything else is refused before it is called. This is the root fix; md5s cannot be it,
since re-packed copies and test fixtures are legitimate and have other md5s. The official md5s
(torchvision's) are still checked: a file that differs from the official one is loaded (through the
restricted unpickler) and named in a warning, so a damaged download does not pass unnoticed.
"""
import hashlib
import io
import logging
import pickle
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .paths import printable
from .spec import Dataset

log = logging.getLogger(__name__)

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"
FOLDER = "cifar-10-batches-py"
SPLITS = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
IMAGE_BYTES = 3 * 32 * 32

# the globals a CIFAR-10 batch may name: Python 2's numpy (the official files), numpy 1.x / 2.x re-pickles
# (protocols 2-4: _reconstruct + ndarray + dtype; protocol 5: _frombuffer), protocol-2 bytes (_codecs.encode)
ALLOWED_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("_codecs", "encode"),
})


def official_md5s() -> dict:
    """{file name: md5} of the official batches, as torchvision records them."""
    from torchvision.datasets import CIFAR10

    return dict(CIFAR10.train_list + CIFAR10.test_list)


class RestrictedUnpickler(pickle.Unpickler):
    """pickle.Unpickler that resolves only ALLOWED_GLOBALS (Python docs, "Restricting Globals")."""

    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"it refers to {module}.{name}, which a CIFAR-10 batch never holds")
        return super().find_class(module, name)


def read_batch(path: Path) -> tuple[np.ndarray, bool]:
    """The uint8 images (N, 3, 32, 32) of one batch file and whether it is the official file (md5).

    DataError (one line naming the file) when it cannot be read or is not a CIFAR-10 batch.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"CIFAR-10 batch file {path} cannot be read ({exc.strerror or type(exc).__name__})") from None
    official = hashlib.md5(raw).hexdigest() == official_md5s().get(path.name)
    refuse = f"CIFAR-10 batch file {path} is not a CIFAR-10 batch"
    try:
        entry = RestrictedUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except pickle.UnpicklingError as exc:
        raise DataError(f"{refuse} ({str(exc).splitlines()[0] if str(exc) else 'unreadable pickle'}); "
                        f"re-extract cifar-10-python.tar.gz") from None
    except Exception as exc:  # truncated or garbage: whatever the unpickler trips over
        raise DataError(f"CIFAR-10 batch file {path} is corrupt ({type(exc).__name__}); re-extract cifar-10-python.tar.gz") from None
    if not isinstance(entry, dict):
        raise DataError(f"{refuse} (it holds a {type(entry).__name__}, not a dict)")
    data = entry.get("data", entry.get(b"data"))
    if data is None:
        raise DataError(f"{refuse} (no 'data' entry; it holds {sorted(map(str, entry))})")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
        what = f"{data.dtype} array" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{refuse} ('data' is a {what}, not a uint8 array)")
    if data.size == 0 or data.size % IMAGE_BYTES:
        raise DataError(f"{refuse} ('data' has {data.size} values, not a whole number of 3072-byte 32x32 RGB images)")
    return data.reshape(-1, 3, 32, 32), official


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
    arrays, unofficial = [], []
    for name in SPLITS[split]:
        path = folder / name
        if not path.is_file():
            raise DataError(f"CIFAR-10 batch file {path} is missing; re-extract cifar-10-python.tar.gz into {root_path}")
        images, official = read_batch(path)
        arrays.append(images)
        if not official:
            unofficial.append(name)
    if unofficial:
        log.warning("CIFAR-10 files %s in %s differ from the official ones (md5): fine for a re-packed copy, "
                    "otherwise re-extract cifar-10-python.tar.gz", ", ".join(unofficial), printable(folder))
    return torch.from_numpy(np.concatenate(arrays))


def _load(dm) -> torch.Tensor:
    from .images import resize_uint8

    return resize_uint8(load_cifar10(dm.root_or_fail(), dm.split, dm.download), dm.resolution)


DATASET = Dataset("cifar10", _load, channels=(3,), splits=tuple(SPLITS), named_reference=True)
