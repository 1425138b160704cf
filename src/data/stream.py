"""Streaming real batches from an image folder on disk (``data.in_memory=false``).

For folders too big to decode into memory. Three pieces:

- ``FolderImages``: the folder as a lazily decoded (N, C, H, W) uint8 image set. Each image is decoded,
  center-cropped and resized by the same function the in-memory loader uses (``image_folder._decode``),
  so a streamed image equals the in-memory one bit for bit. It indexes like the in-memory tensor
  (``images[i]``, ``images[index_tensor]``, ``.shape``), which is what the evaluators and the spectral
  monitor use to draw a few real images.
- ``ShuffledStream``: an infinite, seeded sampler over file indices WITHOUT replacement: pass e over the
  files is a fresh permutation (seeded by (seed, e)), passes follow one another, and a batch may straddle
  two passes. Position p of the sequence is pass p // N, slot p % N of that pass's permutation, so the
  sequence can be restarted at any position (resume) without replaying it.
- ``RealBatches``: an IterableDataset yielding one training step's real images at a time (n_dis batches
  of data.batch_size, concatenated) as {"real": uint8 tensor, "end": position after the batch}. Worker w
  of W produces the step batches w, w + W, w + 2W, ...; torch's DataLoader returns them in order
  (worker 0, 1, ..., W-1, 0, ...), so the batch sequence does not depend on the number of workers.
  An image that cannot be decoded ends the worker's stream with {"error": one line naming the file}
  instead of an exception: torch re-raises a worker's exception with the worker's whole traceback in
  its message, while the datamodule raises this line as a DataError when the batch reaches training.

Being an IterableDataset, the loader is left alone by Lightning under DDP (no DistributedSampler is
injected); each rank streams its own seeded sequence, as each rank samples its own batches in memory.
"""
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import IterableDataset, Sampler, get_worker_info

from ..errors import DataError
from .image_folder import _decode, list_images


class FolderImages:
    """The images of a folder (sorted paths, as the in-memory loader orders them), decoded on access."""

    def __init__(self, files: list, resolution: int, channels: int = 3):
        self.files = [Path(f) for f in files]
        self.resolution, self.channels = int(resolution), int(channels)

    @classmethod
    def from_root(cls, root: str, resolution: int, channels: int = 3, max_images: int | None = None) -> "FolderImages":
        files = list_images(root)
        return cls(files[:max_images] if max_images else files, resolution, channels)

    def __len__(self) -> int:
        return len(self.files)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.files), self.channels, self.resolution, self.resolution))

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def _array(self, i) -> np.ndarray:
        return _decode(self.files[int(i)], self.resolution, self.channels)  # the in-memory loader's decoding

    def decode(self, i: int) -> torch.Tensor:
        return torch.from_numpy(self._array(i).copy())  # a C-contiguous, writable copy

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            return self.decode(index)
        if isinstance(index, slice):
            return self.stack(range(len(self))[index])
        if isinstance(index, torch.Tensor) and index.dim() == 0:
            return self.decode(int(index))
        return self.stack(index.tolist() if hasattr(index, "tolist") else list(index))

    def stack(self, indices) -> torch.Tensor:
        """uint8 (len(indices), C, H, W) of the given images, in order."""
        out = np.empty((len(indices), self.channels, self.resolution, self.resolution), dtype=np.uint8)
        for j, i in enumerate(indices):
            out[j] = self._array(i)
        return torch.from_numpy(out)


def _pass_seed(seed: int, epoch: int) -> int:
    return (int(seed) * 0x9E3779B1 + int(epoch) * 0x85EBCA77 + 0x2545F491) & 0x7FFF_FFFF_FFFF_FFFF


class ShuffledStream(Sampler):
    """Infinite seeded sequence of indices in [0, n): a fresh permutation per pass, starting at ``start``."""

    def __init__(self, n: int, seed: int, start: int = 0):
        self.n, self.seed, self.start = int(n), int(seed), int(start)
        self._epoch, self._perm = -1, None

    def permutation(self, epoch: int) -> torch.Tensor:
        if epoch != self._epoch:
            self._perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(_pass_seed(self.seed, epoch)))
            self._epoch = epoch
        return self._perm

    def take(self, position: int, count: int) -> list:
        """The ``count`` indices at positions [position, position + count) of the sequence."""
        out = []
        while count > 0:
            epoch, slot = divmod(position, self.n)
            chunk = self.permutation(epoch)[slot: slot + count].tolist()
            out += chunk
            position, count = position + len(chunk), count - len(chunk)
        return out

    def __iter__(self):
        position = self.start
        while True:
            epoch, slot = divmod(position, self.n)
            for i in self.permutation(epoch)[slot:].tolist():
                yield i
            position = (epoch + 1) * self.n


class RealBatches(IterableDataset):
    """Step batches of ``per_step`` real images from ``images``, in ``sampler``'s order from ``sampler.start``."""

    def __init__(self, images: FolderImages, sampler: ShuffledStream, per_step: int):
        super().__init__()
        self.images, self.sampler, self.per_step = images, sampler, int(per_step)

    def batch(self, k: int) -> dict:
        begin = self.sampler.start + k * self.per_step
        return {"real": self.images.stack(self.sampler.take(begin, self.per_step)), "end": begin + self.per_step}

    def __iter__(self):
        info = get_worker_info()
        k, stride = (info.id, info.num_workers) if info is not None else (0, 1)
        while True:
            try:
                batch = self.batch(k)
            except DataError as exc:  # travels to the main process as data, not as a worker traceback
                yield {"error": str(exc)}
                return
            yield batch
            k += stride


__all__ = ["FolderImages", "ShuffledStream", "RealBatches"]
