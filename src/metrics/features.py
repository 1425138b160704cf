"""Feature extraction: one pass of a feature network (Inception, the digits classifier) over a set of
images into FeatureStats, and the on-disk cache of real-data statistics.

Real-data statistics are cached under ``default_cache_dir()/<feature network's cache_subdir>``, one file
per (dataset, split, sample count, weights sha256): the key hashes the exact uint8 images scored, so a
changed dataset, split, count or weights file never reuses stale statistics.

Under DDP extraction is a collective (src/metrics/distributed.py): each rank walks the same batches in
the same order, runs the feature network only on the batches i with i % world_size == rank, and every
round of world_size batches is all-gathered; rank 0 feeds the gathered (features, logits) to FeatureStats
in the original batch order, so its statistics are those of a single process. Real statistics: rank 0
alone reads and writes the cache file, and broadcasts whether it was a hit; on a miss all ranks extract
sharded.
"""
import hashlib
import logging
import os
from pathlib import Path

import torch
from tqdm import tqdm

from ..data.datamodule import default_cache_dir
from .distributed import all_gather, comm_device, dist_info, from_rank0, raise_remote
from .image_sets import ImageSet
from .scores import FeatureStats

log = logging.getLogger(__name__)

CACHE_VERSION = 1
TQDM_MIN = 500  # progress bars from this many images on


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


def _extract_sharded(extractor, batches, n: int, is_splits: int, desc: str, rank: int, world: int):
    """extract() under DDP: rank r runs the feature network on batches r, r + world, ...; each round of
    world batches is all-gathered (float64, padded to the round's largest batch: float32 features and
    logits survive the trip exactly) and rank 0 accumulates them in batch order. Returns the statistics on
    rank 0 (with ``images_per_rank``: the rows each rank contributed), None elsewhere."""
    device = comm_device()
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
            metas = [m.tolist() for m in all_gather(meta)]
            failed = {r: ("error while extracting features (see that rank's log)", False)
                      for r, m in enumerate(metas) if not m[0]}
            if error is not None:
                raise error
            if failed:
                raise_remote(failed, desc)
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
            gathered = all_gather(buf)
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


__all__ = ["extract", "real_statistics", "cache_path", "CACHE_VERSION"]
