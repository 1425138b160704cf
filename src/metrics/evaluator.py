"""The image evaluator: IS / FID / KID of a generator against a real image set, under one protocol (a
metrics config). One pass of the feature network over every image feeds all three scores (scores.py);
the feature network is torch-fidelity's TF-ported InceptionV3 through torchmetrics (inception.py), or, for
scikit-learn's 8x8 digits, a small classifier trained on them (digits.py): the one the dataset declares.

Under DDP every evaluation is a collective that every rank enters (distributed.py, features.py): the
generator runs on every rank from the same fixed noise seed, after its weights and buffers are
broadcast from rank 0; rank 0 computes the scores and broadcasts them (and any error) to the others.
The training callback that scores every ``metrics.every`` generator updates is src/callbacks/evaluation.py.
"""
import logging
import time

import torch

from ..errors import ConfigError
from .distributed import dist_info, from_rank0, on_all_ranks, sync_from_rank0
from .features import extract, real_statistics
from .image_sets import ImageSet, datamodule_set, to_uint8
from .scores import FeatureStats, frechet_distance, kernel_distance

log = logging.getLogger(__name__)

KEYS = ("is_mean", "is_std", "fid", "kid_mean", "kid_std")


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

    # -- scoring --------------------------------------------------------------------------------------
    def real_stats(self, image_set: ImageSet) -> FeatureStats | None:
        """The real set's statistics (None on ranks other than 0 under DDP, which never need them)."""
        key = (image_set.name, image_set.split, len(image_set))
        if self._real is None or self._real[0] != key:  # periodic evaluations reuse it from memory
            stats, path, hit = real_statistics(self.features(), image_set, self.is_splits, self.batch_size, self.cache)
            self._real = (key, stats, {"cache_file": str(path) if path else None, "cache_hit": hit,
                                       "images_per_rank": getattr(stats, "images_per_rank", None)})
        return self._real[1]

    def fake_stats(self, fake, n: int, network: torch.nn.Module | None = None) -> FeatureStats | None:
        """fake: an ImageSet, or sample_fn(n) -> float images in [-1, 1] (fixed noise seed, RNG state restored).
        Under DDP every rank generates every batch (same seed, ``network``, the generator sample_fn runs,
        synced from rank 0 first: BN running statistics differ between ranks)."""
        ext = self.features()
        if isinstance(fake, ImageSet):
            return extract(ext, fake.batches(self.batch_size), len(fake), self.is_splits, f"generated {fake.name}")
        if dist_info()[1] > 1:
            if network is not None:
                sync_from_rank0(network)
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.seed)
            batches = (to_uint8(fake(min(self.batch_size, n - s))) for s in range(0, n, self.batch_size))
            return extract(ext, batches, n, self.is_splits, "generated")

    def score(self, fake, real_set, network: torch.nn.Module | None = None) -> dict:
        """IS / FID / KID of fake (an ImageSet or sample_fn) against real_set (an ImageSet, or a function
        returning one: under DDP it is then built inside the all-ranks error check); ``network``: the
        generator sample_fn runs (synced from rank 0 under DDP)."""
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
        gen = self.fake_stats(fake, n_fake, network)
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
    def score_at(self, module, datamodule, periodic: bool = False) -> tuple[dict, bool]:
        """(scores of ``module``'s generator at its generator step, whether they were taken now). A step already
        scored (the end of training, scored by the training callback and then asked for by src.train) is
        not scored again. ``module``: what the evaluator uses of a GAN module: generate(n), G, g_step."""
        step = module.g_step
        if self.history and self.history[-1]["step"] == step:
            return {k: self.history[-1][k] for k in KEYS}, False
        start = time.perf_counter()
        metrics = self.score(module.generate, lambda: self.real_set(datamodule), network=module.G)
        if periodic:  # spent inside the training loop: StepTimer's sec_per_step includes it
            self.periodic_seconds += time.perf_counter() - start
        self.history.append({"step": step, **metrics})
        return metrics, True

    def evaluate(self, module, datamodule=None) -> dict:
        """The final scores of ``module``'s generator (with the periodic ones as ``history`` when ``every`` is set)."""
        metrics, _ = self.score_at(module, datamodule)
        out = dict(metrics)
        if self.every:  # the periodic evaluations, ending with this one
            out["history"] = list(self.history)
        return out

    def training_callbacks(self) -> list:
        from ..callbacks.evaluation import EvaluationCallback

        return [EvaluationCallback(self)]

    def protocol(self) -> dict:
        if self._last_protocol:
            out = dict(self._last_protocol)
            if self.every:
                out.update(every=self.every, periodic_eval_sec=self.periodic_seconds)
            return out
        return {"name": self.preset, "n_real": self.n_real, "n_fake": self.n_fake, "is_splits": self.is_splits,
                "real_split": self.real_split, "features": getattr(self.extractor, "name", None)}


def build_image_evaluator(cfg, datamodule) -> ImageEvaluator:
    from omegaconf import DictConfig, OmegaConf

    values = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    return ImageEvaluator(values, features=datamodule.spec.features)


__all__ = ["ImageEvaluator", "build_image_evaluator", "KEYS"]
