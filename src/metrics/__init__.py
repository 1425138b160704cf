"""Evaluation of generators: toy 2-D measures, and (images) IS / FID / KID.

``build_evaluator(metrics_cfg, datamodule)`` returns, for the feature network the dataset declares
(src/data/spec.py), an object with ``check_ready()`` (fail fast, before training, when the run could
not be scored), ``evaluate(module, datamodule) -> dict`` (the final scores of a GAN module's generator),
``protocol() -> dict`` and ``training_callbacks()`` (scoring every ``metrics.every`` generator updates:
src/callbacks/evaluation.py).

Files: toy.py (2-D measures), evaluator.py (IS / FID / KID under a protocol), image_sets.py (the image
sets scored), features.py (feature extraction and the real-statistics cache), distributed.py (the DDP
collectives), scores.py (IS / FID / KID from one pass of features), inception.py (torch-fidelity's
InceptionV3 and its weights), digits.py (the digits classifier).
"""
from omegaconf import DictConfig, OmegaConf

from ..data.spec import spec_of
from ..errors import ConfigError
from .toy import ToyEvaluator


class NullEvaluator:
    """``metrics=none``: train without scoring."""

    def check_ready(self) -> None:
        pass

    def protocol(self) -> dict:
        return {}

    def evaluate(self, module, datamodule=None) -> dict:
        return {}


def _count(cfg: DictConfig, key: str, default: int, low: int) -> int:
    value = cfg.get(key, default)
    value = default if value is None else value
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= low):
        raise ConfigError(f"metrics.{key}={value!r} is invalid; it must be an integer >= {low}")
    return value


def build_evaluator(cfg: DictConfig | dict | None = None, datamodule=None, **protocol):
    """The evaluator of a metrics config (conf/metrics/) for ``datamodule``'s dataset. The configs carry
    ``_target_: src.metrics.build_evaluator`` and ``_partial_: true``: ``instantiate(cfg.metrics)(datamodule=dm)``
    (src/assemble.py) calls this with the config's keys as ``protocol``."""
    if cfg is None:
        cfg = OmegaConf.create(protocol)
    if cfg.get("name", "none") == "none":
        return NullEvaluator()
    if spec_of(datamodule).features == "toy":  # any preset: its n_fake samples, scored every `every` generator updates
        return ToyEvaluator(n_samples=_count(cfg, "n_fake", 2500, low=2), variant=datamodule.variant,
                            std=datamodule.std, every=_count(cfg, "every", 0, low=0), seed=_count(cfg, "seed", 0, low=0))
    from .evaluator import build_image_evaluator  # IS / FID / KID (and the digits classifier)

    return build_image_evaluator(cfg, datamodule)


__all__ = ["build_evaluator", "NullEvaluator", "ToyEvaluator"]
