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

The data values are checked when the datamodule is built (one-line ConfigErrors): ``channels`` is 1 or 3
for image folders and the dataset's own count otherwise, ``resolution`` and ``max_images`` positive
integers (``max_images`` may be null). A batch larger than the dataset is allowed: in memory, batches are
drawn with replacement; streamed, a batch runs on into the next pass; either way an image may appear
more than once in one batch.

Decoded folders and resized STL-10 are cached on disk (``_cached``). The cache key covers every source
file's path, size and mtime_ns (so an image replaced by an older copy, or any edit, re-decodes), not its
content: hashing the content would read every byte of the dataset at each start, which is what the cache
is there to avoid; one stat per file is cheap. Each entry stores the sha256 of its tensor bytes and is
verified on load: an entry that is unreadable or does not match is re-decoded, with a warning, and never
used as training data.
"""
import hashlib
import logging
import os
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from ..errors import ConfigError, DataError
from .paths import printable
from .spec import dataset, streamable

log = logging.getLogger(__name__)

CACHE_FORMAT = 2  # entries {"images": uint8 tensor, "sha256": hex of its bytes, "format": 2}


def default_cache_dir() -> Path:
    return Path(os.environ.get("GANLAB_CACHE", Path.home() / ".cache" / "lipschitz-gan-lab"))


class GANDataModule(L.LightningDataModule):
    def __init__(self, name: str, batch_size: int, root: str | None = None, resolution: int | None = None,
                 channels: int | None = None, split: str = "train", download: bool = True, variant: str = "ring8",
                 std: float | None = None, n_points: int = 100_000, max_images: int | None = None, cache: bool = True,
                 data_seed: int = 0, in_memory: bool = True, num_workers: int = 0, prefetch_factor: int = 2, **_ignored):
        super().__init__()
        self.spec = dataset(name)  # what the dataset is (src/data/spec.py), declared by its module
        check_stream_options(name, in_memory, num_workers, prefetch_factor)
        if self.spec.image:
            resolution, channels, max_images = check_image_options(name, resolution, channels, max_images)
        self.in_memory, self.num_workers, self.prefetch_factor = in_memory, int(num_workers), int(prefetch_factor)
        self.stream_position = 0  # streaming: real images consumed by training steps so far (checkpointed)
        self.name, self.batch_size, self.root, self.resolution, self.channels = name, batch_size, root, resolution, channels
        self.split, self.download, self.variant, self.std, self.n_points = split, download, variant, std, n_points
        self.max_images, self.cache, self.data_seed = max_images, cache, data_seed
        if self.spec.check is not None:
            self.spec.check(self)
        # uint8 images (N, C, H, W) or float32 points (N, 2); streaming: a FolderImages, decoded on access
        self.data: torch.Tensor | None = None
        self.labels: torch.Tensor | None = None
        self.steps_per_fit = 1

    # ---- loading -------------------------------------------------------------------------------------
    @property
    def is_image(self) -> bool:
        return self.spec.image

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
        try:
            return self._load()
        except DataError as exc:  # a non-UTF-8 path in the message must not break the log or stdout
            message = printable(str(exc))
            if message == str(exc):
                raise
            raise DataError(message) from None

    def _load(self) -> "GANDataModule":
        self.data = self.spec.load(self)
        if self.max_images and self.data.shape[0] > self.max_images:
            self.data = self.data[: self.max_images]
        if self.data.shape[0] == 0:
            raise DataError(f"data {self.name} at {self.root} holds no samples")
        return self

    def root_or_fail(self) -> str:
        if not self.root:
            raise ConfigError(f"data.root is not set; data={self.name} needs the folder that holds (or will receive) the dataset")
        return str(self.root)

    def cached(self, tag: str, build, sources=()) -> torch.Tensor:
        """Decoded/resized tensors are cached on disk so sweeps decode each dataset once (see the module doc)."""
        if not self.cache:
            return build()
        key = hashlib.sha256()
        # os.fsencode: paths given as non-UTF-8 bytes arrive as surrogate escapes, which str.encode() rejects
        key.update(os.fsencode(f"{tag}:{CACHE_FORMAT}:{Path(self.root_or_fail()).expanduser().resolve()}:{self.split}:"
                               f"{self.resolution}:{self.channels}:{self.max_images}\n"))
        for source in sources:
            key.update(source_stamp(source))
        path = default_cache_dir() / "data" / f"{tag}-{key.hexdigest()[:24]}.pt"
        if path.is_file():
            tensor, problem = read_cache_entry(path)
            if tensor is not None:
                return tensor
            log.warning("cache entry %s %s; re-decoding it", printable(path), problem)
        tensor = build()
        write_cache_entry(path, tensor)
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
        if isinstance(batch, dict) and "error" in batch:  # a streaming worker could not decode an image
            raise DataError(printable(batch["error"]))
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


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _write_int(value) -> str:
    """The hint validation.py gives for an integer-valued float (``64.0``): integer keys take ints."""
    return f" (write {int(value)}, not {value})" if isinstance(value, float) and value.is_integer() else ""


def check_image_options(name: str, resolution, channels, max_images) -> tuple:
    """One-line ConfigErrors for data.resolution / data.channels / data.max_images (as validation.py words them)."""
    if not _positive_int(resolution):
        raise ConfigError(f"data.resolution={resolution!r} is invalid; it must be a positive integer (pixels per side)"
                          f"{_write_int(resolution)}")
    valid = dataset(name).channels
    if not (_positive_int(channels) and channels in valid):
        what = "1 (grayscale) or 3 (RGB)" if valid == (1, 3) else f"{valid[0]}: data={name} has {valid[0]} channel{'s' * (valid[0] > 1)}"
        raise ConfigError(f"data.channels={channels!r} is invalid; valid: {what}{_write_int(channels)}")
    if max_images is not None and not _positive_int(max_images):
        raise ConfigError(f"data.max_images={max_images!r} is invalid; it must be a positive integer or null (every image)"
                          f"{_write_int(max_images)}")
    return resolution, channels, max_images


def source_stamp(path: Path) -> bytes:
    """What the cache key records of one source file: its path, size and mtime_ns (not its content)."""
    try:
        st = os.stat(path)
        return os.fsencode(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n")
    except OSError:
        return os.fsencode(f"{path}\0missing\n")


def tensor_sha256(tensor: torch.Tensor) -> str:
    return hashlib.sha256(tensor.contiguous().numpy().data).hexdigest()  # hashes the buffer in place, no copy


def read_cache_entry(path: Path) -> tuple:
    """(tensor, None) for a verified entry, else (None, what is wrong with it)."""
    try:
        entry = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        return None, f"is unreadable ({type(exc).__name__})"
    if not (isinstance(entry, dict) and entry.get("format") == CACHE_FORMAT and isinstance(entry.get("images"), torch.Tensor)
            and isinstance(entry.get("sha256"), str)):
        return None, "has no checksum (an older or foreign format)"
    images = entry["images"]
    if images.dtype != torch.uint8 or images.dim() != 4 or tensor_sha256(images) != entry["sha256"]:
        return None, "does not match its sha256 checksum (corrupted)"
    return images, None


def write_cache_entry(path: Path, tensor: torch.Tensor) -> None:
    """Atomically (temp file + rename) store tensor with its checksum; caching is an optimisation, so failures are logged."""
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"images": tensor, "sha256": tensor_sha256(tensor), "format": CACHE_FORMAT}, tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:  # unwritable or full cache dir: train without the cache
        log.warning("could not write the data cache %s (%s); continuing without it", printable(path), printable(exc))
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass


def check_stream_options(name: str, in_memory, num_workers, prefetch_factor=2) -> None:
    """One-line ConfigErrors for data.in_memory / data.num_workers / data.prefetch_factor."""
    if not isinstance(in_memory, bool):
        raise ConfigError(f"data.in_memory={in_memory!r} is invalid; it must be true (load the dataset into memory) "
                          f"or false (stream it from disk: {', '.join(streamable())})")
    if not in_memory and not dataset(name).streamable:
        raise ConfigError(f"data.in_memory=false is not available for data={name}: only {', '.join(streamable())} "
                          f"streams from disk; use data.in_memory=true")
    if not (isinstance(num_workers, int) and not isinstance(num_workers, bool) and num_workers >= 0):
        raise ConfigError(f"data.num_workers={num_workers!r} is invalid; it must be a non-negative integer "
                          f"(0 decodes in the training process)")
    if not (isinstance(prefetch_factor, int) and not isinstance(prefetch_factor, bool) and prefetch_factor > 0):
        raise ConfigError(f"data.prefetch_factor={prefetch_factor!r} is invalid; it must be a positive integer "
                          f"(batches prefetched per worker)")
