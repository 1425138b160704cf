"""Any folder of images (searched recursively), center-cropped and resized to a square resolution."""
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from ..errors import DataError
from .images import check_fits_in_memory, open_8bit, resize_uint8
from .spec import Dataset

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


def list_images(root: str) -> list:
    root_path = Path(root).expanduser()
    if not root_path.is_dir():
        raise DataError(f"data.root={root} does not exist or is not a folder; point it at a folder of images ({', '.join(EXTENSIONS)})")
    files = sorted(p for p in root_path.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())
    if not files:
        raise DataError(f"data.root={root} holds no images (looked for {', '.join(EXTENSIONS)} recursively)")
    return files


def _decode(path: Path, resolution: int, channels: int) -> np.ndarray:
    """uint8 (C, resolution, resolution): the image's 8-bit pixels (images.open_8bit), center-cropped and resized."""
    im = open_8bit(path, channels)
    w, h = im.size
    side = min(w, h)
    try:
        im = im.crop(((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side))
        if side != resolution:
            im = im.resize((resolution, resolution), Image.BICUBIC if side < resolution else Image.BOX)
        arr = np.asarray(im, dtype=np.uint8)
    except (ValueError, OSError, MemoryError) as exc:
        raise DataError(f"cannot resize image {path} ({w}x{h}) to {resolution}x{resolution} ({type(exc).__name__})") from None
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def decode_files(files: list, resolution: int, channels: int = 3, desc: str = "decoding") -> torch.Tensor:
    """uint8 (len(files), channels, resolution, resolution), refused up front when it cannot fit in memory."""
    check_fits_in_memory(len(files), channels, resolution, f"{len(files)} decoded images",
                         hint=", data.max_images, or stream the folder (data.in_memory=false)")
    out = np.empty((len(files), channels, resolution, resolution), dtype=np.uint8)
    for i, path in enumerate(tqdm(files, desc=desc, unit="img", disable=len(files) < 2000)):
        out[i] = _decode(path, resolution, channels)
    return torch.from_numpy(out)


def load_image_folder(root: str, resolution: int, channels: int = 3, max_images: int | None = None) -> torch.Tensor:
    files = list_images(root)
    return decode_files(files[:max_images] if max_images else files, resolution, channels, desc=f"decoding {root}")


__all__ = ["load_image_folder", "decode_files", "list_images", "resize_uint8"]


def _load(dm) -> torch.Tensor:
    """In memory: the folder decoded once (cached on disk); streaming: a FolderImages decoded on access."""
    if dm.streaming:
        from .stream import FolderImages

        data = FolderImages.from_root(dm.root_or_fail(), dm.resolution, dm.channels, dm.max_images)
        check_fits_in_memory(dm.batch_size, dm.channels, dm.resolution, f"a batch of {dm.batch_size} images")
        return data
    files = list_images(dm.root_or_fail())
    files = files[: dm.max_images] if dm.max_images else files
    return dm.cached("folder", lambda: decode_files(files, dm.resolution, dm.channels, desc=f"decoding {dm.root}"), sources=files)


DATASET = Dataset("image_folder", _load, channels=(1, 3), whole="files", streamable=True)
