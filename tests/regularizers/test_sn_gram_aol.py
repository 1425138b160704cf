"""sn_gram (certified conv normalization) and aol (almost-orthogonal rescaling) against dense-operator SVDs."""
import pytest
import torch
from torch import nn

from src.errors import ConfigError
from src.regularizers.aol import AOL, AOLRescale, aol_scale_linear
from src.regularizers.sn_gram import CertifiedSpectralNorm
from src.spectral.exact import layer_singular_values

# (c_in, c_out, k, stride, padding, n)
GEOMETRIES = [(3, 5, 3, 1, 1, 8), (4, 6, 4, 2, 1, 8), (5, 3, 1, 1, 0, 7), (6, 4, 3, 2, 1, 9), (3, 7, 3, 1, 1, 6)]


def _train_and_measure(reg, c_in, c_out, k, stride, padding, n, steps=4, dilation=1):
    torch.manual_seed(0)
    D = nn.Sequential(nn.Conv2d(c_in, c_out, k, stride, padding, dilation=dilation), nn.Flatten()).double()
    reg.wrap(D, torch.randn(2, c_in, n, n, dtype=torch.float64))
    opt = torch.optim.Adam(D.parameters(), 0.05)
    norms = []
    for _ in range(steps):  # real optimizer steps, the norm read after each
        D.train()
        loss = -D(torch.randn(4, c_in, n, n, dtype=torch.float64)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        D.eval()
        with torch.no_grad():
            norms.append(float(layer_singular_values(D[0], (c_in, n, n), weight=D[0].weight, method="dense")[0]))
    return norms


@pytest.mark.parametrize("geom", GEOMETRIES)
def test_sn_gram_layer_norm_never_above_one_and_close_to_it(geom):
    norms = _train_and_measure(CertifiedSpectralNorm(), *geom)
    # never above 1; below it by the torus' border excess (<= 13% at these 6-9 pixel inputs, ~1% at 32x32)
    assert all(0.87 <= s <= 1.0 for s in norms), norms


def test_sn_gram_linear_layers_are_exactly_normalized():
    torch.manual_seed(0)
    D = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 1)).double()
    CertifiedSpectralNorm().wrap(D, torch.randn(2, 6, dtype=torch.float64))
    opt = torch.optim.Adam(D.parameters(), 0.05)
    for _ in range(3):
        loss = -D(torch.randn(8, 6, dtype=torch.float64)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        for layer in (D[0], D[2]):
            assert float(torch.linalg.matrix_norm(layer.weight.detach(), 2)) == pytest.approx(1.0, abs=1e-9)


def test_sn_gram_gradient_is_scale_invariant():
    # s(cW) = c s(W): the surrogate keeps d(W/s)/dW orthogonal to W (no gradient along the scale)
    torch.manual_seed(0)
    D = nn.Sequential(nn.Conv2d(3, 4, 3, 1, 1), nn.Flatten()).double()
    CertifiedSpectralNorm().wrap(D, torch.randn(2, 3, 6, 6, dtype=torch.float64))
    D(torch.randn(4, 3, 6, 6, dtype=torch.float64)).sum().backward()
    w = D[0].parametrizations.weight.original
    assert abs(float((w.grad * w).sum())) < 1e-8 * float(w.grad.norm() * w.norm())


@pytest.mark.parametrize("geom", GEOMETRIES + [(4, 4, 3, 1, 2, 7)])
def test_aol_conv_is_certified_at_its_real_geometry(geom):
    dilation = 2 if geom == (4, 4, 3, 1, 2, 7) else 1
    norms = _train_and_measure(AOL(), *geom, dilation=dilation)
    assert all(0.2 < s <= 1.0 + 1e-9 for s in norms), norms


def test_aol_linear_scale_against_the_formula():
    torch.manual_seed(0)
    w = torch.randn(5, 7, dtype=torch.float64)
    d = torch.tensor([1 / sum(abs(float(w[:, i] @ w[:, j])) for i in range(7)) ** 0.5 for j in range(7)], dtype=torch.float64)
    torch.testing.assert_close(aol_scale_linear(w), d)
    assert float(torch.linalg.matrix_norm(w * d, 2)) <= 1.0
    q, _ = torch.linalg.qr(torch.randn(7, 7, dtype=torch.float64))  # orthogonal W: AOL leaves it unchanged
    torch.testing.assert_close(q * aol_scale_linear(q), q)


@pytest.mark.parametrize("reg,name", [(AOL(), "aol"), (CertifiedSpectralNorm(), "sn_gram")])
def test_uncertifiable_layers_are_refused_in_one_line(reg, name):
    D = nn.Sequential(nn.Conv2d(2, 2, 3, padding=1, padding_mode="reflect"))
    with pytest.raises(ConfigError, match=rf"^regularizer={name} cannot certify D\.0 .*reflect.*use regularizer=sn") as err:
        reg.wrap(D, torch.randn(1, 2, 5, 5))
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="groups=2"):
        reg.wrap(nn.Sequential(nn.Conv2d(2, 2, 3, groups=2)), torch.randn(1, 2, 5, 5))


