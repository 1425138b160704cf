"""Any folder of images (searched recursively), center-cropped and resized to a square resolution."""
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from ..errors import DataError
from .images import resize_uint8

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
    try:
        with Image.open(path) as im:
            im = im.convert("RGB" if channels == 3 else "L")
            w, h = im.size
            side = min(w, h)
            im = im.crop(((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side))
            if side != resolution:
                im = im.resize((resolution, resolution), Image.BICUBIC if side < resolution else Image.BOX)
            arr = np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"cannot decode image {path} ({type(exc).__name__}); remove or replace it") from None
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def load_image_folder(root: str, resolution: int, channels: int = 3, max_images: int | None = None) -> torch.Tensor:
    files = list_images(root)
    if max_images:
        files = files[:max_images]
    out = np.empty((len(files), channels, resolution, resolution), dtype=np.uint8)
    for i, path in enumerate(tqdm(files, desc=f"decoding {root}", unit="img", disable=len(files) < 2000)):
        out[i] = _decode(path, resolution, channels)
    return torch.from_numpy(out)


__all__ = ["load_image_folder", "list_images", "resize_uint8"]
