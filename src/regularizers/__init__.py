"""Lipschitz regularizers of D, one file each; ``build_regularizer`` instantiates one from its config."""
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ..errors import ConfigError
from .base import Regularizer


def build_regularizer(cfg: DictConfig) -> Regularizer:
    """Instantiate ``cfg._target_`` with the config's hyperparameters (``name``/``default_loss`` are metadata)."""
    params = OmegaConf.to_container(cfg, resolve=True)
    params.pop("name", None)
    params.pop("default_loss", None)
    try:
        reg = instantiate(params)
    except Exception as exc:  # hydra wraps the constructor's ConfigError; surface it as is
        cause = exc
        while cause.__cause__ is not None:
            cause = cause.__cause__
        if isinstance(cause, ConfigError):
            raise cause from None
        raise ConfigError(f"regularizer={cfg.get('name')} cannot be built: {str(exc).splitlines()[0]}") from None
    return reg


__all__ = ["Regularizer", "build_regularizer"]