@pytest.mark.parametrize("bad", [0, -0.1, "x"])
def test_bad_hyperparameters(bad):
    with pytest.raises(ConfigError, match="regularizer.tol"):
        CertifiedSpectralNorm(tol=bad)
    with pytest.raises(ConfigError, match="regularizer.output_gain"):
        AOL(output_gain=bad)


@pytest.mark.parametrize("name", ["sn_gram", "aol"])
def test_trains_on_the_standard_cnn(tmp_path, name):
    from tests.helpers import train_in_process

    summary = train_in_process(["data=digits", "arch=standard_cnn", f"regularizer={name}", "steps=2", "metrics=none",
                                "samples.every=0", "checkpoint.every=0", "data.batch_size=8", "callbacks=none",
                                "logger=none", "threads=1"], tmp_path / "run")
    assert summary["status"] == "completed", summary["error"]
    assert summary["regularizer"] == name


@pytest.mark.parametrize("shape", [(5, 3, 3, 3), (4, 6, 4, 4), (3, 3, 1, 1), (6, 4, 2, 3), (2, 7, 3, 2)])
def test_aol_conv_gradient_matches_autograd_of_the_formula(shape):
    # the hand-written backward against autograd through |conv2d(W, W)|'s row sums (the paper's form)
    torch.manual_seed(0)
    w = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    g = torch.randn(*shape, dtype=torch.float64)
    wt = w.transpose(0, 1)
    gram = nn.functional.conv2d(wt, wt, padding=(shape[2] - 1, shape[3] - 1))
    ref = w * gram.abs().sum(dim=(1, 2, 3)).rsqrt()[None, :, None, None]
    (ref_grad,) = torch.autograd.grad((ref * g).sum(), w)
    p = AOLRescale()
    out = p(w)
    (grad,) = torch.autograd.grad((out * g).sum(), w)
    torch.testing.assert_close(out, ref.detach(), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-10, atol=1e-13)


