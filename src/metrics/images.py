"""IS / FID / KID of image GANs: protocol, real-data statistics cache, periodic evaluation.

One pass of the feature network over every image feeds all three scores (see scores.py). The
feature network is torch-fidelity's TF-ported InceptionV3 through torchmetrics (inception.py), or,
for scikit-learn's 8x8 digits, a small classifier trained on them (digits.py).

Real-data statistics are cached on disk under ``default_cache_dir()/inception`` (``/digits``), one
file per (dataset, split, sample count, weights sha256): the key hashes the exact uint8 images
scored, so a changed dataset, split, count or weights file never reuses stale statistics.
"""
import hashlib
import logging
import os
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
from tqdm import tqdm

from ..data.datamodule import default_cache_dir
from ..errors import ConfigError
from .scores import FeatureStats, frechet_distance, kernel_distance

log = logging.getLogger(__name__)

CACHE_VERSION = 1
SUBSET_SEED = 0  # which real images a protocol uses when it asks for fewer than the dataset holds
TQDM_MIN = 500  # progress bars from this many images on
KEYS = ("is_mean", "is_std", "fid", "kid_mean", "kid_std")


# ---- image sets ----------------------------------------------------------------------------------------
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
        from PIL import Image

        pending = []
        for f in self.files:
            with Image.open(f) as im:
                arr = np.asarray(im.convert("RGB" if self.channels == 3 else "L"), dtype=np.uint8)
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
    from ..data.datamodule import GANDataModule

    dm = datamodule
    if dm.name in ("digits", "image_folder"):
        split = "all" if dm.name == "digits" else "files"
    elif split not in (None, "", dm.split):
        dm = GANDataModule(name=dm.name, batch_size=dm.batch_size, root=dm.root, resolution=dm.resolution,
                           channels=dm.channels, split=split, download=dm.download, max_images=dm.max_images,
                           cache=dm.cache).load()
    data = dm.load().data
    idx = subset_indices(data.shape[0], n)
    images = data[torch.from_numpy(idx).to(data.device)].cpu()
    return ImageSet(dm.name, split or dm.split, images=images, channels=images.shape[1])


# ---- feature extraction and its cache ------------------------------------------------------------------
def extract(extractor, batches, n: int, is_splits: int, desc: str) -> FeatureStats:
    stats = FeatureStats(n, extractor.feature_dim, is_splits)
    with tqdm(total=n, desc=desc, unit="img", disable=n < TQDM_MIN, leave=False, dynamic_ncols=True) as bar:
        for batch in batches:
            features, logits = extractor(batch)
            stats.update(features, logits)
            bar.update(len(batch))
    if stats.n != n:
        raise RuntimeError(f"{desc}: got {stats.n} images, expected {n}")
    return stats


def cache_path(extractor, image_set: ImageSet, is_splits: int) -> Path:
    key = hashlib.sha256(f"v{CACHE_VERSION}|{extractor.name}|{extractor.weights_sha256}|{image_set.fingerprint()}|"
                         f"{len(image_set)}|{is_splits}".encode()).hexdigest()
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in image_set.name.split(":")[0])
    return (default_cache_dir() / extractor.cache_subdir /
            f"{safe}-{image_set.split}-n{len(image_set)}-w{extractor.weights_sha256[:8]}-{key[:16]}.pt")


def real_statistics(extractor, image_set: ImageSet, is_splits: int, batch_size: int, cache: bool = True) -> tuple[FeatureStats, Path | None, bool]:
    """(statistics, cache file, whether it was a cache hit)."""
    path = cache_path(extractor, image_set, is_splits) if cache else None
    if path is not None and path.is_file():
        try:
            return FeatureStats.from_state(torch.load(path, weights_only=True)), path, True
        except Exception as exc:  # truncated by a killed run: recompute and overwrite
            log.warning("ignoring unreadable statistics cache %s (%s)", path, type(exc).__name__)
    stats = extract(extractor, image_set.batches(batch_size), len(image_set), is_splits,
                    f"real {image_set.name} {image_set.split}")
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
            torch.save(stats.state(), tmp)
            os.replace(tmp, path)
        except OSError as exc:  # a read-only cache dir must not lose the evaluation
            log.warning("could not write statistics cache %s (%s)", path, exc)
    return stats, path, False


