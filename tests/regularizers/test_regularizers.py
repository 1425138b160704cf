"""Each regularizer against an independent computation (unit level, CPU, fast).

Independent references: torch.linalg on the reshaped kernel (sn), the dense matrix of a convolution
built with torch.func.jacrev (sn_conv), PyTorch's own spectral_norm parametrization, analytic input
gradients of linear/quadratic discriminators (wgan_gp, dragan), numpy (DRAGAN's scalar std), and
direct Frobenius-norm formulas (orthonormal, weight_norm).
"""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm as torch_spectral_norm

from src.errors import ConfigError
from src.networks.mlp import MLPDiscriminator
from src.networks.norm_slot import NormSlot
from src.networks.resnet import ResNetDiscriminator
from src.networks.standard_cnn import StandardCNNDiscriminator
from src.regularizers import build_regularizer
from src.regularizers.batch_norm import BatchNorm
from src.regularizers.dragan import DRAGAN
from src.regularizers.layer_norm import LayerNorm
from src.regularizers.orthonormal import Orthonormal
from src.regularizers.spectral_norm import SpectralNorm
from src.regularizers.spectral_norm_conv import ConvSpectralNormRegularizer
from src.regularizers.weight_clip import WeightClip
from src.regularizers.weight_norm import WeightNorm
from src.regularizers.wgan_gp import WGANGP
from src.spectral.lipschitz import weight_layers

CONF = "conf/regularizer"


def dense_conv(weight: torch.Tensor, input_shape, stride, padding) -> torch.Tensor:
    """The (out, in) matrix of x -> conv2d(x, weight) at input_shape, by differentiating the conv."""
    n = math.prod(input_shape)
    f = lambda x: F.conv2d(x.view(1, *input_shape), weight, None, stride, padding).flatten()  # noqa: E731
    return torch.func.jacrev(f)(torch.zeros(n, dtype=weight.dtype))


def op_norm(matrix: torch.Tensor) -> float:
    return torch.linalg.matrix_norm(matrix.double(), ord=2).item()


def original(layer: nn.Module) -> torch.Tensor:
    return layer.parametrizations.weight.original


# ---- sn ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("make", [lambda: nn.Linear(20, 30), lambda: nn.Linear(40, 7), lambda: nn.Conv2d(3, 8, 3, 1, 1), lambda: nn.Conv2d(16, 4, 4, 2, 1)])
def test_sn_reshaped_norm_tends_to_one(make):
    torch.manual_seed(0)
    layer = make()
    with torch.no_grad():
        layer.weight.mul_(5.0)  # far from norm 1 to start with
    SpectralNorm().wrap(nn.Sequential(layer), None)
    norms = []
    for _ in range(60):  # one power iteration per training-mode access, as one per D step
        norms.append(op_norm(layer.weight.detach().flatten(1)))
    assert abs(norms[-1] - 1.0) < 1e-3
    assert abs(norms[-1] - 1.0) <= abs(norms[0] - 1.0) + 1e-6
    # the persistent sigma estimate converges to the true reshaped norm of the raw weight
    true = op_norm(original(layer).detach().flatten(1))
    assert layer.parametrizations.weight[0].sigma.item() == pytest.approx(true, rel=1e-3)


