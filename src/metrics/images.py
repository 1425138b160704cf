"""IS / FID / KID of image GANs: protocol, real-data statistics cache, periodic evaluation.

One pass of the feature network over every image feeds all three scores (see scores.py). The
feature network is torch-fidelity's TF-ported InceptionV3 through torchmetrics (inception.py), or,
for scikit-learn's 8x8 digits, a small classifier trained on them (digits.py).

Real-data statistics are cached on disk under ``default_cache_dir()/inception`` (``/digits``), one
file per (dataset, split, sample count, weights sha256): the key hashes the exact uint8 images
scored, so a changed dataset, split, count or weights file never reuses stale statistics.

Under DDP (torch.distributed initialized with world size > 1) every evaluation is a collective that
every rank enters: each rank walks the same batches in the same order (the generator runs on every
rank from the same fixed noise seed, after the generator's weights and buffers are broadcast from rank
0), runs the feature network only on the batches i with i % world_size == rank, and every round of
world_size batches is all-gathered; rank 0 feeds the gathered (features, logits) to FeatureStats in
the original batch order, so its statistics are those of a single process. Rank 0 computes the
scores and broadcasts them (and any error) to the other ranks. Real statistics: rank 0 alone reads
and writes the cache file, and broadcasts whether it was a hit; on a miss all ranks extract sharded.
An exception on one rank inside an evaluation is exchanged with the others before the next
collective, so every rank raises instead of waiting forever.
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
from ..errors import ConfigError, UserError
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



# ---- DDP: every rank evaluates, the feature network's work is split by batch --------------------------
def dist_info() -> tuple[int, int]:
    """(rank, world size) of the initialized default process group; (0, 1) without one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _comm_device() -> torch.device:
    """Where collective buffers live: the current CUDA device under NCCL, else the CPU (gloo)."""
    import torch.distributed as dist

    if "nccl" in str(dist.get_backend()).lower() and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _all_gather(t: torch.Tensor) -> list[torch.Tensor]:
    import torch.distributed as dist

    out = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(out, t.contiguous())
    return out


def _error_text(exc: BaseException) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first}"[:500]


def _raise_remote(errors: dict, what: str):
    """Raise, on a rank that did not fail itself, what the failed ranks reported: {rank: (message, is a
    user error)}. User errors stay user errors (one line in the summary, exit status 2)."""
    first = min(errors)
    msg, user = errors[first]
    text = f"{what} failed on rank {first}: {msg}"
    if len(errors) > 1:
        text += f" (and on ranks {sorted(errors)[1:]})"
    raise (UserError if user else RuntimeError)(text)


def on_all_ranks(fn, what: str = "evaluation"):
    """fn() on every rank, then an agreement: when it raised anywhere, every rank raises (the failing rank
    its own exception), so no rank is left waiting in the next collective. Single process: just fn()."""
    rank, world = dist_info()
    if world == 1:
        return fn()
    import torch.distributed as dist

    error, value = None, None
    try:
        value = fn()
    except Exception as exc:  # re-raised below, after the other ranks know
        error = exc
    reports = [None] * world
    dist.all_gather_object(reports, None if error is None else (_error_text(error), isinstance(error, UserError)))
    if error is not None:
        raise error
    failed = {r: rep for r, rep in enumerate(reports) if rep is not None}
    if failed:
        _raise_remote(failed, what)
    return value


def from_rank0(fn, what: str = "evaluation"):
    """fn() on rank 0 only, its (small, picklable) result broadcast to every rank; an exception on rank 0
    is raised on every rank. Single process: just fn()."""
    rank, world = dist_info()
    if world == 1:
        return fn()
    import torch.distributed as dist

    error, box = None, [None]
    if rank == 0:
        try:
            box = [("ok", fn())]
        except Exception as exc:  # raised on every rank below
            error, box = exc, [("error", _error_text(exc), isinstance(exc, UserError))]
    dist.broadcast_object_list(box, src=0, device=_comm_device())
    if error is not None:
        raise error
    if box[0][0] == "error":
        _raise_remote({0: box[0][1:]}, what)
    return box[0][1]


