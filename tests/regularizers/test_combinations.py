"""A weight-side method and a penalty together (issue 13): `regularizer=sn penalty=r1`.

The pair is one Combined regularizer: the weight-side method's wrap / after_d_step, the sum of both
penalties, both parts' state in checkpoints; bad pairs stop before training with one line; the
summary names the pair and every hyperparameter used.
"""
import json

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn
from torch.nn.utils import parametrize

from src.errors import ConfigError
from src.regularizers import Combined, build_regularizer, is_penalty
from src.regularizers.orthonormal import Orthonormal, gram_deviation
from src.regularizers.r1 import R1
from src.regularizers.spectral_norm import SpectralNorm
from src.regularizers.weight_clip import WeightClip
from src.regularizers.wgan_gp import WGANGP
from src.summary import hyperparameter
from tests.helpers import REPO, compose_config, run_cli, train_in_process

CONF = REPO / "conf"
PENALTIES = ["wgan_gp", "wgan_lp", "dragan", "r1", "r2", "orthonormal"]
FAST = ["arch=mlp", "data=toy2d", "data.batch_size=16", "metrics=none", "logger=none", "callbacks=none",
        "samples.every=0", "checkpoint.every=0", "threads=1", "optim.lr_decay=none"]


def pair(*overrides):
    cfg = compose_config(list(overrides))
    return build_regularizer(cfg.regularizer, cfg.penalty)


def small_d(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.LeakyReLU(0.1), nn.Flatten(), nn.Linear(8 * 4 * 4, 1))


def batches(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 8, 8, generator=g) * 2 - 1, torch.rand(n, 3, 8, 8, generator=g) * 2 - 1


# ---- the config group --------------------------------------------------------------------------------------

def test_penalty_group_has_none_and_every_penalty_type_method():
    assert {p.stem for p in (CONF / "penalty").glob("*.yaml")} == {"none", *PENALTIES}
    assert compose_config([]).penalty.name == "none"


@pytest.mark.parametrize("name", PENALTIES)
def test_each_penalty_option_takes_its_defaults_from_the_regularizer_config(name):
    cfg = compose_config(["regularizer=sn", f"penalty={name}"])
    own = OmegaConf.load(CONF / "regularizer" / f"{name}.yaml")
    assert OmegaConf.to_container(cfg.penalty) == OmegaConf.to_container(own)
    reg = build_regularizer(cfg.regularizer, cfg.penalty)
    assert isinstance(reg, Combined) and reg.name == f"sn+{name}" and is_penalty(reg.penalty_part)
    assert reg.describe() == {"sn": {"power_iterations": 1, "output_gain": 1.0}, name: reg.penalty_part.describe()}


def test_penalty_keys_live_under_penalty():
    reg = pair("regularizer=sn", "penalty=r1", "penalty.gamma=0.25", "penalty.every=4")
    assert (reg.penalty_part.gamma, reg.penalty_part.every) == (0.25, 4)


def test_without_a_penalty_the_regularizer_is_built_as_before():
    reg = pair("regularizer=wgan_gp")
    assert type(reg) is WGANGP and reg.name == "wgan_gp" and reg.lam == 10.0


@pytest.mark.parametrize("regularizer,penalty,loss", [("sn", "wgan_gp", "ns"), ("weight_clip", "r1", "wasserstein"),
                                                       ("sn", "wgan_lp", "ns"), ("none", "r1", "ns")])
def test_auto_loss_is_the_weight_side_method_s_default(regularizer, penalty, loss):
    assert compose_config([f"regularizer={regularizer}", f"penalty={penalty}"]).loss.name == loss
    assert pair(f"regularizer={regularizer}", f"penalty={penalty}").default_loss == loss


def test_auto_loss_next_to_regularizer_none_is_the_penalty_s_default():
    assert compose_config(["regularizer=none", "penalty=wgan_lp"]).loss.name == "wasserstein"


def test_combined_default_loss_next_to_none_is_the_penalty_s():
    assert pair("regularizer=none", "penalty=wgan_lp").default_loss == "wasserstein"


# ---- bad pairs and values: one line, before training ------------------------------------------------------