# ---- the evaluator -------------------------------------------------------------------------------------
def _int(cfg: dict, key: str, low: int, allow_none: bool = False):
    value = cfg.get(key)
    if value is None and allow_none:
        return None
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= low):
        raise ConfigError(f"metrics.{key}={value!r} is invalid; it must be an integer >= {low}")
    return value


def default_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")


class ImageEvaluator:
    """IS / FID / KID of generated images against a real set, under one protocol (a metrics config)."""

    def __init__(self, cfg: dict, dataset: str = "image", device: str | torch.device | None = None,
                 weights_hint: dict | None = None):
        self.preset = cfg.get("name", "custom")
        self.n_real = _int(cfg, "n_real", 2, allow_none=True)  # None: every real image
        self.n_fake = _int(cfg, "n_fake", 2)
        self.is_splits = _int(cfg, "is_splits", 1)
        self.every = _int(cfg, "every", 0, allow_none=True) or 0
        self.batch_size = _int(cfg, "batch_size", 1, allow_none=True) or 64
        self.kid_subsets = _int(cfg, "kid_subsets", 1, allow_none=True) or 100
        self.kid_subset_size = _int(cfg, "kid_subset_size", 2, allow_none=True) or 1000
        self.seed = int(cfg.get("seed") or 0)
        self.cache = bool(cfg.get("cache", True))
        self.real_split = cfg.get("real_split")
        self.weights = cfg.get("inception_weights")
        self.dataset = dataset
        self.weights_hint = weights_hint or {}  # how error messages tell the user to supply the weights
        self.device = torch.device(device) if device is not None else default_device()
        self.extractor = None
        self.history: list[dict] = []
        self._real = None  # (key, FeatureStats, info) of the last real set
        self._final = None  # (module, g_step, metrics) from the end-of-training callback
        self._last_protocol: dict = {}
        self.periodic_seconds = 0.0  # wall time of the every-N-steps evaluations during training

    # -- readiness ------------------------------------------------------------------------------------
    def check_ready(self) -> None:
        self.features()

    def features(self):
        if self.extractor is None:
            if self.dataset == "digits":
                from .digits import DigitsFeatures

                self.extractor = DigitsFeatures(self.device, batch_size=max(self.batch_size, 500))
            else:
                from .inception import InceptionFeatures, resolve_inception_weights

                self.extractor = InceptionFeatures(resolve_inception_weights(self.weights, **self.weights_hint),
                                                   self.device, self.batch_size)
        return self.extractor

    def training_callbacks(self) -> list:
        return [EvaluationCallback(self)]

    # -- scoring --------------------------------------------------------------------------------------
    def real_stats(self, image_set: ImageSet) -> FeatureStats:
        key = (image_set.name, image_set.split, len(image_set))
        if self._real is None or self._real[0] != key:  # periodic evaluations reuse it from memory
            stats, path, hit = real_statistics(self.features(), image_set, self.is_splits, self.batch_size, self.cache)
            self._real = (key, stats, {"cache_file": str(path) if path else None, "cache_hit": hit})
        return self._real[1]

    def fake_stats(self, fake, n: int) -> FeatureStats:
        """fake: an ImageSet, or sample_fn(n) -> float images in [-1, 1] (fixed noise seed, RNG state restored)."""
        ext = self.features()
        if isinstance(fake, ImageSet):
            return extract(ext, fake.batches(self.batch_size), len(fake), self.is_splits, f"generated {fake.name}")
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.seed)
            batches = (to_uint8(fake(min(self.batch_size, n - s))) for s in range(0, n, self.batch_size))
            return extract(ext, batches, n, self.is_splits, "generated")

    def score(self, fake, real_set: ImageSet) -> dict:
        if len(real_set) < 2:
            raise ConfigError(f"the real set {real_set.name} holds {len(real_set)} image(s); FID/KID need at least 2")
        real = self.real_stats(real_set)
        n_fake = len(fake) if isinstance(fake, ImageSet) else self.n_fake
        if n_fake < 2:
            raise ConfigError(f"{n_fake} generated image(s); FID/KID need at least 2")
        gen = self.fake_stats(fake, n_fake)
        is_mean, is_std = gen.inception_score()
        kid_mean, kid_std = kernel_distance(gen, real, self.kid_subsets, self.kid_subset_size, device=self.device)
        ext = self.extractor
        self._last_protocol = {
            "name": self.preset, "dataset": real_set.name, "real_split": real_set.split,
            "n_real": len(real_set), "n_real_requested": self.n_real, "n_fake": n_fake, "is_splits": gen.is_splits,
            "kid_subsets": self.kid_subsets, "kid_subset_size": min(self.kid_subset_size, n_fake, len(real_set)),
            **ext.describe(),
            "real_is_mean": real.inception_score()[0], "real_is_std": real.inception_score()[1],
            "real_stats_cache": self._real[2]["cache_file"],
            "fake_noise_seed": None if isinstance(fake, ImageSet) else self.seed,
            "shuffle_seed": "2020 (torch-fidelity's IS splits and KID subsets)",
        }
        return {"is_mean": is_mean, "is_std": is_std, "fid": frechet_distance(gen, real),
                "kid_mean": kid_mean, "kid_std": kid_std}

    def real_set(self, datamodule) -> ImageSet:
        return datamodule_set(datamodule, self.real_split, self.n_real)

    # -- the evaluator contract of src.train --------------------------------------------------------------
    def evaluate(self, sample_fn, datamodule=None) -> dict:
        module = getattr(sample_fn, "__self__", None)
        step = _g_step(module)
        if self._final is not None and self._final[0] is module and self._final[1] == step:
            metrics = self._final[2]  # already scored (and logged) by the callback at the end of training
        else:
            metrics = self.score(sample_fn, self.real_set(datamodule))
            self.history.append({"step": step, **metrics})
        out = dict(metrics)
        if self.every:  # the periodic evaluations, ending with this one
            out["history"] = list(self.history)
        return out

    def protocol(self) -> dict:
        if self._last_protocol:
            out = dict(self._last_protocol)
            if self.every:
                out.update(every=self.every, periodic_eval_sec=self.periodic_seconds)
            return out
        return {"name": self.preset, "n_real": self.n_real, "n_fake": self.n_fake, "is_splits": self.is_splits,
                "real_split": self.real_split, "features": getattr(self.extractor, "name", None)}