def sync_from_rank0(module: torch.nn.Module) -> None:
    """Broadcast a module's parameters and buffers from rank 0. DDP keeps the parameters equal, but BN
    running statistics are updated by each rank's own batches after DDP's last buffer broadcast, and the
    checkpoints (and so ``python -m src.evaluate``) hold rank 0's. DDP (broadcast_buffers, its default)
    broadcasts rank 0's buffers before its next forward anyway, so this changes nothing for training."""
    import torch.distributed as dist

    device = _comm_device()
    with torch.no_grad():
        for t in [*module.parameters(), *module.buffers()]:
            buf = t.detach() if t.device == device else t.detach().to(device)
            dist.broadcast(buf, src=0)
            if buf.data_ptr() != t.data_ptr():
                t.copy_(buf)


def _extract_sharded(extractor, batches, n: int, is_splits: int, desc: str, rank: int, world: int):
    """extract() under DDP: rank r runs the feature network on batches r, r + world, ...; each round of
    world batches is all-gathered (float64, padded to the round's largest batch: float32 features and
    logits survive the trip exactly) and rank 0 accumulates them in batch order. Returns the statistics on
    rank 0 (with ``images_per_rank``: the rows each rank contributed), None elsewhere."""
    device = _comm_device()
    stats = None
    per_rank, total, own_batches, n_batches = [0] * world, 0, 0, 0
    it, pending, width = iter(batches), None, 0
    with tqdm(total=n, desc=desc, unit="img", disable=n < TQDM_MIN or rank != 0, leave=False, dynamic_ncols=True) as bar:
        while True:
            error, mine, count = None, None, 0
            try:
                if rank == 0 and stats is None:
                    stats = FeatureStats(n, extractor.feature_dim, is_splits)
                if pending is not None:  # last round's rows, added here so that a failure is reported below
                    for rows, features, logits in pending:
                        stats.update(features, logits)
                    pending = None
                for j in range(world):  # every rank draws every batch: same images, same generator RNG
                    batch = next(it, None)
                    if batch is None:
                        break
                    count += 1
                    if j == rank:
                        features, logits = extractor(batch)
                        mine = torch.cat([features.reshape(len(batch), -1).double(),
                                          logits.reshape(len(batch), -1).double()], 1)
            except Exception as exc:  # re-raised after the exchange below
                error = exc
            rows = 0 if mine is None else mine.shape[0]
            meta = torch.tensor([int(error is None), count, rows, 0 if mine is None else mine.shape[1]],
                                dtype=torch.int64, device=device)
            metas = [m.tolist() for m in _all_gather(meta)]
            failed = {r: ("error while extracting features (see that rank's log)", False)
                      for r, m in enumerate(metas) if not m[0]}
            if error is not None:
                raise error
            if failed:
                _raise_remote(failed, desc)
            counts = {m[1] for m in metas}
            widths = {m[3] for m in metas if m[2]}
            if len(counts) > 1 or len(widths) > 1:
                raise RuntimeError(f"{desc}: the ranks saw different batches ({metas}); every rank must iterate "
                                   f"the same images")
            if count == 0:
                break
            width = widths.pop() if widths else width
            round_rows = [m[2] for m in metas]
            if total + sum(round_rows) > n:
                raise RuntimeError(f"{desc}: more than the expected {n} images")
            if mine is None:
                mine = torch.zeros(0, width, dtype=torch.float64)
            pad = max(round_rows)
            buf = torch.zeros(pad, width, dtype=torch.float64, device=device)
            buf[:rows] = mine.to(device)
            gathered = _all_gather(buf)
            if rank == 0:
                fd = extractor.feature_dim
                pending = [(r, g[:r, :fd].cpu(), g[:r, fd:].cpu()) for g, r in zip(gathered[:count], round_rows[:count])]
            for j, r in enumerate(round_rows):
                per_rank[j] += r
            total += sum(round_rows)
            own_batches += int(rows > 0)
            n_batches += count
            bar.update(sum(round_rows))
    log.info("%s: rank %d/%d ran the feature network on %d of %d batches (%d of %d images)", desc, rank, world,
             own_batches, n_batches, per_rank[rank], total)
    if total != n:
        raise RuntimeError(f"{desc}: got {total} images, expected {n}")
    if stats is not None:
        stats.images_per_rank = per_rank
    return stats


