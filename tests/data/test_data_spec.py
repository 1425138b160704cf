"""Datasets declare what they are (src/data/spec.py); nothing outside src/data/ compares dataset names."""
import re

import pytest
from omegaconf import OmegaConf

from src.data import GANDataModule, dataset, datasets, names
from src.errors import ConfigError
from tests.helpers import REPO


def test_every_data_config_names_a_declared_dataset_and_every_dataset_has_a_config():
    configs = {p.stem: OmegaConf.load(p) for p in (REPO / "conf" / "data").glob("*.yaml")}
    assert set(configs) == set(datasets()) == set(names())
    for name, cfg in configs.items():
        assert cfg.name == name and cfg._target_ == "src.data.GANDataModule"


def test_declarations():
    assert not dataset("toy2d").image and dataset("toy2d").features == "toy"
    assert dataset("digits").channels == (1,) and dataset("digits").splits is None
    assert dataset("cifar10").splits == ("train", "test") and dataset("cifar10").named_reference
    assert dataset("image_folder").streamable and dataset("image_folder").channels == (1, 3)
    assert [n for n in names() if dataset(n).streamable] == ["image_folder"]


def test_an_unknown_dataset_is_one_line():
    with pytest.raises(ConfigError, match=r"^data.name='moon' is unknown; valid: toy2d, digits, cifar10, stl10, image_folder$"):
        GANDataModule("moon", batch_size=4)


def test_no_dataset_name_comparisons_outside_src_data():
    quoted = re.compile(r"""["'](%s)["']""" % "|".join(map(re.escape, names())))
    offenders = [f"{p.relative_to(REPO)}:{i}" for p in (REPO / "src").rglob("*.py") if "data" not in p.relative_to(REPO / "src").parts[:1]
                 for i, line in enumerate(p.read_text().splitlines(), 1) if quoted.search(line)]
    assert offenders == []