def test_sn_matches_pytorch_spectral_norm_given_the_same_vectors():
    torch.manual_seed(1)
    ref = torch_spectral_norm(nn.Linear(12, 9), n_power_iterations=1)
    ours = nn.Linear(12, 9)
    with torch.no_grad():
        ours.weight.copy_(ref.parametrizations.weight.original)
    SpectralNorm().wrap(nn.Sequential(ours), None)
    p_ref, p_ours = ref.parametrizations.weight[0], ours.parametrizations.weight[0]
    w = ref.parametrizations.weight.original.detach()

    # eval mode, same (u, v): identical effective weights
    with torch.no_grad():
        p_ours.u.copy_(p_ref._u)
        p_ours.v.copy_(p_ref._v)
    ref.eval(), ours.eval()
    torch.testing.assert_close(ours.weight, ref.weight, rtol=1e-6, atol=1e-7)

    # training mode from the same u: ours (Miyato: v <- W^T u, u <- W v) and PyTorch (u <- W v,
    # v <- W^T u) produce the same u iterates; ours' sigma pairs the new u with PyTorch's previous v
    ref.train(), ours.train()
    for _ in range(5):
        v_prev = p_ref._v.clone()
        w_ref, w_ours = ref.weight.detach(), ours.weight.detach()
        torch.testing.assert_close(p_ours.u, p_ref._u, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(w_ours, w / torch.dot(p_ref._u, w @ v_prev), rtol=1e-5, atol=1e-7)
        assert not torch.allclose(w_ours, w_ref, rtol=1e-7, atol=0)  # not converged yet: a real check
    # once the iteration has converged the two parametrizations give the same effective weight
    for _ in range(300):
        w_ref, w_ours = ref.weight.detach(), ours.weight.detach()
    torch.testing.assert_close(w_ours, w_ref, rtol=1e-5, atol=1e-7)


def test_sn_gradient_treats_u_and_v_as_constants():
    torch.manual_seed(2)
    layer = nn.Conv2d(3, 5, 3, 1, 1)
    SpectralNorm().wrap(nn.Sequential(layer), None)
    g = torch.randn_like(layer.weight)
    w_eff = layer.weight  # runs one iteration and updates u, v
    (w_eff * g).sum().backward()
    p = layer.parametrizations.weight[0]
    w = original(layer).detach().flatten(1)
    sigma = torch.dot(p.u, w @ p.v)
    # d/dW <g, W / sigma> with sigma = u^T W v and u, v fixed: g / sigma - <g, W> / sigma^2 u v^T
    expected = g.flatten(1) / sigma - (g.flatten(1) * w).sum() / sigma**2 * torch.outer(p.u, p.v)
    torch.testing.assert_close(original(layer).grad.flatten(1), expected, rtol=1e-4, atol=1e-6)


def test_divide_by_sigma_gradient_matches_finite_differences():
    """The hand-written backward of W / sigma(W) against numerical differentiation (float64)."""
    from src.regularizers.spectral_norm import DivideBySigma

    g = torch.Generator().manual_seed(0)
    u, v = torch.randn(4, generator=g, dtype=torch.float64), torch.randn(6, generator=g, dtype=torch.float64)
    w = torch.randn(4, 6, generator=g, dtype=torch.float64, requires_grad=True)
    f = lambda w: DivideBySigma.apply(w, torch.dot(u, w @ v).detach(), u, v, None)  # noqa: E731
    assert torch.autograd.gradcheck(f, (w,))
    uc, vc = torch.randn(1, 3, 3, 3, generator=g, dtype=torch.float64), torch.randn(1, 2, 6, 6, generator=g, dtype=torch.float64)
    k = torch.randn(3, 2, 4, 4, generator=g, dtype=torch.float64, requires_grad=True)
    conv_sigma = lambda k: (uc * F.conv2d(vc, k, None, 2, 1)).sum()  # noqa: E731
    fc = lambda k: DivideBySigma.apply(k, conv_sigma(k).detach(), None, None, torch.nn.grad.conv2d_weight(vc, k.shape, uc, 2, 1))  # noqa: E731
    assert torch.autograd.gradcheck(fc, (k,))


def test_sn_eval_before_training_is_finite_and_positive():
    torch.manual_seed(3)
    d = ResNetDiscriminator(1, width=16)
    SpectralNorm().wrap(d, None)
    d.eval()
    for layer in weight_layers(d).values():
        assert layer.parametrizations.weight[0].sigma.item() > 0
        assert torch.isfinite(layer.weight).all()
        # sigma = |W^T u| underestimates |W|: the effective norm is >= 1 but bounded
        assert 1.0 - 1e-5 <= op_norm(layer.weight.detach().flatten(1)) < 50


# ---- sn_conv ---------------------------------------------------------------------------------------------

CONV_CASES = [  # (c_in, c_out, k, stride, padding, H)
    (3, 4, 3, 1, 1, 6), (2, 3, 4, 2, 1, 8), (3, 5, 3, 2, 0, 7), (4, 2, 1, 1, 0, 5), (2, 4, 4, 2, 0, 9), (8, 8, 3, 1, 1, 8),
]


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: "ci{}co{}k{}s{}p{}h{}".format(*c))
def test_sn_conv_converges_to_the_dense_operator_norm(case):
    c_in, c_out, k, s, p, h = case
    torch.manual_seed(4)
    conv = nn.Conv2d(c_in, c_out, k, s, p)
    ConvSpectralNormRegularizer(power_iterations=50).wrap(nn.Sequential(conv), torch.randn(2, c_in, h, h))
    for _ in range(10):  # 500 iterations on a fixed kernel
        conv.weight
    true = op_norm(dense_conv(original(conv).detach().double(), (c_in, h, h), s, p))
    est = conv.parametrizations.weight[0].sigma.item()
    assert est == pytest.approx(true, rel=0.01)
    assert est <= true * (1 + 1e-5)  # power iteration approaches the norm from below
    # after normalization the convolution as applied has operator norm 1
    assert op_norm(dense_conv(conv.weight.detach().double(), (c_in, h, h), s, p)) == pytest.approx(1.0, rel=0.01)


