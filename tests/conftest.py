"""Fixtures (the shared helpers are in tests/helpers.py)."""
import pytest

import src  # noqa: F401  (registers the OmegaConf resolvers the configs use, as `python -m src.train` does)
from tests.helpers import capture_modules, make_cifar10, make_image_folder, make_stl10, run_cli


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Caches (decoded datasets, Inception statistics) go to a per-session temp dir, never ~/.cache."""
    cache = tmp_path_factory.getbasetemp() / "ganlab-cache"
    monkeypatch.setenv("GANLAB_CACHE", str(cache))
    monkeypatch.setenv("WANDB_MODE", "offline")
    return cache


@pytest.fixture
def cifar_root(tmp_path):
    return make_cifar10(tmp_path / "cifar")


@pytest.fixture
def stl_root(tmp_path):
    return make_stl10(tmp_path / "stl")


@pytest.fixture
def image_root(tmp_path):
    return make_image_folder(tmp_path / "images")


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture
def built(monkeypatch):
    """The modules src.train builds, in order (so a test can inspect the trained one)."""
    return capture_modules(monkeypatch)
