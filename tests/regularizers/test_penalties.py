"""R1, R2 and WGAN-LP (issue 13): each against an independent computation.

Linear D(x) = w.x + b has grad_x D = w everywhere, so R1 = R2 = gamma/2 |w|^2 exactly and WGAN-LP is
0 for |w| < 1 and lam (|w| - 1)^2 above; for a nonlinear D the test takes each sample's input gradient
itself, one sample at a time.
"""
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from src.errors import ConfigError
from src.regularizers import build_regularizer
from src.regularizers.r1 import R1
from src.regularizers.r2 import R2
from src.regularizers.wgan_gp import WGANGP
from src.regularizers.wgan_lp import WGANLP
from tests.helpers import REPO, train_in_process

CONF = REPO / "conf" / "regularizer"
SHAPE = (3, 4, 4)


def linear_d(norm: float, seed: int = 0) -> nn.Module:
    """D(x) = w.x + b on flattened 3x4x4 inputs with |w| = norm."""
    torch.manual_seed(seed)
    d = nn.Sequential(nn.Flatten(), nn.Linear(48, 1))
    with torch.no_grad():
        d[1].weight.mul_(norm / d[1].weight.norm())
        d[1].bias.fill_(0.3)
    return d


def nonlinear_d(seed: int = 1) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1), nn.LeakyReLU(0.1), nn.Conv2d(8, 8, 3, 2, 1), nn.Tanh(),
                         nn.Flatten(), nn.Linear(8 * 2 * 2, 1))


def batches(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, *SHAPE, generator=g) * 2 - 1, torch.rand(n, *SHAPE, generator=g) * 2 - 1