def test_sn_conv_iteration_agrees_with_the_shared_conv_power_iteration():
    """Ours keeps u (output space) and the shared function keeps v: the same iterates, offset by one step."""
    from src.spectral.power_iteration import conv_adjoint, conv_power_iteration

    torch.manual_seed(14)
    conv = nn.Conv2d(3, 4, 4, 2, 1)
    ConvSpectralNormRegularizer().wrap(nn.Sequential(conv), torch.randn(2, 3, 8, 8))
    p = conv.parametrizations.weight[0]
    w = original(conv).detach()
    v = conv_adjoint(p.u, w, (1, 3, 8, 8), (2, 2), (1, 1))
    v = v / v.norm()
    conv.weight  # our first step from u0 ...
    for k in range(1, 4):
        conv.weight  # ... then k more
        sigma, v_ref, u_ref = conv_power_iteration(w, v, (2, 2), (1, 1), n_iter=k)  # k iterations from v0 = A^T u0 / |.|
        assert p.sigma.item() == pytest.approx(sigma.item(), rel=1e-5)
        torch.testing.assert_close(p.v, v_ref, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(p.u, u_ref, rtol=1e-4, atol=1e-6)


def test_sn_reshaped_normalization_is_not_the_operator_norm():
    """sn makes |W_mat|_2 = 1, yet the convolution as applied generally has a norm != 1."""
    torch.manual_seed(5)
    ratios = {}
    for c_in, c_out, k, s, p, h in CONV_CASES:
        conv = nn.Conv2d(c_in, c_out, k, s, p)
        SpectralNorm(power_iterations=50).wrap(nn.Sequential(conv), None)
        for _ in range(10):
            conv.weight
        assert op_norm(conv.weight.detach().flatten(1)) == pytest.approx(1.0, abs=1e-3)
        ratios[(k, s)] = op_norm(dense_conv(conv.weight.detach().double(), (c_in, h, h), s, p))
    for (k, s), r in ratios.items():
        if k == 1:  # a 1x1 stride-1 conv is the matrix applied per pixel: the only case where they agree
            assert r == pytest.approx(1.0, abs=1e-3)
        else:
            assert r > 1.1, ratios


def test_sn_conv_gradient_treats_iterates_as_constants():
    torch.manual_seed(6)
    conv = nn.Conv2d(3, 4, 4, 2, 1)
    ConvSpectralNormRegularizer().wrap(nn.Sequential(conv), torch.randn(2, 3, 8, 8))
    g = torch.randn_like(conv.weight)
    (conv.weight * g).sum().backward()
    p = conv.parametrizations.weight[0]
    w = original(conv).detach().clone().requires_grad_(True)
    sigma = (p.u * F.conv2d(p.v, w, None, 2, 1)).sum()  # <u, A(W) v> with u, v the stored constants
    ((w / sigma) * g).sum().backward()
    torch.testing.assert_close(original(conv).grad, w.grad, rtol=1e-4, atol=1e-6)


def test_sn_conv_uses_each_layers_real_input_size_stride_and_padding():
    d = StandardCNNDiscriminator(16, 1)
    ConvSpectralNormRegularizer().wrap(d, torch.randn(2, 1, 16, 16))
    expected, c_in, size = [], 1, 16  # from Table 3's spec: 3x3 s1 / 4x4 s2, padding 1
    for c_out, k, s in StandardCNNDiscriminator.SPEC:
        expected.append(((c_in, size, size), (s, s), (1, 1)))
        size = (size + 2 - k) // s + 1
        c_in = c_out
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    got = [(c.parametrizations.weight[0].input_shape, c.parametrizations.weight[0].stride, c.parametrizations.weight[0].padding) for c in convs]
    assert got == expected
    assert d.dense.parametrizations.weight[0].__class__.__name__ == "ReshapedSpectralNorm"  # Linear: a matrix
    # the resnet's shortcut convs see pooled inputs: one conv per distinct input size is recorded
    r = ResNetDiscriminator(1, width=8)
    ConvSpectralNormRegularizer().wrap(r, torch.randn(2, 1, 8, 8))
    assert r.blocks[0].shortcut.parametrizations.weight[0].input_shape == (1, 4, 4)
    assert r.blocks[1].conv1.parametrizations.weight[0].input_shape == (8, 4, 4)
    assert r.blocks[2].conv1.parametrizations.weight[0].input_shape == (8, 2, 2)


@pytest.mark.parametrize("conv", [nn.Conv2d(2, 4, 3, dilation=2), nn.Conv2d(2, 4, 3, groups=2), nn.Conv2d(2, 4, 3, padding=1, padding_mode="circular")])
def test_sn_conv_rejects_layers_it_cannot_normalize(conv):
    with pytest.raises(ConfigError, match="sn_conv cannot apply"):
        ConvSpectralNormRegularizer().wrap(nn.Sequential(conv), torch.randn(2, 2, 8, 8))


def test_sn_conv_rejects_a_conv_that_never_runs():
    class D(nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.unused = nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 3)

        def forward(self, x):
            return self.used(x).sum((1, 2, 3))

    with pytest.raises(ConfigError, match="never ran"):
        ConvSpectralNormRegularizer().wrap(D(), torch.randn(2, 1, 8, 8))


def test_spectral_parametrizations_run_in_float32_under_autocast():
    torch.manual_seed(7)
    for reg, layer in ((SpectralNorm(), nn.Linear(16, 8)), (ConvSpectralNormRegularizer(), nn.Conv2d(2, 3, 3, 1, 1))):
        example = torch.randn(2, 16) if isinstance(layer, nn.Linear) else torch.randn(2, 2, 6, 6)
        reg.wrap(nn.Sequential(layer), example)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            w = layer.weight
        p = layer.parametrizations.weight[0]
        assert w.dtype == torch.float32 and p.u.dtype == torch.float32
        with torch.no_grad():  # the same computation outside autocast gives the same sigma
            layer.eval()
            w_eval = layer.weight
        torch.testing.assert_close(w, w_eval, rtol=1e-5, atol=1e-7)


# ---- gradient penalties -----------------------------------------------------------------------------------

class Recording(nn.Module):
    """D(x) = <a, x> + 0.5 q |x|^2 per sample (gradient a + q x), recording its inputs."""

    def __init__(self, shape, q: float = 0.0, seed: int = 0):
        super().__init__()
        self.a = nn.Parameter(torch.randn(shape, generator=torch.Generator().manual_seed(seed)))
        self.q = q
        self.inputs = []

    def forward(self, x):
        self.inputs.append(x.detach().clone())
        flat = x.flatten(1)
        return flat @ self.a.flatten() + 0.5 * self.q * flat.pow(2).sum(1)


def images(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 4, 4, generator=g) * 2 - 1, torch.rand(n, 3, 4, 4, generator=g) * 2 - 1


@pytest.mark.parametrize("reg_cls", [WGANGP, DRAGAN])
def test_gradient_penalty_on_a_linear_d_is_analytic(reg_cls):
    real, fake = images()
    d = Recording((3, 4, 4))
    reg = reg_cls(lam=7.0)
    pen = reg.penalty(d, real, fake)
    expected = 7.0 * (d.a.detach().norm().item() - 1.0) ** 2  # grad D = a at every point
    assert pen.item() == pytest.approx(expected, rel=1e-5)
    pen.backward()  # the penalty reaches D's parameters: d/da = 2 lam (|a| - 1) a / |a|
    a = d.a.detach()
    torch.testing.assert_close(d.a.grad, 2 * 7.0 * (a.norm() - 1) * a / a.norm(), rtol=1e-4, atol=1e-6)


def test_wgan_gp_interpolates_one_alpha_per_sample_between_real_and_fake():
    real, fake = images(n=64)
    d = Recording((3, 4, 4), q=0.3)
    pen = WGANGP(lam=10.0).penalty(d, real, fake)
    (x_hat,) = d.inputs
    diff = (fake - real).flatten(1)
    alpha = ((x_hat - real).flatten(1) * diff).sum(1) / diff.pow(2).sum(1)
    # on the segment, with one alpha for all elements of a sample
    torch.testing.assert_close(x_hat.flatten(1), real.flatten(1) + alpha[:, None] * diff, rtol=1e-5, atol=1e-6)
    assert alpha.min() >= 0 and alpha.max() <= 1 and alpha.std() > 0.1
    # quadratic D: grad at x_hat is a + q x_hat, so the penalty is known in closed form
    grad = d.a.detach().flatten() + 0.3 * x_hat.flatten(1)
    assert pen.item() == pytest.approx(10.0 * ((grad.norm(dim=1) - 1) ** 2).mean().item(), rel=1e-5)


def test_wgan_gp_alpha_is_uniform_on_0_1():
    reg = WGANGP()
    real, fake = torch.zeros(4000, 2), torch.ones(4000, 2)
    alpha = reg.interpolate(real, fake)[:, 0]
    assert alpha.min() >= 0 and alpha.max() <= 1
    assert alpha.mean().item() == pytest.approx(0.5, abs=0.02) and alpha.var().item() == pytest.approx(1 / 12, abs=0.01)


def test_dragan_perturbs_with_the_scalar_batch_std_as_the_authors_notebook():
    real, _ = images(n=32, seed=3)
    real = real * 0.7 + 0.1
    reg = DRAGAN(lam=10.0)
    d = Recording((3, 4, 4), q=0.5)
    g = torch.Generator().manual_seed(0)
    g.set_state(reg.generator(torch.device("cpu")).get_state())  # replay the regularizer's stream
    pen = reg.penalty(d, real, None)
    (x_hat,) = d.inputs
    std = float(np.std(real.numpy()))  # numpy's population std over every element of the batch
    noise = torch.rand(real.shape, generator=g)
    alpha = torch.rand((real.shape[0], 1, 1, 1), generator=g)
    x_p = real + 0.5 * std * noise
    torch.testing.assert_close(x_hat, real + alpha * (x_p - real), rtol=1e-5, atol=1e-6)
    # structure that holds whatever the draw order: offsets in [0, 0.5 std), never negative
    offset = (x_hat - real) / (0.5 * std)
    assert offset.min() >= 0 and offset.max() < 1
    grad = d.a.detach().flatten() + 0.5 * x_hat.flatten(1)
    assert pen.item() == pytest.approx(10.0 * ((grad.norm(dim=1) - 1) ** 2).mean().item(), rel=1e-5)


def test_penalties_are_float32_under_autocast():
    torch.manual_seed(8)
    d = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1), nn.LeakyReLU(0.1), nn.Flatten(), nn.Linear(8 * 16, 1))
    real, fake = images(n=8)
    for cls in (WGANGP, DRAGAN):
        state = cls().state_dict()
        ref_reg, amp_reg = cls(), cls()
        ref_reg.load_state_dict(state), amp_reg.load_state_dict(state)
        ref = ref_reg.penalty(d, real, fake)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            amp = amp_reg.penalty(d, real, fake)
        assert amp.dtype == torch.float32
        assert amp.item() == pytest.approx(ref.item(), rel=0.05)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ortho = Orthonormal().penalty(d, real, fake)
    assert ortho.dtype == torch.float32


