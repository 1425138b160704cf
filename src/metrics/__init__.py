"""Evaluation of generators: toy 2-D measures, and (images) IS / FID / KID.

``build_evaluator(metrics_cfg, datamodule)`` returns an object with
``check_ready()`` (fail fast, before training, when the run could not be scored),
``evaluate(sample_fn, datamodule) -> dict`` and ``protocol() -> dict``; image evaluators also give
``training_callbacks()`` (scoring every ``metrics.every`` generator updates and at the end of training).

Files: toy.py (2-D measures), images.py (protocol, real-statistics cache, periodic evaluation),
scores.py (IS / FID / KID from one pass of features), inception.py (torch-fidelity's InceptionV3 and
its weights), digits.py (the digits classifier).
"""
from omegaconf import DictConfig

from ..data.spec import spec_of
from ..errors import ConfigError
from .toy import ToyEvaluator


class NullEvaluator:
    """``metrics=none``: train without scoring."""

    def check_ready(self) -> None:
        pass

    def protocol(self) -> dict:
        return {}

    def evaluate(self, sample_fn, datamodule=None) -> dict:
        return {}


def _count(cfg: DictConfig, key: str, default: int, low: int) -> int:
    value = cfg.get(key, default)
    value = default if value is None else value
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= low):
        raise ConfigError(f"metrics.{key}={value!r} is invalid; it must be an integer >= {low}")
    return value


def build_evaluator(cfg: DictConfig, datamodule):
    if cfg.get("name", "none") == "none":
        return NullEvaluator()
    if spec_of(datamodule).features == "toy":  # any preset: its n_fake samples, scored every `every` generator updates
        return ToyEvaluator(n_samples=_count(cfg, "n_fake", 2500, low=2), variant=datamodule.variant,
                            std=datamodule.std, every=_count(cfg, "every", 0, low=0), seed=_count(cfg, "seed", 0, low=0))
    from .images import build_image_evaluator  # IS / FID / KID (and the digits classifier)

    return build_image_evaluator(cfg, datamodule)


__all__ = ["build_evaluator", "NullEvaluator", "ToyEvaluator"]