@pytest.mark.parametrize("overrides,needles", [
    (["regularizer=wgan_gp", "penalty=r1"], ["regularizer=wgan_gp and penalty=r1 are both penalties", "regularizer=sn penalty=r1"]),
    (["regularizer=orthonormal", "penalty=dragan"], ["regularizer=orthonormal and penalty=dragan are both penalties"]),
    (["regularizer=sn", "penalty=r1", "penalty.gamma=0"], ["penalty.gamma=0 is invalid", "positive"]),
    (["regularizer=sn", "penalty=r2", "penalty.every=-2"], ["penalty.every=-2 is invalid", "positive integer"]),
    (["regularizer=sn", "penalty=r1", "penalty.every=1.5"], ["penalty.every=1.5 is invalid", "positive integer"]),
    (["regularizer=sn", "penalty=wgan_lp", "penalty.lam=abc"], ["penalty.lam='abc' is invalid", "positive"]),
])
def test_bad_pairs_and_values_are_one_line_config_errors(overrides, needles):
    with pytest.raises(ConfigError) as info:
        pair(*overrides)
    msg = str(info.value)
    assert "\n" not in msg
    for needle in needles:
        assert needle in msg, msg


def test_a_weight_side_method_given_as_penalty_is_refused():
    sn = OmegaConf.load(CONF / "regularizer" / "sn.yaml")
    with pytest.raises(ConfigError, match=r"^penalty=sn is a weight-side method, not a penalty; use regularizer=sn, "
                                          r"and penalty= one of none, dragan, orthonormal, r1, r2, wgan_gp, wgan_lp$"):
        build_regularizer(OmegaConf.load(CONF / "regularizer" / "none.yaml"), sn)