def test_penalty_random_stream_is_seeded_and_checkpointed():
    real, fake = images()
    torch.manual_seed(11)
    a = WGANGP()
    torch.manual_seed(11)
    b = WGANGP()
    torch.manual_seed(12)
    c = WGANGP()
    xa, xb, xc = a.interpolate(real, fake), b.interpolate(real, fake), c.interpolate(real, fake)
    torch.testing.assert_close(xa, xb)  # the run's seed fixes the stream
    assert not torch.allclose(xa, xc)
    state = a.state_dict()
    expected = [a.interpolate(real, fake) for _ in range(3)]
    torch.manual_seed(99)
    resumed = WGANGP()
    resumed.load_state_dict(state)
    torch.random.manual_seed(123)  # the global RNG does not matter
    for e in expected:
        torch.testing.assert_close(resumed.interpolate(real, fake), e)


# ---- weight clipping, weight norm, orthonormal -----------------------------------------------------------

def test_weight_clip_clamps_every_parameter_of_d():
    torch.manual_seed(9)
    d = StandardCNNDiscriminator(8, 1)
    reg = WeightClip(c=0.005)
    reg.wrap(d, None)
    assert all(p.abs().max() <= 0.005 for p in d.parameters())
    with torch.no_grad():
        for p in d.parameters():
            p.add_(torch.randn_like(p))
    reg.after_d_step(d)
    params = torch.cat([p.flatten() for p in d.parameters()])
    assert params.abs().max().item() <= 0.005
    assert (params.abs() == 0.005).float().mean() > 0.5  # clamped, not rescaled


