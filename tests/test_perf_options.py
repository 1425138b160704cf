"""The GPU-path options run end to end on the CPU: bf16 autocast, channels_last, torch.compile.

Each test trains the standard CNN for a step or two on a tiny image folder and inspects what really
happened inside the training step (hooks on D's layers, the SN parametrization and the gradient
penalty), against an explicit dtype / layout or against the default run with the same seed.
"""
import shutil

import pytest
import torch
from tests.helpers import capture_modules, make_image_folder, train_in_process

import src.regularizers.wgan_gp
import src.train
from src.losses import GANLoss
from src.regularizers.spectral_norm import ReshapedSpectralNorm
from src.spectral.power_iteration import reshaped_power_iteration_nograd

FAST = ["data=image_folder", "data.resolution=16", "data.batch_size=8", "metrics=none", "samples.every=0",
        "checkpoint.every=0", "logger=none", "callbacks=none", "trainer.deterministic=true"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("perf") / "images", n=24)


@pytest.fixture
def built(monkeypatch):
    """The modules src.train builds, in order; ``hooks`` are called on each before it trains."""
    hooks = []
    modules = capture_modules(monkeypatch, lambda module: [hook(module) for hook in hooks])
    return modules, hooks


def train(folder, tmp_path, name, *overrides):
    summary = train_in_process([*FAST, f"data.root={folder}", *overrides], tmp_path / name)
    assert summary["status"] == "completed", summary["error"]
    return summary


def first_losses(module) -> dict:
    row = module.history[0]
    assert row["step"] == 1
    return {k: v for k, v in row.items() if k.startswith("loss/")}


def record_d(module, calls: list):
    """Record, for every training-mode forward of D: the autocast state, the input's layout and the logits' dtype."""
    def hook(mod, args, out):
        if mod.training:
            calls.append({"autocast": torch.is_autocast_enabled("cpu"), "logits": out.dtype,
                          "nhwc": args[0].is_contiguous(memory_format=torch.channels_last)})
    module.D.register_forward_hook(hook)


def record_losses(module, dtypes: list):
    """Record the dtype of every D output the GAN loss receives."""
    loss = module.gan_loss

    def d_loss(real, fake):
        dtypes.extend([real.dtype, fake.dtype])
        return loss.d_loss(real, fake)

    def g_loss(fake):
        dtypes.append(fake.dtype)
        return loss.g_loss(fake)
    module.gan_loss = GANLoss(loss.name, d_loss, g_loss)


# ---- bf16-mixed ---------------------------------------------------------------------------------------------

def test_bf16_mixed_with_sn_runs_d_in_bf16_and_power_iteration_in_float32(folder, tmp_path, built):
    modules, hooks = built
    d_calls, sn_calls = [], []

    def install(module):
        record_d(module, d_calls)
        for layer_param in module.D.modules():
            if isinstance(layer_param, ReshapedSpectralNorm):
                def pre(mod, args):
                    if mod.training:
                        sn_calls.append({"autocast": torch.is_autocast_enabled("cpu"), "weight": args[0].detach().clone(),
                                         "u": mod.u.clone(), "n": mod.power_iterations})

                def post(mod, args, out):
                    if mod.training:
                        sn_calls[-1].update(sigma=mod.sigma.clone(), out=out.detach().clone())
                layer_param.register_forward_pre_hook(pre)
                layer_param.register_forward_hook(post)

    hooks.append(install)
    hooks.append(lambda module: record_losses(module, loss_inputs))
    loss_inputs = []
    train(folder, tmp_path, "bf16_sn", "regularizer=sn", "steps=2", "trainer.precision=bf16-mixed")
    assert d_calls and all(c["autocast"] for c in d_calls)
    assert {c["logits"] for c in d_calls} == {torch.bfloat16}  # the networks' forward ran in bf16
    assert loss_inputs and set(loss_inputs) == {torch.float32}  # the losses are taken on float32 logits
    assert all(p.dtype == torch.float32 for p in modules[0].parameters())  # float32 master weights
    assert len(sn_calls) >= 2 * 8  # 8 SN layers (7 convs + dense), 2 steps
    for call in sn_calls:
        assert call["autocast"]  # the parametrization is computed inside the autocast region ...
        assert call["sigma"].dtype == call["out"].dtype == call["u"].dtype == torch.float32
        # ... and its power iteration and sigma are float32 arithmetic: a float64 reference agrees to float32
        # precision (a bf16 matmul would be off by ~1e-3)
        w = call["weight"].double().flatten(1)
        sigma_ref, _, _ = reshaped_power_iteration_nograd(w, call["u"].double(), call["n"])
        torch.testing.assert_close(call["sigma"].double(), sigma_ref, rtol=2e-6, atol=0)
        torch.testing.assert_close(call["out"].double(), call["weight"].double() / sigma_ref, rtol=2e-6, atol=1e-9)


