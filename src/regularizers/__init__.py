"""Lipschitz regularizers of D, one file each; ``build_regularizer`` instantiates one from its config,
or a weight-side method and a penalty together (``regularizer=sn penalty=r1``) as one Combined."""
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ..errors import ConfigError, instantiate
from .base import Regularizer
from .combined import Combined, is_penalty

CONF = Path(__file__).resolve().parents[2] / "conf"


def _build_one(cfg: DictConfig, group: str) -> Regularizer:
    """Instantiate ``cfg._target_`` with the config's hyperparameters (``name``/``default_loss`` are metadata)."""
    params = OmegaConf.to_container(cfg, resolve=True)
    params.pop("name", None)
    params.pop("default_loss", None)
    try:
        return instantiate(params)
    except ConfigError as exc:
        if group == "regularizer":
            raise
        # the classes name their keys regularizer.<key>; here the user typed penalty.<key>
        message = str(exc)
        raise ConfigError("penalty." + message[len("regularizer."):] if message.startswith("regularizer.") else message) from None
    except Exception as exc:
        raise ConfigError(f"{group}={cfg.get('name')} cannot be built: {str(exc).splitlines()[0]}") from None


def penalty_options() -> list[str]:
    """The options of the penalty config group (conf/penalty/), none excluded."""
    return sorted(p.stem for p in (CONF / "penalty").glob("*.yaml") if p.stem != "none")


def build_regularizer(cfg: DictConfig, penalty: DictConfig | None = None) -> Regularizer:
    """The regularizer of ``cfg`` (conf/regularizer/), plus the penalty of ``penalty`` (conf/penalty/)
    when one is given and is not ``none``: then one Combined of the two, checked here, before training.
    """
    regularizer = _build_one(cfg, "regularizer")
    if penalty is None or penalty.get("name", "none") in (None, "none"):
        return regularizer
    name = penalty.get("name")
    if not penalty.get("_target_"):
        raise ConfigError(f"penalty={name} is not a penalty; valid: none, {', '.join(penalty_options())}")
    part = _build_one(penalty, "penalty")
    if not is_penalty(part):
        raise ConfigError(f"penalty={name} is a weight-side method, not a penalty; use regularizer={name}, "
                          f"and penalty= one of none, {', '.join(penalty_options())}")
    if is_penalty(regularizer):
        raise ConfigError(f"regularizer={regularizer.name} and penalty={name} are both penalties; a penalty goes next to a "
                          f"weight-side regularizer (e.g. regularizer=sn penalty={name}, or regularizer=none penalty={name}), "
                          f"or use regularizer={regularizer.name} with penalty=none")
    return Combined(regularizer, part)


__all__ = ["Combined", "Regularizer", "build_regularizer", "is_penalty"]