def per_sample_sq_grad_norms(d: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """|grad_x D(x_i)|^2, one sample at a time (no batching, no create_graph)."""
    out = []
    for xi in x:
        xi = xi[None].clone().requires_grad_(True)
        (g,) = torch.autograd.grad(d(xi).sum(), xi)
        out.append(g.pow(2).sum())
    return torch.stack(out)


# ---- R1 / R2 -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [R1, R2])
def test_r1_r2_on_a_linear_d_are_half_gamma_times_the_squared_weight_norm(cls):
    real, fake = batches()
    d = linear_d(norm=1.7)
    pen = cls(gamma=3.0).penalty(d, real, fake)
    w = d[1].weight.detach()
    assert pen.item() == pytest.approx(3.0 / 2 * w.pow(2).sum().item(), rel=1e-6)
    pen.backward()  # reaches D's parameters: d/dw (gamma/2 |w|^2) = gamma w; the bias has no part in it
    torch.testing.assert_close(d[1].weight.grad, 3.0 * w)
    assert d[1].bias.grad is None or d[1].bias.grad.abs().max() == 0


def test_r1_on_a_nonlinear_d_is_the_mean_squared_input_gradient_at_the_real_batch():
    real, fake = batches(n=5)
    d = nonlinear_d()
    expected = 10.0 / 2 * per_sample_sq_grad_norms(d, real).mean()
    assert R1(gamma=10.0).penalty(d, real, fake).item() == pytest.approx(expected.item(), rel=1e-5)
    # the fake batch plays no part: any fake gives the same value
    assert R1(gamma=10.0).penalty(d, real, fake * 0 + 5).item() == pytest.approx(expected.item(), rel=1e-5)


def test_r2_on_a_nonlinear_d_is_the_mean_squared_input_gradient_at_the_generated_batch():
    real, fake = batches(n=5)
    d = nonlinear_d()
    expected = 0.5 / 2 * per_sample_sq_grad_norms(d, fake).mean()
    assert R2(gamma=0.5).penalty(d, real, fake).item() == pytest.approx(expected.item(), rel=1e-5)
    assert R2(gamma=0.5).penalty(d, real * 0 - 3, fake).item() == pytest.approx(expected.item(), rel=1e-5)
    assert R1(gamma=0.5).penalty(d, real, fake).item() != pytest.approx(expected.item(), rel=1e-3)  # R1 differs here


def test_r1_gradient_reaches_d_like_autograd_of_the_direct_formula():
    real, fake = batches(n=4)
    d, ref = nonlinear_d(), nonlinear_d()
    R1(gamma=2.0).penalty(d, real, fake).backward()
    x = real.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(ref(x).sum(), x, create_graph=True)
    (2.0 / 2 * g.flatten(1).pow(2).sum(1).mean()).backward()
    for p, q in zip(d.parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("cls", [R1, R2])
def test_lazy_application_every_k_d_updates_with_gamma_scaled_by_k(cls):
    real, fake = batches()
    d = linear_d(norm=0.8)
    w2 = d[1].weight.detach().pow(2).sum().item()
    reg = cls(gamma=2.0, every=4)
    values = [reg.penalty(d, real, fake) for _ in range(9)]
    for i, v in enumerate(values):
        if i % 4:
            assert v is None, i  # off the schedule: nothing computed
        else:
            assert v.item() == pytest.approx(2.0 * 4 / 2 * w2, rel=1e-6), i


def test_lazy_counter_is_checkpointed_and_resumes_the_same_schedule():
    real, fake = batches()
    d = linear_d(norm=0.8)
    straight = R1(every=3)
    schedule = [straight.penalty(d, real, fake) is not None for _ in range(8)]
    first = R1(every=3)
    for _ in range(5):
        first.penalty(d, real, fake)
    state = first.state_dict()
    assert state == {"d_updates": 5}
    resumed = R1(every=3)
    resumed.load_state_dict(state)
    assert [resumed.penalty(d, real, fake) is not None for _ in range(3)] == schedule[5:]
    assert schedule == [True, False, False, True, False, False, True, False]


# ---- WGAN-LP -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("norm,expected", [(0.4, 0.0), (0.999, 0.0), (1.6, 7.0 * 0.6 ** 2), (3.0, 7.0 * 2.0 ** 2)])
def test_wgan_lp_on_a_linear_d_is_one_sided(norm, expected):
    real, fake = batches()
    pen = WGANLP(lam=7.0).penalty(linear_d(norm), real, fake)
    if expected == 0:
        assert pen.item() == 0.0
    else:
        assert pen.item() == pytest.approx(expected, rel=1e-5)


def test_wgan_lp_uses_wgan_gp_s_interpolates_and_penalises_only_norms_above_one():
    """Quadratic-ish nonlinear D: some interpolates have |grad| above 1, some below. Same stream state
    as a WGAN-GP: the same x_hat, and the one-sided value from the test's own per-sample gradients."""
    torch.manual_seed(5)
    real, fake = batches(n=32)
    d = nonlinear_d()
    lp, gp = WGANLP(lam=10.0), WGANGP(lam=10.0)
    gp.load_state_dict(lp.state_dict())
    x_hat = gp.interpolate(real, fake)
    gp.load_state_dict(lp.state_dict())
    scale = per_sample_sq_grad_norms(d, x_hat).sqrt().median().item()
    with torch.no_grad():  # scale D's output so the gradient norms at x_hat straddle 1
        d[-1].weight.div_(scale)
        d[-1].bias.zero_()
    norms = per_sample_sq_grad_norms(d, x_hat).sqrt()
    assert (norms > 1).any() and (norms < 1).any()
    expected = 10.0 * (norms - 1).clamp(min=0).pow(2).mean()
    assert lp.penalty(d, real, fake).item() == pytest.approx(expected.item(), rel=1e-4)
    assert gp.penalty(d, real, fake).item() == pytest.approx(10.0 * (norms - 1).pow(2).mean().item(), rel=1e-4)


def test_wgan_lp_random_stream_is_checkpointed():
    real, fake = batches()
    d = nonlinear_d()
    a = WGANLP()
    state = a.state_dict()
    expected = [a.interpolate(real, fake) for _ in range(2)]
    b = WGANLP()
    b.load_state_dict(state)
    torch.manual_seed(1234)
    for e in expected:
        torch.testing.assert_close(b.interpolate(real, fake), e)
    assert d is not None


@pytest.mark.parametrize("cls", [R1, R2, WGANLP])
def test_penalties_are_float32_under_bf16_autocast(cls):
    real, fake = batches(n=8)
    d = nonlinear_d()
    with torch.no_grad():
        d[-1].weight.mul_(6.0)
    ref_reg, amp_reg = cls(), cls()
    amp_reg.load_state_dict(ref_reg.state_dict())
    ref = ref_reg.penalty(d, real, fake)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        amp = amp_reg.penalty(d, real, fake)
    assert amp.dtype == torch.float32
    assert amp.item() == pytest.approx(ref.item(), rel=1e-5)  # not a bf16 result: the same float32 computation


# ---- configs and bad input ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name,loss,params", [("r1", "ns", {"gamma": 10.0, "every": 1}), ("r2", "ns", {"gamma": 10.0, "every": 1}),
                                              ("wgan_lp", "wasserstein", {"lam": 10.0})])
def test_configs_build_with_the_documented_defaults(name, loss, params):
    cfg = OmegaConf.load(CONF / f"{name}.yaml")
    reg = build_regularizer(cfg)
    assert (reg.name, reg.default_loss, cfg.default_loss, reg.describe()) == (name, loss, loss, params)


@pytest.mark.parametrize("name,key,value,kind", [
    ("r1", "gamma", 0, "positive number"), ("r1", "gamma", -1.0, "positive number"), ("r2", "gamma", "big", "positive number"),
    ("r1", "every", 0, "positive integer"), ("r1", "every", 2.5, "positive integer"), ("r2", "every", "x", "positive integer"),
    ("wgan_lp", "lam", 0, "positive number"), ("wgan_lp", "lam", "ten", "positive number")])
