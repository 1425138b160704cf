"""The real data of a run: held in memory (on the training device) and sampled there, or streamed from disk.

GAN training draws a fresh random real batch for every D update. By default (``data.in_memory=true``)
the whole (uint8) dataset is one tensor on the device, which makes that an index operation with no
host-to-device copies; the sampling generator is the module's, and its state goes into checkpoints so
resumed runs see the same batches.

``data.in_memory=false`` (image folders too big for memory) streams instead: a torch DataLoader
(``data.num_workers`` worker processes, ``data.prefetch_factor`` batches prefetched per worker, pinned
memory when training on CUDA, persistent workers) decodes the files drawn by an infinite seeded sampler
without replacement (src/data/stream.py) and yields one generator step's real images at a time (n_dis
batches of data.batch_size); they are copied to the device with non_blocking. The position in the
sampled sequence (images consumed by training steps, not merely prefetched) is this datamodule's
checkpoint state: Lightning restores it before it calls train_dataloader(), so a resumed run continues
the sequence exactly where the checkpointed step left it.
"""
import hashlib
import os
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from ..errors import ConfigError, DataError

NAMES = ("toy2d", "digits", "cifar10", "stl10", "image_folder")
STREAMABLE = ("image_folder",)  # datasets with a streaming path (data.in_memory=false)


def default_cache_dir() -> Path:
    return Path(os.environ.get("GANLAB_CACHE", Path.home() / ".cache" / "lipschitz-gan-lab"))


class GANDataModule(L.LightningDataModule):
    def __init__(self, name: str, batch_size: int, root: str | None = None, resolution: int | None = None,
                 channels: int | None = None, split: str = "train", download: bool = True, variant: str = "ring8",
                 std: float | None = None, n_points: int = 100_000, max_images: int | None = None, cache: bool = True,
                 data_seed: int = 0, in_memory: bool = True, num_workers: int = 0, prefetch_factor: int = 2, **_ignored):
        super().__init__()
        if name not in NAMES:
            raise ConfigError(f"data.name={name!r} is unknown; valid: {', '.join(NAMES)}")
        check_stream_options(name, in_memory, num_workers, prefetch_factor)
        self.in_memory, self.num_workers, self.prefetch_factor = in_memory, int(num_workers), int(prefetch_factor)
        self.stream_position = 0  # streaming: real images consumed by training steps so far (checkpointed)
        self.name, self.batch_size, self.root, self.resolution, self.channels = name, batch_size, root, resolution, channels
        if name == "toy2d":
            from .toy2d import resolve_std

            std = resolve_std(variant, std)
        self.split, self.download, self.variant, self.std, self.n_points = split, download, variant, std, n_points
        self.max_images, self.cache, self.data_seed = max_images, cache, data_seed
        # uint8 images (N, C, H, W) or float32 points (N, 2); streaming: a FolderImages, decoded on access
        self.data: torch.Tensor | None = None
        self.labels: torch.Tensor | None = None
        self.steps_per_fit = 1

    # ---- loading -------------------------------------------------------------------------------------
    @property
    def is_image(self) -> bool:
        return self.name != "toy2d"

    @property
    def streaming(self) -> bool:
        return not self.in_memory

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
        elif self.name == "image_folder" and self.streaming:
            from .stream import FolderImages

            self.data = FolderImages.from_root(self._root(), self.resolution, self.channels, self.max_images)
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
        if self.streaming:
            return self._stream_loader()
        # The loop is driven by generator steps; real batches are sampled by sample() on the device,
        # so the loader only yields step indices.
        return DataLoader(range(self.steps_per_fit), batch_size=None, shuffle=False)

    def _stream_loader(self) -> DataLoader:
        """One item per training step: the step's n_dis real batches (uint8), from stream_position on.

        Called by Lightning after it has restored this datamodule's state from a checkpoint (resume).
        """
        from .stream import RealBatches, ShuffledStream

        self.load()
        module = self.trainer.lightning_module if self.trainer is not None else None
        per_step = int(getattr(module, "real_per_step", self.batch_size))
        seed, rank = int(getattr(module, "seed", self.data_seed)), int(getattr(self.trainer, "global_rank", 0) or 0)
        sampler = ShuffledStream(len(self.data), seed + 7919 * rank, self.stream_position)  # one sequence per DDP rank, as in memory
        stream = RealBatches(self.data, sampler, per_step)
        on_cuda = self.trainer is not None and self.trainer.strategy.root_device.type == "cuda"
        workers = self.num_workers
        return DataLoader(stream, batch_size=None, num_workers=workers, pin_memory=on_cuda,
                          persistent_workers=workers > 0, prefetch_factor=self.prefetch_factor if workers > 0 else None)

    def transfer_batch_to_device(self, batch, device: torch.device, dataloader_idx: int):
        if isinstance(batch, dict) and "end" in batch:  # a streamed step batch, about to be used by training_step
            self.stream_position = int(batch["end"])
            return {"real": batch["real"].to(device, non_blocking=True), "end": batch["end"]}
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def state_dict(self) -> dict:
        # in-memory sampling state lives in the module's generator; streaming keeps its place here
        return {"stream_position": self.stream_position} if self.streaming else {}

    def load_state_dict(self, state: dict) -> None:
        if self.streaming:
            self.stream_position = int(state.get("stream_position", 0))

    # ---- sampling ------------------------------------------------------------------------------------
    def to(self, device: torch.device) -> None:
        self.load()
        if self.streaming:
            return  # streamed batches come through the DataLoader; sample() decodes on the host
        if self.data.device != device:
            self.data = self.data.to(device, non_blocking=False)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n real samples (with replacement), images as float in [-1, 1], on the generator's device.

        Training draws its batches here when the data is in memory; when it streams, this serves the
        few images callbacks need (an example batch, the spectral monitor), decoded from the files.
        """
        idx = torch.randint(0, self.data.shape[0], (n,), generator=generator, device=generator.device)
        if self.streaming:
            return self.to_float(self.data[idx.cpu()].to(generator.device))
        if idx.device != self.data.device:
            idx = idx.to(self.data.device)
        return self.to_float(self.data[idx])

    def to_float(self, batch: torch.Tensor) -> torch.Tensor:
        if not self.is_image:
            return batch
        return batch.float().div_(127.5).sub_(1.0)


def check_stream_options(name: str, in_memory, num_workers, prefetch_factor=2) -> None:
    """One-line ConfigErrors for data.in_memory / data.num_workers / data.prefetch_factor."""
    if not isinstance(in_memory, bool):
        raise ConfigError(f"data.in_memory={in_memory!r} is invalid; it must be true (load the dataset into memory) "
                          f"or false (stream it from disk: {', '.join(STREAMABLE)})")
    if not in_memory and name not in STREAMABLE:
        raise ConfigError(f"data.in_memory=false is not available for data={name}: only {', '.join(STREAMABLE)} "
                          f"streams from disk; use data.in_memory=true")
    if not (isinstance(num_workers, int) and not isinstance(num_workers, bool) and num_workers >= 0):
        raise ConfigError(f"data.num_workers={num_workers!r} is invalid; it must be a non-negative integer "
                          f"(0 decodes in the training process)")
    if not (isinstance(prefetch_factor, int) and not isinstance(prefetch_factor, bool) and prefetch_factor > 0):
        raise ConfigError(f"data.prefetch_factor={prefetch_factor!r} is invalid; it must be a positive integer "
                          f"(batches prefetched per worker)")