# ---- feature extraction and its cache ------------------------------------------------------------------
def extract(extractor, batches, n: int, is_splits: int, desc: str) -> FeatureStats | None:
    """One pass of the feature network over n images. Under DDP a collective (see _extract_sharded): the
    statistics on rank 0, None on the other ranks."""
    rank, world = dist_info()
    if world > 1:
        return _extract_sharded(extractor, batches, n, is_splits, desc, rank, world)
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


def _load_cached(path: Path | None) -> FeatureStats | None:
    if path is None or not path.is_file():
        return None
    try:
        return FeatureStats.from_state(torch.load(path, weights_only=True))
    except Exception as exc:  # truncated by a killed run: recompute and overwrite
        log.warning("ignoring unreadable statistics cache %s (%s)", path, type(exc).__name__)
        return None


def _write_cache(path: Path, stats: FeatureStats) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        torch.save(stats.state(), tmp)
        os.replace(tmp, path)
    except Exception as exc:  # a read-only cache dir must not lose the evaluation
        log.warning("could not write statistics cache %s (%s)", path, exc)


def real_statistics(extractor, image_set: ImageSet, is_splits: int, batch_size: int, cache: bool = True) -> tuple[FeatureStats | None, Path | None, bool]:
    """(statistics, cache file, whether it was a cache hit). Under DDP a collective: rank 0 alone reads and
    writes the cache file and tells the others whether it hit; on a miss every rank extracts its share;
    the statistics are returned on rank 0, None on the other ranks."""
    loaded = {}

    def probe():  # rank 0 only under DDP
        path = cache_path(extractor, image_set, is_splits) if cache else None
        loaded["stats"] = _load_cached(path)
        return str(path) if path is not None else None, loaded["stats"] is not None

    path, hit = from_rank0(probe, f"real statistics of {image_set.name}")
    path = Path(path) if path is not None else None
    if hit:
        return loaded.get("stats"), path, True
    stats = extract(extractor, image_set.batches(batch_size), len(image_set), is_splits,
                    f"real {image_set.name} {image_set.split}")
    if path is not None and stats is not None:  # rank 0 (or the single process)
        _write_cache(path, stats)
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
    """IS / FID / KID of generated images against a real set, under one protocol (a metrics config).

    Under DDP, ``score`` / ``evaluate`` (and so the EvaluationCallback) are collectives: call them on every
    rank (``runs_on_all_ranks``). Every rank returns the same scores (rank 0's, broadcast)."""

    runs_on_all_ranks = True

    def __init__(self, cfg: dict, features: str = "inception", device: str | torch.device | None = None,
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
        self.feature_network = features  # the scored dataset's (src/data/spec.py): inception or digits-mlp
        self.weights_hint = weights_hint or {}  # how error messages tell the user to supply the weights
        self._explicit_device = device is not None
        self.device = torch.device(device) if device is not None else default_device()
        self.extractor = None
        self.history: list[dict] = []
        self._real = None  # (key, FeatureStats, info) of the last real set
        self._final = None  # (module, g_step, metrics) from the end-of-training callback
        self._last_protocol: dict = {}
        self.periodic_seconds = 0.0  # wall time of the every-N-steps evaluations during training
        self.last_distributed: dict | None = None  # DDP: how the last evaluation's work was split

    # -- readiness ------------------------------------------------------------------------------------
    def check_ready(self) -> None:
        self.features()

    def features(self):
        if self.extractor is None:
            from .digits import DigitsFeatures

            if self.feature_network == DigitsFeatures.name:
                self.extractor = DigitsFeatures(self.device, batch_size=max(self.batch_size, 500))
            else:
                from .inception import InceptionFeatures, resolve_inception_weights

                self.extractor = InceptionFeatures(resolve_inception_weights(self.weights, **self.weights_hint),
                                                   self.device, self.batch_size)
        return self.extractor

    def _follow_device(self) -> None:
        """Under DDP on GPUs, the feature network on this rank's device: the evaluator is built (and checked)
        before Lightning sets each rank's current CUDA device."""
        if self._explicit_device or self.device.type != "cuda" or dist_info()[1] == 1:
            return
        current = torch.device("cuda", torch.cuda.current_device())
        if current != self.device:
            self.device = current
            if self.extractor is not None:
                self.extractor.net.to(current)
                self.extractor.device = current

    def distributed_info(self) -> dict | None:
        """DDP only: world size and the images each rank ran the feature network on in the last evaluation."""
        return self.last_distributed

    def training_callbacks(self) -> list:
        return [EvaluationCallback(self)]

    # -- scoring --------------------------------------------------------------------------------------
    def real_stats(self, image_set: ImageSet) -> FeatureStats | None:
        """The real set's statistics (None on ranks other than 0 under DDP, which never need them)."""
        key = (image_set.name, image_set.split, len(image_set))
        if self._real is None or self._real[0] != key:  # periodic evaluations reuse it from memory
            stats, path, hit = real_statistics(self.features(), image_set, self.is_splits, self.batch_size, self.cache)
            self._real = (key, stats, {"cache_file": str(path) if path else None, "cache_hit": hit,
                                       "images_per_rank": getattr(stats, "images_per_rank", None)})
        return self._real[1]

    def fake_stats(self, fake, n: int) -> FeatureStats | None:
        """fake: an ImageSet, or sample_fn(n) -> float images in [-1, 1] (fixed noise seed, RNG state restored).
        Under DDP every rank generates every batch (same seed, the generator synced from rank 0 first)."""
        ext = self.features()
        if isinstance(fake, ImageSet):
            return extract(ext, fake.batches(self.batch_size), len(fake), self.is_splits, f"generated {fake.name}")
        if dist_info()[1] > 1:
            owner = getattr(fake, "__self__", None)  # module.generate: sync its generator (BN running statistics)
            net = getattr(owner, "G", owner)
            if isinstance(net, torch.nn.Module):
                sync_from_rank0(net)
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.seed)
            batches = (to_uint8(fake(min(self.batch_size, n - s))) for s in range(0, n, self.batch_size))
            return extract(ext, batches, n, self.is_splits, "generated")

    def score(self, fake, real_set) -> dict:
        """IS / FID / KID of fake (an ImageSet or sample_fn) against real_set (an ImageSet, or a function
        returning one: under DDP it is then built inside the all-ranks error check)."""
        world = dist_info()[1]

        def prepare():
            real_images = real_set() if callable(real_set) and not isinstance(real_set, ImageSet) else real_set
            if len(real_images) < 2:
                raise ConfigError(f"the real set {real_images.name} holds {len(real_images)} image(s); "
                                  f"FID/KID need at least 2")
            n_fake = len(fake) if isinstance(fake, ImageSet) else self.n_fake
            if n_fake < 2:
                raise ConfigError(f"{n_fake} generated image(s); FID/KID need at least 2")
            self._follow_device()
            self.features()
            return real_images, n_fake

        real_images, n_fake = on_all_ranks(prepare)
        real = self.real_stats(real_images)
        gen = self.fake_stats(fake, n_fake)
        metrics, protocol, shares = from_rank0(lambda: self._scores(gen, real, real_images, fake, n_fake, world))
        self._last_protocol, self.last_distributed = protocol, shares
        return metrics

    def _scores(self, gen: FeatureStats, real: FeatureStats, real_set: ImageSet, fake, n_fake: int, world: int):
        """(metrics, protocol, DDP work split) from the statistics (on rank 0 under DDP)."""
        is_mean, is_std = gen.inception_score()
        kid_mean, kid_std = kernel_distance(gen, real, self.kid_subsets, self.kid_subset_size, device=self.device)
        ext = self.extractor
        protocol = {
            "name": self.preset, "dataset": real_set.name, "real_split": real_set.split,
            "n_real": len(real_set), "n_real_requested": self.n_real, "n_fake": n_fake, "is_splits": gen.is_splits,
            "kid_subsets": self.kid_subsets, "kid_subset_size": min(self.kid_subset_size, n_fake, len(real_set)),
            **ext.describe(),
            "real_is_mean": real.inception_score()[0], "real_is_std": real.inception_score()[1],
            "real_stats_cache": self._real[2]["cache_file"],
            "fake_noise_seed": None if isinstance(fake, ImageSet) else self.seed,
            "shuffle_seed": "2020 (torch-fidelity's IS splits and KID subsets)",
        }
        metrics = {"is_mean": is_mean, "is_std": is_std, "fid": frechet_distance(gen, real),
                   "kid_mean": kid_mean, "kid_std": kid_std}
        shares = None
        if world > 1:  # not in the protocol: the numbers do not depend on it
            shares = {"world_size": world, "fake_images_per_rank": getattr(gen, "images_per_rank", None),
                      "real_images_per_rank": self._real[2]["images_per_rank"],  # None: read from the cache
                      "real_stats_cache_hit": self._real[2]["cache_hit"]}
        return metrics, protocol, shares

    def real_set(self, datamodule) -> ImageSet:
        return datamodule_set(datamodule, self.real_split, self.n_real)

    # -- the evaluator contract of src.train --------------------------------------------------------------
    def evaluate(self, sample_fn, datamodule=None) -> dict:
        module = getattr(sample_fn, "__self__", None)
        step = _g_step(module)
        if self._final is not None and self._final[0] is module and self._final[1] == step:
            metrics = self._final[2]  # already scored (and logged) by the callback at the end of training
        else:
            metrics = self.score(sample_fn, lambda: self.real_set(datamodule))
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
    ``eval/<metric>`` to the trainer's loggers (before they are finalized). Under DDP it scores on every
    rank (the evaluation is a collective; see the module docstring) and logs from rank 0 only."""

    def __init__(self, evaluator: ImageEvaluator):
        self.evaluator = evaluator

    def _run(self, trainer, module, final: bool = False) -> dict:
        ev, step = self.evaluator, module.g_step
        if ev.history and ev.history[-1]["step"] == step:
            metrics = {k: ev.history[-1][k] for k in KEYS}
        else:
            start = time.perf_counter()
            metrics = ev.score(module.generate, lambda: ev.real_set(trainer.datamodule))
            if not final:  # spent inside the training loop: StepTimer's sec_per_step includes it
                ev.periodic_seconds += time.perf_counter() - start
            ev.history.append({"step": step, **metrics})
            if trainer.is_global_zero:
                values = {f"eval/{k}": v for k, v in metrics.items()}
                for logger in trainer.loggers:
                    logger.log_metrics({**values, "eval/g_step": step}, step=step)  # the generator step
                    logger.save()
                log.info("generator step %d: %s", step, ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
        if final:
            ev._final = (module, step, metrics)
        return metrics

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        every, step = self.evaluator.every, module.g_step
        if every and step % every == 0 and 0 < step < module.steps:  # same condition on every rank
            self._run(trainer, module)

    def on_train_end(self, trainer, module) -> None:
        self._run(trainer, module, final=True)


def build_image_evaluator(cfg, datamodule) -> ImageEvaluator:
    from omegaconf import DictConfig, OmegaConf

    values = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    return ImageEvaluator(values, features=datamodule.spec.features)


__all__ = ["ImageEvaluator", "EvaluationCallback", "ImageSet", "build_image_evaluator", "folder_set",
           "datamodule_set", "real_statistics", "extract", "to_uint8", "subset_indices", "KEYS", "dist_info",
           "on_all_ranks", "from_rank0", "sync_from_rank0"]
