"""Image sets: the fixed, ordered uint8 images a score is taken over (a tensor, or image files decoded at
native size), and the real images of a run (its training data, or another split of the same dataset)."""
import hashlib
from pathlib import Path

import numpy as np
import torch

SUBSET_SEED = 0  # which real images a protocol uses when it asks for fewer than the dataset holds


def subset_indices(total: int, n: int | None, seed: int = SUBSET_SEED) -> np.ndarray:
    """n of total indices, a fixed random subset in increasing order (all when n is None or >= total)."""
    if n is None or n >= total:
        return np.arange(total)
    return np.sort(np.random.RandomState(seed).choice(total, n, replace=False))


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats -> uint8 exactly as torchvision's save_image rounds, so a generator scores the same
    as the PNGs it writes."""
    return images.detach().float().clamp(-1, 1).add(1).div(2).mul(255).add(0.5).clamp(0, 255).to(torch.uint8)


class ImageSet:
    """A fixed, ordered set of uint8 images: a tensor (N, C, H, W) or image files decoded at native size."""

    def __init__(self, name: str, split: str, images: torch.Tensor | None = None, files: list | None = None,
                 channels: int = 3):
        if (images is None) == (files is None):
            raise ValueError("give images or files")
        self.name, self.split, self.images, self.files, self.channels = name, split, images, files, channels

    def __len__(self) -> int:
        return len(self.images) if self.images is not None else len(self.files)

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        if self.images is not None:
            h.update(str(tuple(self.images.shape)).encode())
            for chunk in self.images.reshape(len(self.images), -1).split(4096):
                h.update(chunk.contiguous().numpy().tobytes())
        else:
            for f in self.files:
                st = Path(f).stat()
                h.update(f"{Path(f).resolve()}:{st.st_size}:{st.st_mtime_ns};".encode())
        h.update(f"channels={self.channels}".encode())
        return h.hexdigest()

    def batches(self, batch_size: int):
        if self.images is not None:
            yield from self.images.split(batch_size)
            return
        from ..data.images import open_8bit

        pending = []
        for f in self.files:
            # the training loader's decoding: 16-bit images scaled, not clipped; decompression bombs refused
            arr = np.array(open_8bit(f, self.channels), dtype=np.uint8)  # writable: torch.from_numpy warns otherwise
            t = torch.from_numpy(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1).copy())
            if pending and (len(pending) == batch_size or pending[0].shape != t.shape):
                yield torch.stack(pending)  # images of one size per batch: the extractor resizes them together
                pending = []
            pending.append(t)
        if pending:
            yield torch.stack(pending)


def folder_set(root: str, n: int | None = None, channels: int = 3, name: str | None = None) -> ImageSet:
    from ..data.image_folder import list_images

    files = list_images(root)
    idx = subset_indices(len(files), n)
    return ImageSet(name or f"folder:{Path(root).expanduser().resolve()}", "files", files=[files[i] for i in idx],
                    channels=channels)


def datamodule_set(datamodule, split: str | None, n: int | None) -> ImageSet:
    """The real images of a run: the training data, or another split of the same dataset, at the run's resolution."""
    from ..assemble import build_datamodule

    dm = datamodule
    if dm.spec.splits is None:  # one set of images (digits, a folder)
        split = dm.spec.whole
    elif split not in (None, "", dm.split):
        dm = build_datamodule(dict(name=dm.name, batch_size=dm.batch_size, root=dm.root, resolution=dm.resolution,
                                   channels=dm.channels, split=split, download=dm.download, max_images=dm.max_images,
                                   cache=dm.cache)).load()
    data = dm.load().data
    idx = subset_indices(data.shape[0], n)
    images = data[torch.from_numpy(idx).to(data.device)].cpu()
    return ImageSet(dm.name, split or dm.split, images=images, channels=images.shape[1])


__all__ = ["ImageSet", "datamodule_set", "folder_set", "subset_indices", "to_uint8", "SUBSET_SEED"]