@pytest.mark.parametrize("make", [lambda: MLPDiscriminator((2,)), lambda: StandardCNNDiscriminator(8, 1), lambda: ResNetDiscriminator(1, width=8)])
def test_weight_norm_rows_have_unit_norm(make):
    torch.manual_seed(10)
    d = make()
    WeightNorm().wrap(d, None)
    layers = list(weight_layers(d).values())
    assert layers and all(parametrize.is_parametrized(m, "weight") for m in layers)
    opt = torch.optim.SGD(d.parameters(), lr=0.5)
    x = torch.randn(4, 2) if isinstance(d, MLPDiscriminator) else torch.randn(4, 1, 8, 8)
    d(x).sum().backward()
    opt.step()  # still normalized after an update of the raw weights
    for m in layers:
        rows = m.weight.detach().flatten(1).norm(dim=1)
        torch.testing.assert_close(rows, torch.ones_like(rows), rtol=1e-5, atol=1e-6)
    raw = original(layers[0]).detach().flatten(1).norm(dim=1)
    assert not torch.allclose(raw, torch.ones_like(raw), atol=1e-3)  # a reparametrization, not a projection


def test_orthonormal_penalty_is_zero_after_init_and_equals_the_direct_formula():
    torch.manual_seed(11)
    d = StandardCNNDiscriminator(8, 1)
    reg = Orthonormal(coef=0.5)
    reg.wrap(d, None)
    assert reg.penalty(d, None, None).item() < 1e-8
    with torch.no_grad():
        for m in weight_layers(d).values():
            m.weight.add_(0.01 * torch.randn_like(m.weight))
    expected = 0.0
    for m in weight_layers(d).values():
        w = m.weight.detach().double().flatten(1).numpy()
        gram = w @ w.T if w.shape[0] < w.shape[1] else w.T @ w
        expected += np.sum((gram - np.eye(gram.shape[0])) ** 2)
    assert reg.penalty(d, None, None).item() == pytest.approx(0.5 * expected, rel=1e-4)