def test_aol_reuses_the_gram_only_for_the_same_weights():
    torch.manual_seed(0)
    layer = nn.Conv2d(3, 4, 3, padding=1).double()
    AOL().wrap(nn.Sequential(layer), torch.randn(1, 3, 6, 6, dtype=torch.float64))
    w = layer.parametrizations.weight.original

    def reference():
        wt = w.detach().transpose(0, 1)
        return w.detach() * nn.functional.conv2d(wt, wt, padding=2).abs().sum(dim=(1, 2, 3)).rsqrt()[None, :, None, None]
    with torch.no_grad():  # a G update: D frozen, the Gram kernel computed and kept
        torch.testing.assert_close(layer.weight, reference())
    grad_out = torch.randn_like(w)
    (layer.weight * grad_out).sum().backward()  # the next D update at the same weights: reused, exact gradient
    w_ref = w.detach().clone().requires_grad_(True)
    wt = w_ref.transpose(0, 1)
    ref = w_ref * nn.functional.conv2d(wt, wt, padding=2).abs().sum(dim=(1, 2, 3)).rsqrt()[None, :, None, None]
    (ref_grad,) = torch.autograd.grad((ref * grad_out).sum(), w_ref)
    torch.testing.assert_close(w.grad, ref_grad)
    with torch.no_grad():
        w.add_(0.3 * torch.randn_like(w))  # an optimizer step: in place, a new version
        torch.testing.assert_close(layer.weight, reference())


def test_aol_single_output_linear_closed_form():
    torch.manual_seed(0)
    w = torch.randn(1, 9, dtype=torch.float64)
    general = (w.t() @ w).abs().sum(dim=1).rsqrt()
    torch.testing.assert_close(aol_scale_linear(w), general)
    assert float(torch.linalg.matrix_norm(w * aol_scale_linear(w), 2)) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("c_in", [3, 128, 131])
def test_aol_gram_kernel_against_the_definition(c_in):
    # both code paths (direct; channel halves from 128 inputs) against sum_o sum_p W[o, j, p + d] W[o, j', p]
    from src.regularizers.aol import gram_kernel

    torch.manual_seed(0)
    w = torch.randn(5, c_in, 3, 2, dtype=torch.float64)
    gram = gram_kernel(w)
    assert gram.shape == (c_in, c_in, 5, 3)
    for da in range(-2, 3):
        for db in range(-1, 2):
            ref = torch.zeros(c_in, c_in, dtype=torch.float64)
            for a in range(3):
                for b in range(2):
                    if 0 <= a + da < 3 and 0 <= b + db < 2:
                        ref += w[:, :, a + da, b + db].t() @ w[:, :, a, b]
            torch.testing.assert_close(gram[:, :, 2 + da, 1 + db], ref)


@pytest.mark.parametrize("reg", [CertifiedSpectralNorm(), AOL()], ids=["sn_gram", "aol"])
def test_weights_changed_by_a_fused_optimizer_are_recertified(reg):
    # fused Adam updates in place without bumping the version counter: the cache must notice by value
    torch.manual_seed(0)
    D = nn.Sequential(nn.Conv2d(3, 4, 3, 1, 1), nn.Flatten())
    reg.wrap(D, torch.randn(2, 3, 6, 6))
    opt = torch.optim.Adam(D.parameters(), 0.2, fused=True)
    for _ in range(3):
        loss = -D(torch.randn(4, 3, 6, 6)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            w = D[0].weight.double()
            s = float(layer_singular_values(D[0], (3, 6, 6), weight=w, method="dense")[0])
        assert s <= 1.0 + 1e-5, s


def test_sn_gram_float32_divisor_is_not_rounded_below_the_certificate():
    torch.manual_seed(0)
    D = nn.Sequential(nn.Conv2d(3, 4, 3, 1, 1), nn.Flatten())
    CertifiedSpectralNorm().wrap(D, torch.randn(2, 3, 6, 6))
    p = D[0].parametrizations.weight[0]
    bounds, inner = [], p._certifier.bound
    p._certifier.bound = lambda *a, **k: bounds.append(inner(*a, **k)) or bounds[-1]
    rounded_down = 0
    for i in range(12):  # several certificates; float32 storage rounds about half of them down
        p.certify(D[0].parametrizations.weight.original.detach() * (1 + 0.1 * i))
        assert p.sigma.dtype == torch.float32 and float(p.sigma) >= bounds[-1]
        rounded_down += float(torch.tensor(bounds[-1], dtype=torch.float32)) < bounds[-1]
    assert rounded_down > 0  # the case the round-up exists for did occur