def test_cli_refuses_two_penalties_before_training(tmp_path):
    res = run_cli("src.train", "regularizer=dragan", "penalty=wgan_gp", *FAST, "steps=2", run_dir=tmp_path / "run")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith("error: regularizer=dragan and penalty=wgan_gp are both penalties")
    summary = res.summary
    assert summary["status"] == "failed" and summary["steps"] == 0 and summary["method"] == "dragan+wgan_gp"
    assert not (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()


def test_cli_refuses_a_weight_side_option_for_penalty(tmp_path):
    res = run_cli("src.train", "regularizer=none", "penalty=sn", *FAST, "steps=2", run_dir=tmp_path / "run")
    assert res.returncode != 0 and "Traceback" not in res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert "penalty/sn" in last and "r1" in last  # names the option and lists the valid ones
    if (tmp_path / "run" / "summary.json").exists():
        assert res.summary["status"] == "failed" and res.summary["steps"] == 0


# ---- the composite's behaviour ----------------------------------------------------------------------------

def test_combined_penalty_is_the_penalty_parts_own_value_and_wrap_is_the_weight_side_s():
    real, fake = batches()
    d = small_d()
    torch.manual_seed(3)
    combined = Combined(SpectralNorm(), WGANGP(lam=4.0))
    alone = WGANGP(lam=4.0)
    alone.load_state_dict(combined.penalty_part.state_dict())
    combined.wrap(d, real[:2])
    assert all(parametrize.is_parametrized(m, "weight") for m in (d[0], d[3]))  # SN's parametrization
    with parametrize.cached():  # as the training step: one weight per D update
        got = combined.penalty(d, real, fake)
        own = alone.penalty(d, real, fake)
    assert got.item() == pytest.approx(own.item(), rel=1e-6) and got.item() > 0


def test_combined_after_d_step_is_the_weight_side_projection():
    d = small_d()
    with torch.no_grad():
        d[0].weight.mul_(100)
    combined = Combined(WeightClip(c=0.05), R1())
    combined.after_d_step(d)
    assert max(p.abs().max().item() for p in d.parameters()) == pytest.approx(0.05)  # clamped to [-c, c], float32


def test_orthonormal_as_a_penalty_keeps_its_init_under_the_weight_side_parametrization():
    """Its init runs on the raw weights first, then SN wraps them: the parametrization's original is
    orthonormal, and the penalty is orthonormal's own on D's effective weights."""
    real, fake = batches()
    d = small_d()
    combined = Combined(SpectralNorm(), Orthonormal(coef=0.5))
    combined.wrap(d, real[:2])
    for layer in (d[0], d[3]):
        assert gram_deviation(layer.parametrizations.weight.original).item() < 1e-8
    with parametrize.cached():
        assert combined.penalty(d, real, fake).item() == pytest.approx(Orthonormal(coef=0.5).penalty(d, real, fake).item(), rel=1e-6)


def test_penalties_of_both_parts_are_summed_and_none_when_both_are_off():
    class Const(R1):  # a stand-in weight-side part that also adds a term
        def penalty(self, discriminator, real, fake):
            return torch.tensor(2.5)

    real, fake = batches()
    d = small_d()
    lazy = Combined(Const(), R1(gamma=1.0, every=2))
    first, second = lazy.penalty(d, real, fake), lazy.penalty(d, real, fake)
    own = R1(gamma=1.0, every=2).penalty(d, real, fake)
    assert first.item() == pytest.approx(2.5 + own.item(), rel=1e-6) and second.item() == 2.5
    off = Combined(SpectralNorm(), R1(every=2))
    off.penalty(d, real, fake)
    assert off.penalty(d, real, fake) is None


def test_checkpoint_round_trip_of_the_pair_restores_both_parts():
    real, fake = batches()
    d = small_d()
    torch.manual_seed(21)
    a = pair("regularizer=weight_clip", "penalty=wgan_gp")
    a.penalty(d, real, fake)
    state = a.state_dict()
    assert set(state) == {"regularizer", "penalty"} and "rng_state" in state["penalty"]
    expected = [a.penalty_part.interpolate(real, fake) for _ in range(2)]
    torch.manual_seed(99)
    b = pair("regularizer=weight_clip", "penalty=wgan_gp")
    b.load_state_dict(state)
    for e in expected:
        torch.testing.assert_close(b.penalty_part.interpolate(real, fake), e)
    lazy = pair("regularizer=sn", "penalty=r1", "penalty.every=3")
    for _ in range(4):
        lazy.penalty(d, real, fake)
    restored = pair("regularizer=sn", "penalty=r1", "penalty.every=3")
    restored.load_state_dict(lazy.state_dict())
    assert restored.state_dict() == {"regularizer": {}, "penalty": {"d_updates": 4}}
    assert [restored.penalty(d, real, fake) is not None for _ in range(3)] == [False, False, True]


# ---- training and the summary -----------------------------------------------------------------------------

@pytest.fixture
def built(monkeypatch):
    """The GAN modules built by train_in_process, for looking inside after the run."""
    import src.module

    modules, original = [], src.module.GAN.__init__

    def record(self, *args, **kwargs):
        original(self, *args, **kwargs)
        modules.append(self)

    monkeypatch.setattr(src.module.GAN, "__init__", record)
    return modules


def test_sn_plus_r1_trains_and_its_d_loss_is_the_loss_plus_r1_s_own_value(tmp_path, monkeypatch, built):
    """Every D update: the total the module backpropagates equals the NS loss plus gamma/2 E|grad D(x)|^2,
    both computed here independently (per-sample autograd on the SN-wrapped D at the real batch)."""
    import torch.nn.functional as F

    import src.module

    expected, totals = [], []
    original_penalty, original_shared = Combined.penalty, Combined.penalty_from_forward
    original_backward = src.module.GAN.manual_backward

    def independent(discriminator, real, fake):
        # inside the step's parametrize.cached(): the same SN weights as the step's own forwards
        real, fake = real.detach(), fake.detach()
        with torch.no_grad():
            d_loss = (F.softplus(-discriminator(real)).mean() + F.softplus(discriminator(fake)).mean()).item()
        own = 0.0
        for x in real:
            x = x[None].clone().requires_grad_(True)
            (g,) = torch.autograd.grad(discriminator(x).sum(), x)
            own += g.pow(2).sum().item() / real.shape[0]
        expected.append((d_loss, 3.0 / 2 * own))

    def penalty(self, discriminator, real, fake):
        independent(discriminator, real, fake)
        return original_penalty(self, discriminator, real, fake)

    def penalty_from_forward(self, discriminator, real, fake, d_real, d_fake):  # a step sharing D's forward
        independent(discriminator, real, fake)
        return original_shared(self, discriminator, real, fake, d_real, d_fake)

    def backward(self, loss, *args, **kwargs):
        if len(totals) < len(expected):  # the D update's total (G's backward follows, after the n_dis D updates)
            totals.append(loss.item())
        return original_backward(self, loss, *args, **kwargs)

    monkeypatch.setattr(Combined, "penalty", penalty)
    monkeypatch.setattr(Combined, "penalty_from_forward", penalty_from_forward)
    monkeypatch.setattr(src.module.GAN, "manual_backward", backward)
    summary = train_in_process(["regularizer=sn", "penalty=r1", "penalty.gamma=3", "optim.n_dis=2", *FAST, "steps=2"], tmp_path)
    assert summary["status"] == "completed", summary["error"]
    module = built[-1]
    assert module.regularizer.name == "sn+r1" and isinstance(module.regularizer.penalty_part, R1)
    assert all(parametrize.is_parametrized(m, "weight") for m in module.D.modules() if isinstance(m, nn.Linear))
    assert len(expected) == len(totals) == 2 * 2
    for (d_loss, own), total in zip(expected, totals):
        assert total == pytest.approx(d_loss + own, rel=1e-5) and own > 0


def test_summary_names_the_pair_and_its_hyperparameters(tmp_path):
    summary = train_in_process(["regularizer=sn", "penalty=r1", "penalty.gamma=1", *FAST, "steps=2"], tmp_path)
    assert summary["status"] == "completed", summary["error"]
    written = json.loads((tmp_path / "summary.json").read_text())
    for s in (summary, written):
        assert (s["regularizer"], s["penalty"], s["method"], s["loss"]) == ("sn", "r1", "sn+r1", "ns")
        assert s["regularizer_params"] == {"sn": {"power_iterations": 1, "output_gain": 1.0}, "r1": {"gamma": 1, "every": 1}}
        assert hyperparameter(s, "penalty.gamma") == 1 and hyperparameter(s, "regularizer.power_iterations") == 1


@pytest.mark.parametrize("overrides,fields", [
    (["regularizer=wgan_gp", "regularizer.lam=5"], {"penalty": None, "method": "wgan_gp", "regularizer_params": {"lam": 5}}),
    (["regularizer=none", "penalty=r1"], {"penalty": "r1", "method": "r1",
                                          "regularizer_params": {"none": {}, "r1": {"gamma": 10.0, "every": 1}}}),
    (["regularizer=none"], {"penalty": None, "method": "none", "regularizer_params": {}}),
])
def test_summary_method_fields_without_a_weight_side_part_or_without_a_penalty(overrides, fields):
    from src.summary import base_summary

    summary = base_summary(compose_config(overrides))
    assert {k: summary[k] for k in fields} == fields
    assert summary["regularizer"] == overrides[0].split("=")[1]


def test_a_sweep_over_regularizer_lam_reads_back_from_summaries_alone():
    from src.summary import base_summary

    for lam in (1, 10.0):
        single = base_summary(compose_config(["regularizer=wgan_gp", f"regularizer.lam={lam}"]))
        paired = base_summary(compose_config(["regularizer=sn", "penalty=wgan_gp", f"penalty.lam={lam}"]))
        assert hyperparameter(single, "regularizer.lam") == lam == hyperparameter(paired, "penalty.lam")
        assert hyperparameter(single, "penalty.lam") is None and hyperparameter(paired, "regularizer.lam") is None


def test_pair_resume_continues_the_lazy_schedule_and_the_weight_side_state(tmp_path, built):
    common = ["regularizer=sn", "penalty=r1", "penalty.every=3", "penalty.gamma=50", "optim.n_dis=2", *FAST]
    assert train_in_process([*common, "steps=4"], tmp_path / "straight")["status"] == "completed"
    expected = {k: v.detach().clone() for k, v in built[-1].D.state_dict().items()}
    assert train_in_process([*common, "steps=2"], tmp_path / "resumed")["status"] == "completed"
    resumed = train_in_process([*common, "steps=4"], tmp_path / "resumed")
    assert resumed["status"] == "completed", resumed["error"]
    assert built[-1].regularizer.state_dict()["penalty"] == {"d_updates": 8}
    for k, v in built[-1].D.state_dict().items():
        torch.testing.assert_close(v, expected[k], rtol=1e-6, atol=1e-7, msg=k)


# ---- grids -------------------------------------------------------------------------------------------------

def grid(name, overrides=(), hydra=True):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("config", overrides=[f"experiment={name}", *overrides], return_hydra_config=hydra)


def grid_values(cfg):
    from src.report.sweep import sweep_values

    return {k: set(v) for k, v in sweep_values(OmegaConf.to_container(cfg.hydra.sweeper.params), []).items()}


@pytest.mark.parametrize("name,expected", [
    ("grid_family", {"regularizer": {"r1", "r2", "wgan_lp", "sn_gram", "bjorck", "aol"}}),
    ("grid_combos", {"regularizer": {"sn"}, "penalty": {"r1", "wgan_gp"}}),
])
def test_family_grids_sweep_the_new_methods_and_pairs_over_the_main_grid_s_settings(name, expected):
    cfg = grid(name)
    values = grid_values(cfg)
    assert values == {**expected, "optim": set("ABCDEF"), "seed": {"0", "1", "2"}}
    assert cfg.hydra.sweep.dir.startswith(f"multirun/{name}/")
    assert (cfg.data.name, cfg.metrics.name, cfg.arch.name) == ("cifar10", "paper", "standard_cnn")


def test_grids_together_cover_every_regularizer_and_penalty_option():
    swept = grid_values(grid("grid_main"))["regularizer"] | grid_values(grid("grid_family"))["regularizer"]
    assert swept == {p.stem for p in (CONF / "regularizer").glob("*.yaml")}
    assert {"r1", "wgan_gp"} <= grid_values(grid("grid_combos"))["penalty"]


@pytest.mark.parametrize("name", ["grid_family", "grid_combos"])
def test_every_job_of_the_family_grids_composes_validates_and_builds(name):
    """Each job's regularizer (and pair) builds: a bad pair would only fail once the sweep runs."""
    import itertools

    from src.summary import base_summary
    from src.validation import validate

    values = grid_values(grid(name))
    keys = [k for k in ("regularizer", "penalty") if k in values]
    for combo in itertools.product(*(sorted(values[k]) for k in keys)):
        cfg = grid(name, [f"{k}={v}" for k, v in zip(keys, combo)], hydra=False)
        validate(cfg)
        reg = build_regularizer(cfg.regularizer, cfg.get("penalty"))
        assert reg.name == base_summary(cfg)["method"] == "+".join(combo)
        assert cfg.loss.name == reg.default_loss


def test_a_pair_offers_its_penalty_s_shared_forward_and_sums_the_parts():
    real, fake = batches()
    d = small_d()
    combined = Combined(SpectralNorm(), R1(gamma=2.0))
    combined.wrap(d, real[:2])
    assert combined.input_grad_at() == "real"
    assert Combined(SpectralNorm(), WGANGP()).input_grad_at() is None
    x = real.clone().requires_grad_(True)
    with parametrize.cached():
        got = combined.penalty_from_forward(d, x, fake, d(x), d(fake))
        own = R1(gamma=2.0).penalty(d, real, fake)
    assert got.item() == pytest.approx(own.item(), rel=1e-5)
    assert combined.state_dict()["penalty"] == {"d_updates": 1}


def test_run_directories_name_the_pair():
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from tests.helpers import REPO

    GlobalHydra.instance().clear()
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        dirs = [compose("config", overrides=o, return_hydra_config=True).hydra.run.dir
                for o in ([], ["penalty=r1"], ["regularizer=none", "penalty=r1"])]
    GlobalHydra.instance().clear()
    assert [d.split("/")[2] for d in dirs] == ["sn_ns_toy", "sn+r1_ns_toy", "r1_ns_toy"]