def test_orthonormal_smaller_gram_has_the_gradient_of_the_full_penalty():
    torch.manual_seed(12)
    layer = nn.Conv2d(4, 3, 3)  # d_out = 3 < d_in = 36: the penalty uses W W^T
    d = nn.Sequential(layer)
    Orthonormal(coef=1.0).penalty(d, None, None).backward()
    ours = layer.weight.grad.clone()
    layer.weight.grad = None
    w = layer.weight.flatten(1)
    ((w.t() @ w - torch.eye(w.shape[1])).pow(2).sum()).backward()  # |W^T W - I|_F^2 as written in the paper
    torch.testing.assert_close(ours, layer.weight.grad, rtol=1e-4, atol=1e-5)


# ---- batch norm, layer norm ---------------------------------------------------------------------------------

@pytest.mark.parametrize("reg_cls,kinds", [(BatchNorm, {"2d": nn.BatchNorm2d, "1d": nn.BatchNorm1d}),
                                           (LayerNorm, {"2d": nn.GroupNorm, "1d": nn.LayerNorm})])
@pytest.mark.parametrize("make,x", [(lambda: MLPDiscriminator((2,)), torch.randn(16, 2)),
                                    (lambda: StandardCNNDiscriminator(8, 1), torch.randn(16, 1, 8, 8)),
                                    (lambda: ResNetDiscriminator(1, width=8), torch.randn(16, 1, 8, 8))])
