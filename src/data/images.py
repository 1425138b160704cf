"""Decoding and resizing images into uint8 tensors (N, C, H, W), and the guards that keep them honest.

- ``open_8bit``: one image file as an 8-bit PIL image in L (channels=1) or RGB (channels=3). PIL's own
  ``convert`` clips 16-bit grayscale ("I;16", "I") to 255 (a 16-bit gradient of mean 127.5 comes out
  at ~250); here integer modes are scaled to their high byte (v >> 8, what PIL itself does for 16-bit
  RGB PNGs) and float images ("F") from [0, 1] to 0..255. Values outside those ranges are refused
  rather than guessed. An image over PIL's pixel limit (``Image.MAX_IMAGE_PIXELS``: the warning level,
  not only the error at twice it) is refused as a possible decompression bomb; anything else PIL
  fails on becomes one DataError line naming the file.
- ``check_fits_in_memory``: refuses, before any allocation, a decode/resize whose uint8 output alone
  would exceed the memory available (say ``data.resolution=100000``).
"""
import os
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import DataError


def to_8bit(im: Image.Image, path) -> Image.Image:
    """``im`` with 16/32-bit integer or float grayscale scaled to 8-bit L; other modes unchanged."""
    if im.mode.startswith("I"):  # I;16, I;16B, I;16L, I;16N (uint16) and I (int32: PNG/PGM 16-bit, TIFF 32-bit)
        values = np.asarray(im).astype(np.int64)
        low, high = (int(values.min()), int(values.max())) if values.size else (0, 0)
        if low < 0 or high > 65535:
            raise DataError(f"image {path} ({im.mode}) holds values from {low} to {high}; integer images are read "
                            f"as 16-bit (0..65535): convert it to 8 or 16 bits")
        return Image.fromarray((values >> 8).astype(np.uint8), mode="L")
    if im.mode == "F":
        values = np.asarray(im, dtype=np.float64)
        if values.size and not (np.isfinite(values).all() and values.min() >= 0 and values.max() <= 1):
            raise DataError(f"image {path} (32-bit float) holds values from {np.nanmin(values):g} to {np.nanmax(values):g}; "
                            f"float images must hold values in [0, 1]")
        return Image.fromarray(np.round(values * 255).astype(np.uint8), mode="L")
    return im


def open_8bit(path, channels: int = 3) -> Image.Image:
    """The image at ``path`` as an 8-bit "RGB" (channels=3) or "L" (channels=1) PIL image, read into memory.

    DataError (one line naming the file) for anything that is not a decodable image within PIL's pixel limit.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # refuse at PIL's warning level too
            with Image.open(path) as im:
                return to_8bit(im, path).convert("RGB" if channels == 3 else "L")
    except DataError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(f"image {path} exceeds PIL's pixel limit of {Image.MAX_IMAGE_PIXELS} pixels "
                        f"({str(exc).split(',')[0]}; a decompression bomb?); remove it, or shrink it if it is genuine") from None
    except Exception as exc:  # unidentified, truncated, corrupt: PIL raises many types
        raise DataError(f"cannot decode image {path} ({type(exc).__name__}); remove or replace it") from None


def available_memory() -> int | None:
    """Bytes of memory available to this process now (Linux MemAvailable; else total RAM; None if unknown)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def check_fits_in_memory(n: int, channels: int, resolution: int, what: str, extra_bytes: int = 0, hint: str = "") -> None:
    """DataError when n uint8 images of channels x resolution^2 (plus extra_bytes) exceed the available memory."""
    need = int(n) * int(channels) * int(resolution) ** 2 + int(extra_bytes)
    have = available_memory()
    if have is not None and need > have:
        raise DataError(f"data.resolution={resolution} needs {need / 2**30:.1f} GiB for {what} ({n} x {channels}x"
                        f"{resolution}x{resolution} uint8) but {have / 2**30:.1f} GiB of memory is available; lower "
                        f"data.resolution{hint}")


def resize_uint8(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """Area-resize (anti-aliased) uint8 NCHW images to resolution x resolution (center-cropped to square)."""
    n, c, h, w = images.shape
    side = min(h, w)
    if h != w:
        top, left = (h - side) // 2, (w - side) // 2
        images = images[:, :, top:top + side, left:left + side]
    if side == resolution:
        return images.contiguous()
    chunk_n = min(n, 2048)  # float32 working copies of one chunk, in and out
    check_fits_in_memory(n, c, resolution, f"{n} resized images", extra_bytes=4 * chunk_n * c * (side ** 2 + resolution ** 2))
    out = []
    for chunk in images.split(2048):
        x = F.interpolate(chunk.float(), size=(resolution, resolution), mode="area" if side > resolution else "bilinear",
                          **({} if side > resolution else {"align_corners": False}))
        out.append(x.round().clamp(0, 255).to(torch.uint8))
    return torch.cat(out)
