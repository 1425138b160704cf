"""Lipschitz regularizers of D, one file each; ``build_regularizer`` instantiates one from its config."""
from omegaconf import DictConfig, OmegaConf

from ..errors import ConfigError, instantiate
from .base import Regularizer


def build_regularizer(cfg: DictConfig) -> Regularizer:
    """Instantiate ``cfg._target_`` with the config's hyperparameters (``name``/``default_loss`` are metadata)."""
    params = OmegaConf.to_container(cfg, resolve=True)
    params.pop("name", None)
    params.pop("default_loss", None)
    try:
        return instantiate(params)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"regularizer={cfg.get('name')} cannot be built: {str(exc).splitlines()[0]}") from None


__all__ = ["Regularizer", "build_regularizer"]
