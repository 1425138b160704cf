"""What a dataset is: each dataset module in src/data/ declares ``DATASET = Dataset(...)``, and the rest of
the lab asks the declaration (image or flat points, channels, splits, streaming, the feature network that
scores it) instead of comparing dataset names. Adding a dataset is its module here plus its config in
conf/data/ (which also picks its natural arch and optim setting)."""
import importlib
import pkgutil
from dataclasses import dataclass
from typing import Callable

from ..errors import ConfigError


@dataclass(frozen=True)
class Dataset:
    name: str
    load: Callable  # (datamodule) -> uint8 images (N, C, H, W), or float points (N, d) for flat data
    image: bool = True  # False: flat points (no resolution / channels), scored by the toy measures
    channels: tuple = (3,)  # valid data.channels
    splits: tuple | None = None  # named splits (data.split, metrics.real_split); None: one set of samples
    whole: str = "all"  # what scoring calls that one set (eval_protocol's real_split) when splits is None
    streamable: bool = False  # data.in_memory=false streams it from disk
    features: str = "inception"  # the feature network that scores it: inception, digits-mlp (its classifier), toy
    named_reference: bool = False  # may be named as the real set of src.evaluate --fake DIR --real NAME
    check: Callable | None = None  # (datamodule) -> None: its own options, checked when the datamodule is built


_REGISTRY: dict | None = None


def datasets() -> dict:
    """{name: Dataset} of every module of this package that declares DATASET (found, not listed)."""
    global _REGISTRY
    if _REGISTRY is None:
        from .. import data

        found = {}
        for info in sorted(pkgutil.iter_modules(data.__path__), key=lambda m: m.name):
            module = importlib.import_module(f"{data.__name__}.{info.name}")
            spec = getattr(module, "DATASET", None)
            if isinstance(spec, Dataset):
                found[spec.name] = spec
        _REGISTRY = found
    return _REGISTRY


NAMES_ORDER = ("toy2d", "digits", "cifar10", "stl10", "image_folder")  # how messages list them (the README's order)


def names() -> tuple:
    known = datasets()
    return tuple([n for n in NAMES_ORDER if n in known] + sorted(n for n in known if n not in NAMES_ORDER))


def dataset(name: str) -> Dataset:
    """The declaration of data.name=name; one-line ConfigError for an unknown name."""
    spec = datasets().get(name)
    if spec is None:
        raise ConfigError(f"data.name={name!r} is unknown; valid: {', '.join(names())}")
    return spec


def spec_of(datamodule) -> Dataset:
    """The declaration of a datamodule (or of anything with a dataset ``name``)."""
    return getattr(datamodule, "spec", None) or dataset(datamodule.name)


def streamable() -> tuple:
    return tuple(n for n in names() if datasets()[n].streamable)


__all__ = ["Dataset", "dataset", "datasets", "names", "spec_of", "streamable"]
