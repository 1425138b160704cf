"""The real data of a run, held in memory (on the training device) and sampled there.

GAN training draws a fresh random real batch for every D update; keeping the whole (uint8) dataset
in one tensor on the device makes that an index operation with no host-to-device copies, and the
sampling generator's state goes into checkpoints so resumed runs see the same batches.
"""
import hashlib
import os
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from ..errors import ConfigError, DataError

NAMES = ("toy2d", "digits", "cifar10", "stl10", "image_folder")


def default_cache_dir() -> Path:
    return Path(os.environ.get("GANLAB_CACHE", Path.home() / ".cache" / "lipschitz-gan-lab"))


class GANDataModule(L.LightningDataModule):
    def __init__(self, name: str, batch_size: int, root: str | None = None, resolution: int | None = None,
                 channels: int | None = None, split: str = "train", download: bool = True, variant: str = "ring8",
                 std: float | None = None, n_points: int = 100_000, max_images: int | None = None, cache: bool = True,
                 data_seed: int = 0, **_ignored):
        super().__init__()
        if name not in NAMES:
            raise ConfigError(f"data.name={name!r} is unknown; valid: {', '.join(NAMES)}")
        self.name, self.batch_size, self.root, self.resolution, self.channels = name, batch_size, root, resolution, channels
        if name == "toy2d":
            from .toy2d import resolve_std

            std = resolve_std(variant, std)
        self.split, self.download, self.variant, self.std, self.n_points = split, download, variant, std, n_points
        self.max_images, self.cache, self.data_seed = max_images, cache, data_seed
        self.data: torch.Tensor | None = None  # uint8 images (N, C, H, W) or float32 points (N, 2)
        self.labels: torch.Tensor | None = None
        self.steps_per_fit = 1

    # ---- loading -------------------------------------------------------------------------------------
    @property
    def is_image(self) -> bool:
        return self.name != "toy2d"

    @property
    def sample_shape(self) -> tuple:
        return (2,) if not self.is_image else (self.channels, self.resolution, self.resolution)

    def load(self) -> "GANDataModule":
        """Load the dataset into host memory (idempotent). Raises DataError with a one-line message."""
        if self.data is not None:
            return self
        if self.name == "toy2d":
            from .toy2d import sample_toy2d

            self.data = sample_toy2d(self.variant, self.n_points, self.data_seed, self.std)
        elif self.name == "digits":
            from .digits import load_digits_images

            self.data, self.labels = load_digits_images(self.resolution)
        elif self.name == "cifar10":
            from .cifar10 import load_cifar10
            from .images import resize_uint8

            self.data = resize_uint8(load_cifar10(self._root(), self.split, self.download), self.resolution)
        elif self.name == "stl10":
            from .stl10 import load_stl10

            self.data = self._cached("stl10", lambda: load_stl10(self._root(), self.split, self.resolution, self.download))
        elif self.name == "image_folder":
            from .image_folder import list_images, load_image_folder

            files = list_images(self._root())
            self.data = self._cached("folder", lambda: load_image_folder(self._root(), self.resolution, self.channels, self.max_images),
                                     extra=f"{len(files)}:{max(f.stat().st_mtime for f in files)}")
        if self.max_images and self.data.shape[0] > self.max_images:
            self.data = self.data[: self.max_images]
        if self.data.shape[0] == 0:
            raise DataError(f"data {self.name} at {self.root} holds no samples")
        return self

    def _root(self) -> str:
        if not self.root:
            raise ConfigError(f"data.root is not set; data={self.name} needs the folder that holds (or will receive) the dataset")
        return str(self.root)

    def _cached(self, tag: str, build, extra: str = "") -> torch.Tensor:
        """Decoded/resized tensors are cached on disk so sweeps decode each dataset once."""
        if not self.cache:
            return build()
        key = hashlib.sha1(f"{tag}:{Path(self._root()).resolve()}:{self.split}:{self.resolution}:{self.channels}:{self.max_images}:{extra}".encode()).hexdigest()[:16]
        path = default_cache_dir() / "data" / f"{tag}-{key}.pt"
        if path.is_file():
            try:
                return torch.load(path, weights_only=True)
            except Exception:
                pass  # a corrupt cache entry is rebuilt below
        tensor = build()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            torch.save(tensor, tmp)
            os.replace(tmp, path)
        except OSError:
            pass  # caching is an optimisation; an unwritable cache dir must not stop training
        return tensor

    # ---- Lightning hooks -------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        self.load()

    def setup(self, stage: str | None = None) -> None:
        self.load()

    def train_dataloader(self):
        # The loop is driven by generator steps; real batches are sampled by sample() on the device,
        # so the loader only yields step indices.
        return DataLoader(range(self.steps_per_fit), batch_size=None, shuffle=False)

    # ---- sampling ------------------------------------------------------------------------------------
    def to(self, device: torch.device) -> None:
        self.load()
        if self.data.device != device:
            self.data = self.data.to(device, non_blocking=False)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n real samples (with replacement), images as float in [-1, 1]."""
        idx = torch.randint(0, self.data.shape[0], (n,), generator=generator, device=generator.device)
        if idx.device != self.data.device:
            idx = idx.to(self.data.device)
        return self.to_float(self.data[idx])

    def to_float(self, batch: torch.Tensor) -> torch.Tensor:
        if not self.is_image:
            return batch
        return batch.float().div_(127.5).sub_(1.0)
