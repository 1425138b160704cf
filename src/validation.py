"""Checks of a composed config before anything is built: one-line errors that name the bad value."""
import math

from omegaconf import DictConfig, OmegaConf

from .errors import ConfigError
from .losses import LOSSES

SEED_MAX = 2**32 - 1  # numpy's seed range, which seed_everything uses (it silently picks another seed outside it)


def _number(cfg, path: str, integer: bool = False, positive: bool = True, low=None, high=None, high_open=False):
    """A finite number (an int-typed integer where ``integer``): ``steps=20.0`` or ``optim.lr=inf`` pass
    YAML and OmegaConf but break training later, so they stop here."""
    value = OmegaConf.select(cfg, path, default=None)
    what = "a positive integer" if integer and positive else "an integer" if integer else "a positive number" if positive else "a number"
    if isinstance(value, float) and not math.isfinite(value):
        what = "a finite " + what.split(" ", 1)[1]
    if low is not None and high is not None:
        what = f"{'an integer' if integer else 'a number'} in [{low}, {high}{')' if high_open else ']'}"
    if integer:
        ok = isinstance(value, int) and not isinstance(value, bool)
        if not ok and isinstance(value, float) and math.isfinite(value) and value.is_integer():
            what += f" (write {int(value)}, not {value})"
    else:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and positive:
        ok = value > 0
    if ok and low is not None:
        ok = value >= low and (value < high if high_open else value <= high)
    if not ok:
        raise ConfigError(f"{path}={value!r} is invalid; it must be {what}")
    return value


def check_resolves(cfg: DictConfig) -> None:
    """Every ``${...}`` of the composed config names a key that exists: a preset's interpolation that the chosen
    options do not fit (``experiment=study_digits`` looks its steps up by the optim setting's name) is the
    user's mistake. Resolvers that only work inside a Hydra job (``${hydra:...}``) are left to it."""
    from omegaconf.errors import InterpolationKeyError, InterpolationToMissingValueError

    for key in cfg:
        if key == "hydra":  # Hydra's own node (present when composed with it) resolves only inside a job
            continue
        try:
            value = cfg[key]  # resolves a value; a group is resolved whole below
            if OmegaConf.is_config(value):
                OmegaConf.to_container(value, resolve=True)
        except (InterpolationKeyError, InterpolationToMissingValueError) as exc:
            bad = getattr(exc, "full_key", None) or str(key)
            raw = OmegaConf.to_container(cfg, resolve=False)
            for part in str(bad).split("."):
                raw = raw.get(part) if isinstance(raw, dict) else None
            shown = f"{bad}={raw}" if isinstance(raw, str) else str(bad)
            raise ConfigError(f"{shown} does not resolve ({str(exc).splitlines()[0]}); "
                              f"choose options it knows or set {bad}= on the command line") from None
        except Exception:  # noqa: BLE001  a resolver's own failure (outside a Hydra job): not this check's to judge
            continue


def validate(cfg: DictConfig) -> None:
    check_resolves(cfg)
    _number(cfg, "steps", integer=True)
    _number(cfg, "seed", integer=True, positive=False, low=0, high=SEED_MAX)
    _number(cfg, "data.batch_size", integer=True)
    _number(cfg, "optim.lr")
    _number(cfg, "optim.n_dis", integer=True)
    _number(cfg, "optim.beta1", positive=False, low=0, high=1, high_open=True)
    _number(cfg, "optim.beta2", positive=False, low=0, high=1, high_open=True)
    _number(cfg, "z_dim", integer=True)
    _number(cfg, "log_every", integer=True)
    threads = OmegaConf.select(cfg, "threads", default=None)
    if threads is not None and threads != "auto":
        if not (isinstance(threads, int) and not isinstance(threads, bool) and threads > 0):
            raise ConfigError(f"threads={threads!r} is invalid; it must be a positive integer, auto, or null (torch's default)")
    for key in ("perf.channels_last", "perf.compile", "skip_completed"):  # "yes" would pass as a truthy string
        value = OmegaConf.select(cfg, key, default=False)
        if not isinstance(value, bool):
            raise ConfigError(f"{key}={value!r} is invalid; it must be true or false")
    for key in ("checkpoint.every", "samples.every"):
        value = OmegaConf.select(cfg, key, default=0)
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
            raise ConfigError(f"{key}={value!r} is invalid; it must be a non-negative integer (0 turns it off)")
    from .data.spec import dataset

    image = dataset(cfg.data.name).image  # what the dataset declares (src/data/spec.py)
    if image:
        _number(cfg, "data.resolution", integer=True)
    _check_device(cfg)
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
    if cfg.arch.name == "mlp" and image and cfg.data.get("resolution", 8) > 16:
        raise ConfigError(f"arch=mlp is for 2-D and tiny data, not data={cfg.data.name} at {cfg.data.resolution}x{cfg.data.resolution}; use arch=standard_cnn or arch=resnet")
    if cfg.arch.name != "mlp" and not image:
        raise ConfigError(f"arch={cfg.arch.name} needs image data, not data={cfg.data.name}; use arch=mlp")
    if OmegaConf.select(cfg, "regularizer.name") == "batch_norm" and cfg.data.batch_size < 2:
        raise ConfigError(f"data.batch_size={cfg.data.batch_size} is invalid with regularizer=batch_norm: batch "
                          "normalization needs at least 2 samples per batch; use data.batch_size>=2 or another regularizer")


def _check_device(cfg: DictConfig) -> None:
    """An accelerator the machine does not have: Lightning's error is a multi-line traceback after setup."""
    import torch

    accelerator = str(OmegaConf.select(cfg, "trainer.accelerator", default="auto") or "auto").lower()
    available = {"cpu": True, "auto": True, "cuda": torch.cuda.is_available(), "gpu": torch.cuda.is_available(),
                 "mps": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())}
    if accelerator not in available:
        raise ConfigError(f"trainer.accelerator={accelerator!r} is unknown; valid: cpu, cuda, gpu, mps, auto")
    if not available[accelerator]:
        valid = ", ".join(k for k, ok in available.items() if ok)
        raise ConfigError(f"trainer.accelerator={accelerator} but this machine has no {accelerator.upper()} device "
                          f"visible to torch; valid here: {valid}")