def test_bf16_mixed_with_wgan_gp_computes_the_penalty_in_float32(folder, tmp_path, built, monkeypatch):
    import copy

    modules, hooks = built
    d_calls, gp_calls = [], []
    hooks.append(lambda module: record_d(module, d_calls))
    original = src.regularizers.wgan_gp.gradient_norm_penalty

    def recording(discriminator, x_hat, target=1.0):
        value = original(discriminator, x_hat, target)
        # reference: the same penalty through a float64 copy of D (a bf16 input gradient misses it by ~1e-2)
        with torch.autocast("cpu", enabled=False):
            d64 = copy.deepcopy(discriminator).double()
            x = x_hat.detach().double().requires_grad_(True)
            (grad,) = torch.autograd.grad(d64(x).sum(), x)
        reference = ((grad.flatten(1).pow(2).sum(1) + 1e-12).sqrt() - target).pow(2).mean()
        gp_calls.append({"autocast": torch.is_autocast_enabled("cpu"), "value": value.detach(), "reference": reference})
        return value

    monkeypatch.setattr(src.regularizers.wgan_gp, "gradient_norm_penalty", recording)
    summary = train(folder, tmp_path, "bf16_gp", "regularizer=wgan_gp", "optim.n_dis=2", "steps=2",
                    "trainer.precision=bf16-mixed")
    assert summary["loss"] == "wasserstein"
    # D's loss forwards ran in bf16, the penalty's forward in float32 (float64: the reference copy, which
    # inherits the recording hook)
    assert {c["logits"] for c in d_calls} - {torch.float64} == {torch.bfloat16, torch.float32}
    assert len(gp_calls) == 2 * 2  # one penalty per D update: n_dis x steps
    for call in gp_calls:
        assert call["autocast"]  # the training step was under bf16 autocast ...
        assert call["value"].dtype == torch.float32  # ... and the penalty still matches float64
        torch.testing.assert_close(call["value"].double(), call["reference"], rtol=1e-4, atol=1e-6)
    history = modules[0].history
    assert all(torch.isfinite(torch.tensor(list(h.values()))).all() for h in history)


# ---- channels_last --------------------------------------------------------------------------------------

def test_channels_last_feeds_d_nhwc_and_matches_the_default_first_step(folder, tmp_path, built):
    modules, hooks = built
    calls = {"default": [], "nhwc": []}
    conv_inputs = {"default": [], "nhwc": []}

    def install(module):
        tag = "nhwc" if module.perf["channels_last"] else "default"
        record_d(module, calls[tag])
        for m in module.D.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.register_forward_pre_hook(lambda mod, args, tag=tag: conv_inputs[tag].append(
                    args[0].is_contiguous(memory_format=torch.channels_last)))

    hooks.append(install)
    train(folder, tmp_path, "default", "steps=1")
    train(folder, tmp_path, "nhwc", "steps=1", "perf.channels_last=true")
    assert conv_inputs["nhwc"] and all(conv_inputs["nhwc"])  # every conv of D got NHWC inputs
    assert not any(c["nhwc"] for c in calls["default"])  # ... which the default run does not
    assert all(c["nhwc"] for c in calls["nhwc"])
    default, nhwc = first_losses(modules[0]), first_losses(modules[1])
    assert default.keys() == nhwc.keys()
    for key in default:
        assert nhwc[key] == pytest.approx(default[key], rel=1e-4, abs=1e-5), key


# ---- torch.compile ----------------------------------------------------------------------------------------

def _compiler() -> str | None:
    return next((c for c in ("c++", "g++", "clang++") if shutil.which(c)), None)


@pytest.mark.slow
@pytest.mark.skipif(_compiler() is None, reason="torch.compile (inductor) on the CPU needs a C++ compiler; none on PATH")
def test_compile_matches_the_eager_first_step(folder, tmp_path, built):
    modules, _ = built
    torch._dynamo.reset()
    train(folder, tmp_path, "eager", "steps=1")
    train(folder, tmp_path, "compiled", "steps=1", "perf.compile=true")
    eager, compiled = modules
    assert isinstance(compiled._d_forward, torch._dynamo.eval_frame.OptimizedModule)
    assert isinstance(compiled._g_forward, torch._dynamo.eval_frame.OptimizedModule)
    assert eager._d_forward is eager.D
    a, b = first_losses(eager), first_losses(compiled)
    for key in a:
        assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-5), key
    torch._dynamo.reset()