def _g_step(module):
    try:
        return int(module.g_step) if module is not None else None
    except Exception:
        return None


class EvaluationCallback(L.Callback):
    """Scores the generator every ``metrics.every`` generator updates and at the end of training, and logs
    ``eval/<metric>`` to the trainer's loggers (before they are finalized)."""

    def __init__(self, evaluator: ImageEvaluator):
        self.evaluator = evaluator

    def _run(self, trainer, module, final: bool = False) -> dict:
        ev, step = self.evaluator, module.g_step
        if ev.history and ev.history[-1]["step"] == step:
            metrics = {k: ev.history[-1][k] for k in KEYS}
        else:
            start = time.perf_counter()
            metrics = ev.score(module.generate, ev.real_set(trainer.datamodule))
            if not final:  # spent inside the training loop: StepTimer's sec_per_step includes it
                ev.periodic_seconds += time.perf_counter() - start
            ev.history.append({"step": step, **metrics})
            values = {f"eval/{k}": v for k, v in metrics.items()}
            for logger in trainer.loggers:
                logger.log_metrics({**values, "eval/g_step": step}, step=trainer.global_step)
                logger.save()
            log.info("generator step %d: %s", step, ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
        if final:
            ev._final = (module, step, metrics)
        return metrics

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        every, step = self.evaluator.every, module.g_step
        if every and step % every == 0 and 0 < step < module.steps and trainer.is_global_zero:
            self._run(trainer, module)

    def on_train_end(self, trainer, module) -> None:
        if trainer.is_global_zero:
            self._run(trainer, module, final=True)


def build_image_evaluator(cfg, datamodule) -> ImageEvaluator:
    from omegaconf import DictConfig, OmegaConf

    values = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    return ImageEvaluator(values, dataset=datamodule.name)


__all__ = ["ImageEvaluator", "EvaluationCallback", "ImageSet", "build_image_evaluator", "folder_set",
           "datamodule_set", "real_statistics", "extract", "to_uint8", "subset_indices", "KEYS"]
