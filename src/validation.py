"""Checks of a composed config before anything is built: one-line errors that name the bad value."""
from omegaconf import DictConfig, OmegaConf

from .errors import ConfigError
from .losses import LOSSES


def _number(cfg, path: str, integer: bool = False, positive: bool = True, low=None, high=None, high_open=False):
    value = OmegaConf.select(cfg, path, default=None)
    what = "a positive integer" if integer and positive else "a positive number" if positive else "a number"
    if low is not None and high is not None:
        what = f"a number in [{low}, {high}{')' if high_open else ']'}"
    is_num = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = is_num and (not integer or float(value).is_integer())
    if ok and positive:
        ok = value > 0
    if ok and low is not None:
        ok = value >= low and (value < high if high_open else value <= high)
    if not ok:
        raise ConfigError(f"{path}={value!r} is invalid; it must be {what}")
    return value


def validate(cfg: DictConfig) -> None:
    _number(cfg, "steps", integer=True)
    _number(cfg, "seed", integer=True, positive=False)
    _number(cfg, "data.batch_size", integer=True)
    _number(cfg, "optim.lr")
    _number(cfg, "optim.n_dis", integer=True)
    _number(cfg, "optim.beta1", positive=False, low=0, high=1, high_open=True)
    _number(cfg, "optim.beta2", positive=False, low=0, high=1, high_open=True)
    _number(cfg, "z_dim", integer=True)
    if OmegaConf.select(cfg, "threads", default=None) is not None:
        _number(cfg, "threads", integer=True)
    for key in ("checkpoint.every", "samples.every"):
        value = OmegaConf.select(cfg, key, default=0)
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
            raise ConfigError(f"{key}={value!r} is invalid; it must be a non-negative integer (0 turns it off)")
    if cfg.data.name != "toy2d":
        _number(cfg, "data.resolution", integer=True)
    from .data.datamodule import check_stream_options  # data.in_memory / num_workers / prefetch_factor

    check_stream_options(cfg.data.name, OmegaConf.select(cfg, "data.in_memory", default=True),
                         OmegaConf.select(cfg, "data.num_workers", default=0),
                         OmegaConf.select(cfg, "data.prefetch_factor", default=2))
    loss = OmegaConf.select(cfg, "loss.name")
    if loss not in LOSSES:
        raise ConfigError(f"loss={loss!r} is unknown; valid: {', '.join(LOSSES)}")
    decay = OmegaConf.select(cfg, "optim.lr_decay", default="none")
    if decay not in ("none", "linear"):
        raise ConfigError(f"optim.lr_decay={decay!r} is unknown; valid: none, linear")
    if cfg.arch.name == "mlp" and cfg.data.name != "toy2d" and cfg.data.get("resolution", 8) > 16:
        raise ConfigError(f"arch=mlp is for 2-D and tiny data, not data={cfg.data.name} at {cfg.data.resolution}x{cfg.data.resolution}; use arch=standard_cnn or arch=resnet")
    if cfg.arch.name != "mlp" and cfg.data.name == "toy2d":
        raise ConfigError(f"arch={cfg.arch.name} needs image data, not data=toy2d; use arch=mlp")