def test_invalid_hyperparameters_are_one_line_config_errors(name, key, value, kind):
    cfg = OmegaConf.load(CONF / f"{name}.yaml")
    cfg[key] = value
    with pytest.raises(ConfigError) as info:
        build_regularizer(cfg)
    msg = str(info.value)
    assert msg.startswith(f"regularizer.{key}={value!r} is invalid; it must be a positive") and kind.split()[1] in msg
    assert "\n" not in msg


# ---- training ----------------------------------------------------------------------------------------------

FAST = ["arch=mlp", "data=toy2d", "data.batch_size=16", "metrics=none", "logger=none", "callbacks=none",
        "samples.every=0", "checkpoint.every=0", "threads=1", "optim.lr_decay=none"]


@pytest.mark.parametrize("name,loss", [("r1", "ns"), ("r2", "ns"), ("wgan_lp", "wasserstein")])
def test_each_penalty_trains_with_its_default_loss(tmp_path, name, loss):
    summary = train_in_process([f"regularizer={name}", *FAST, "steps=2"], tmp_path)
    assert summary["status"] == "completed", summary["error"]
    assert (summary["regularizer"], summary["loss"], summary["steps"], summary["penalty"], summary["method"]) == \
        (name, loss, 2, None, name)


def d_tensors(module):
    return {k: v.detach().clone() for k, v in module.D.state_dict().items()}


def test_lazy_r1_resume_continues_the_schedule_exactly(tmp_path, monkeypatch):
    """every=3 with n_dis=2: the D updates that carry R1 straddle the resume point (updates 0, 3, 6)."""
    import src.module

    built = []
    original = src.module.GAN.__init__

    def record(self, *args, **kwargs):
        original(self, *args, **kwargs)
        built.append(self)

    monkeypatch.setattr(src.module.GAN, "__init__", record)
    common = ["regularizer=r1", "regularizer.every=3", "regularizer.gamma=50", "optim.n_dis=2", *FAST]
    straight = train_in_process([*common, "steps=4"], tmp_path / "straight")
    assert straight["status"] == "completed", straight["error"]
    expected = d_tensors(built[-1])
    assert train_in_process([*common, "steps=2"], tmp_path / "resumed")["status"] == "completed"
    assert built[-1].regularizer.state_dict() == {"d_updates": 4}
    assert train_in_process([*common, "steps=4"], tmp_path / "resumed")["status"] == "completed"
    assert built[-1].regularizer.state_dict() == {"d_updates": 8}
    for k, v in d_tensors(built[-1]).items():
        torch.testing.assert_close(v, expected[k], rtol=1e-6, atol=1e-7, msg=k)


# ---- one forward of D for the loss and the penalty (float32 steps) ---------------------------------------

@pytest.mark.parametrize("cls,batch", [(R1, "real"), (R2, "fake")])
def test_penalty_from_the_loss_s_own_forward_equals_the_separate_penalty(cls, batch):
    """What a float32 training step does when input_grad_at() names a batch: D runs once on it with
    requires_grad; the penalty from those outputs equals penalty()'s own forward, value and gradients."""
    real, fake = batches(n=5)
    d_sep, d_shared = nonlinear_d(), nonlinear_d()
    sep, shared = cls(gamma=4.0), cls(gamma=4.0)
    assert shared.input_grad_at() == batch
    sep.penalty(d_sep, real, fake).backward()
    x_real = real.clone().requires_grad_(batch == "real")
    x_fake = fake.clone().requires_grad_(batch == "fake")
    pen = shared.penalty_from_forward(d_shared, x_real, x_fake, d_shared(x_real), d_shared(x_fake))
    expected = 4.0 / 2 * per_sample_sq_grad_norms(nonlinear_d(), real if batch == "real" else fake).mean()
    assert pen.item() == pytest.approx(expected.item(), rel=1e-5)
    pen.backward()
    for p, q in zip(d_shared.parameters(), d_sep.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-7)
    assert shared.state_dict() == sep.state_dict() == {"d_updates": 1}


def test_shared_forward_is_offered_only_on_scheduled_float32_updates():
    real, fake = batches()
    d = nonlinear_d()
    lazy = R1(every=2)
    assert lazy.input_grad_at() == "real"
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert lazy.input_grad_at() is None  # under autocast the penalty keeps its own float32 forward
    lazy.penalty(d, real, fake)
    assert lazy.input_grad_at() is None  # off the schedule: nothing to compute
    # without input gradients on the batch it falls back to penalty() (which keeps the schedule)
    assert lazy.penalty_from_forward(d, real, fake, d(real), d(fake)) is None
    assert lazy.penalty_from_forward(d, real, fake, d(real), d(fake)).item() > 0
    assert lazy.state_dict() == {"d_updates": 3}
    assert getattr(WGANLP(), "input_grad_at", lambda: None)() is None  # interpolates: no batch's forward to share