def test_norm_baselines_fill_every_slot_without_learned_scale(reg_cls, kinds, make, x):
    torch.manual_seed(13)
    d = make()
    slots = [m for m in d.modules() if isinstance(m, NormSlot)]
    n_params = sum(p.numel() for p in d.parameters())
    reg_cls().wrap(d, x)
    norms = [m for m in d.modules() if isinstance(m, tuple(kinds.values()))]
    assert not any(isinstance(m, NormSlot) for m in d.modules())
    assert [type(m) for m in norms] == [kinds[s.kind] for s in slots]
    assert sum(p.numel() for p in d.parameters()) == n_params  # no affine parameters added
    seen = []
    hooks = [m.register_forward_hook(lambda mod, inp, out: seen.append((inp[0], out))) for m in norms]
    d(x)
    for h in hooks:
        h.remove()
    assert len(seen) == len(norms)
    for inp, out in seen:  # (h - mean) / sqrt(var + eps) over the batch (BN) or each sample's features (LN)
        dims = ((0, 2, 3) if inp.dim() == 4 else (0,)) if reg_cls is BatchNorm else tuple(range(1, inp.dim()))
        mean, var = inp.mean(dims, keepdim=True), inp.var(dims, keepdim=True, correction=0)
        torch.testing.assert_close(out, (inp - mean) / torch.sqrt(var + 1e-5), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("reg_cls", [BatchNorm, LayerNorm])
def test_norm_baselines_refuse_a_discriminator_without_slots(reg_cls):
    with pytest.raises(ConfigError, match=f"regularizer={reg_cls.name} cannot apply"):
        reg_cls().wrap(nn.Sequential(nn.Linear(2, 4), nn.LeakyReLU(), nn.Linear(4, 1)), torch.randn(2, 2))


# ---- configs --------------------------------------------------------------------------------------------------

ALL = ["none", "sn", "sn_conv", "weight_clip", "wgan_gp", "dragan", "weight_norm", "orthonormal", "batch_norm", "layer_norm"]
DEFAULT_LOSS = {"weight_clip": "wasserstein", "wgan_gp": "wasserstein"}
DEFAULTS = {"sn": {"power_iterations": 1, "output_gain": 1.0}, "sn_conv": {"power_iterations": 1, "output_gain": 1.0}, "weight_clip": {"c": 0.01},
            "wgan_gp": {"lam": 10.0}, "dragan": {"lam": 10.0}, "orthonormal": {"coef": 0.01}}


@pytest.mark.parametrize("name", ALL)
def test_every_config_builds_its_regularizer_with_the_documented_defaults(name):
    cfg = OmegaConf.load(f"{CONF}/{name}.yaml")
    reg = build_regularizer(cfg)
    assert cfg.name == name == reg.name
    assert cfg.default_loss == reg.default_loss == DEFAULT_LOSS.get(name, "ns")
    assert reg.describe() == DEFAULTS.get(name, {})


@pytest.mark.parametrize("name,key,value", [
    ("wgan_gp", "lam", 0), ("wgan_gp", "lam", -1.0), ("dragan", "lam", 0.0), ("weight_clip", "c", -1), ("weight_clip", "c", 0),
    ("sn", "power_iterations", 0), ("sn", "power_iterations", 1.5), ("sn_conv", "power_iterations", -2),
    ("sn", "output_gain", -1.0), ("sn_conv", "output_gain", "big"),
    ("orthonormal", "coef", 0), ("wgan_gp", "lam", "ten")])
def test_invalid_hyperparameters_raise_a_one_line_config_error(name, key, value):
    cfg = OmegaConf.load(f"{CONF}/{name}.yaml")
    cfg[key] = value
    with pytest.raises(ConfigError) as info:
        build_regularizer(cfg)
    msg = str(info.value)
    assert f"regularizer.{key}={value!r}" in msg and "must be a positive" in msg and "\n" not in msg
