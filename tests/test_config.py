"""Every option of every config group composes, and what it describes instantiates."""

import pytest
import torch

from tests.helpers import REPO
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import OmegaConf

from src.losses import get_loss
from src.regularizers import build_regularizer
from src.validation import validate

CONF = REPO / "conf"


def options(group):
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def compose_cfg(overrides, tmp_path=None):
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides), return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    return cfg


def test_design_options_exist():
    required = {
        "regularizer": {"none", "sn"},
        "loss": {"ns", "minimax", "hinge", "wasserstein"},
        "optim": {"A", "B", "C", "D", "E", "F", "resnet"},
        "arch": {"standard_cnn", "resnet", "mlp"},
        "data": {"toy2d", "digits", "cifar10", "stl10", "image_folder"},
        "logger": {"csv", "none"},
        "metrics": {"paper", "full", "fast", "none"},
    }
    for group, names in required.items():
        assert names <= set(options(group)), (group, names - set(options(group)))


@pytest.mark.parametrize("group", ["regularizer", "loss", "optim", "arch", "data", "logger", "metrics", "experiment"])
def test_every_option_composes(group):
    for name in options(group):
        overrides = [f"{group}={name}"]
        if group == "data" and name == "image_folder":
            overrides.append("data.root=/nonexistent")
        if group == "arch" and name != "mlp":
            overrides.append("data=cifar10")
        cfg = compose_cfg(overrides)
        for key in cfg:  # every interpolation resolves (hydra's own sweep keys only exist at run time)
            if key != "hydra":
                OmegaConf.to_container(cfg[key], resolve=True) if OmegaConf.is_config(cfg[key]) else cfg[key]


def test_defaults_are_the_quickstart_and_the_paper_setup():
    cfg = compose_cfg([])
    assert (cfg.data.name, cfg.arch.name, cfg.regularizer.name, cfg.loss.name) == ("toy2d", "mlp", "sn", "ns")
    cfg = compose_cfg(["regularizer=sn", "data=cifar10"])
    assert (cfg.arch.name, cfg.data.batch_size, cfg.z_dim, cfg.steps) == ("standard_cnn", 64, 128, 100000)
    assert cfg.optim.name in "ABCDEF"
    # an explicit choice wins over the data option's preferred arch/optim
    cfg = compose_cfg(["data=cifar10", "arch=resnet", "optim=resnet"])
    assert (cfg.arch.name, cfg.optim.name, cfg.optim.lr_decay) == ("resnet", "resnet", "linear")


@pytest.mark.parametrize("setting,lr,b1,b2,n_dis", [
    ("A", 1e-4, 0.5, 0.9, 5), ("B", 1e-4, 0.5, 0.999, 1), ("C", 2e-4, 0.5, 0.999, 1),
    ("D", 1e-3, 0.5, 0.9, 5), ("E", 1e-3, 0.5, 0.999, 5), ("F", 1e-3, 0.9, 0.999, 5), ("resnet", 2e-4, 0.0, 0.9, 5)])
def test_optim_settings_match_table_1(setting, lr, b1, b2, n_dis):
    o = compose_cfg([f"optim={setting}"]).optim
    assert (o.lr, o.beta1, o.beta2, o.n_dis) == (lr, b1, b2, n_dis)


def test_loss_auto_follows_the_regularizer_and_explicit_loss_wins():
    assert compose_cfg(["regularizer=sn"]).loss.name == "ns"
    assert compose_cfg(["regularizer=sn", "loss=hinge"]).loss.name == "hinge"


@pytest.mark.parametrize("arch,data,res", [("standard_cnn", "cifar10", 32), ("standard_cnn", "stl10", 48),
                                           ("resnet", "cifar10", 32), ("resnet", "stl10", 48), ("standard_cnn", "digits", 8)])
def test_archs_instantiate_and_map_images_to_scores(arch, data, res):
    cfg = compose_cfg([f"arch={arch}", f"data={data}"])
    params = OmegaConf.to_container(cfg.arch, resolve=True)
    params.pop("name")
    g, d = instantiate(params, z_dim=cfg.z_dim, resolution=cfg.data.resolution, channels=cfg.data.channels)
    x = g(torch.randn(3, cfg.z_dim))
    assert x.shape == (3, cfg.data.channels, res, res)
    assert x.abs().max() <= 1
    assert d(x).shape == (3,)


def test_every_regularizer_loss_and_logger_instantiates(tmp_path):
    for name in options("regularizer"):
        reg = build_regularizer(compose_cfg([f"regularizer={name}"]).regularizer)
        assert reg.name == name
    for name in options("loss"):
        cfg = compose_cfg([f"loss={name}"])
        assert get_loss(cfg.loss.name).name == cfg.loss.name
    for name in options("logger"):
        cfg = compose_cfg([f"logger={name}", f"hydra.runtime.output_dir={tmp_path}"])
        if cfg.logger.get("_target_"):
            assert instantiate(cfg.logger) is not None


def test_every_experiment_validates():
    for name in options("experiment"):
        validate(compose_cfg([f"experiment={name}"]))
