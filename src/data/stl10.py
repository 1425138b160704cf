"""STL-10 in its official binary format (stl10_binary/*_X.bin), resized to 48x48 as in the SN paper.

Read directly (not via torchvision.datasets.STL10, which enforces md5 sums) so fixtures and
re-packed copies load through the same code.
"""
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .images import resize_uint8
from .spec import Dataset

URL = "http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz"
MD5 = "91f7769df0f17e558f3565bffb0c7dfb"
FOLDER = "stl10_binary"
SPLITS = {"unlabeled": ["unlabeled_X.bin"], "train": ["train_X.bin"], "test": ["test_X.bin"],
          "train+unlabeled": ["train_X.bin", "unlabeled_X.bin"]}


def load_stl10(root: str, split: str = "unlabeled", resolution: int = 48, download: bool = True) -> torch.Tensor:
    root_path = Path(root).expanduser()
    folder = root_path / FOLDER
    if split not in SPLITS:
        raise DataError(f"data.split={split!r} is not an STL-10 split; valid: {', '.join(SPLITS)}")
    if not folder.is_dir():
        reason = "downloads are off (data.download=false)"
        if download:
            try:
                from torchvision.datasets.utils import download_and_extract_archive

                root_path.mkdir(parents=True, exist_ok=True)
                download_and_extract_archive(URL, str(root_path), filename="stl10_binary.tar.gz", md5=MD5)
            except Exception as exc:
                reason = f"the download failed ({type(exc).__name__})"
        if not folder.is_dir():
            raise DataError(f"STL-10 not found at {folder} and {reason}; download stl10_binary.tar.gz from {URL}, "
                            f"extract it into {root_path}, or set data.root to where it is")
    arrays = []
    for name in SPLITS[split]:
        path = folder / name
        if not path.is_file():
            raise DataError(f"STL-10 file {path} is missing; re-extract stl10_binary.tar.gz into {root_path}")
        raw = np.fromfile(path, dtype=np.uint8)
        if raw.size == 0 or raw.size % (3 * 96 * 96):
            raise DataError(f"STL-10 file {path} is truncated or corrupt ({raw.size} bytes is not a whole number of 3x96x96 images)")
        # the official files are column-major per channel: (N, C, W, H)
        arrays.append(raw.reshape(-1, 3, 96, 96).transpose(0, 1, 3, 2))
    return resize_uint8(torch.from_numpy(np.ascontiguousarray(np.concatenate(arrays))), resolution)


def _load(dm) -> torch.Tensor:
    root = dm.root_or_fail()
    sources = [Path(root).expanduser() / FOLDER / f for f in SPLITS.get(dm.split, [])]
    return dm.cached("stl10", lambda: load_stl10(root, dm.split, dm.resolution, dm.download), sources=sources)


DATASET = Dataset("stl10", _load, channels=(3,), splits=tuple(SPLITS), named_reference=True)
