"""Certified operator-norm bounds (src.spectral.certified) against the dense operator's SVD."""
import math

import pytest
import torch
from torch import nn

from src.networks.standard_cnn import StandardCNNDiscriminator
from src.spectral.certified import (conv_norm_bound, gram_iteration_bound, linear_norm_bound, lipschitz_record,
                                    polyphase_kernel)
from src.spectral.exact import layer_singular_values
from src.spectral.power_iteration import LayerOperator


def _conv(c_in, c_out, k, stride, padding, seed=0, dilation=1, mode="zeros"):
    torch.manual_seed(seed)
    return nn.Conv2d(c_in, c_out, k, stride, padding, dilation=dilation, padding_mode=mode).double()


# (c_in, c_out, k, stride, padding, n, tolerance above the true norm): the bound is the circular norm
# on the padded torus (+0.5% tol); its excess over the zero-padded layer shrinks with the input size
GEOMETRIES = [(3, 5, 3, 1, 1, 8, 0.08), (4, 6, 4, 2, 1, 8, 0.10), (5, 3, 1, 1, 0, 7, 0.006), (6, 4, 3, 2, 1, 9, 0.07),
              (3, 7, 3, 1, 1, 5, 0.15), (4, 4, 3, 1, 2, 7, 0.08), (2, 8, 4, 2, 1, 12, 0.06), (8, 2, 3, 1, 1, 11, 0.06)]


@pytest.mark.parametrize("c_in,c_out,k,stride,padding,n,tol", GEOMETRIES)
@pytest.mark.parametrize("method", ["cholesky", "gram"])
def test_conv_bound_is_above_the_dense_norm_and_tight(c_in, c_out, k, stride, padding, n, tol, method):
    for seed in range(3):
        layer = _conv(c_in, c_out, k, stride, padding, seed)
        exact = float(layer_singular_values(layer, (c_in, n, n), method="dense")[0])
        bound = conv_norm_bound(layer, (c_in, n, n), method=method)
        assert exact <= bound <= exact * (1 + tol), (seed, exact, bound)


def test_conv_bound_is_exact_for_circular_stride_one():
    layer = _conv(4, 5, 3, 1, 1, mode="circular")
    exact = float(layer_singular_values(layer, (4, 8, 8), method="dense")[0])
    assert exact <= conv_norm_bound(layer, (4, 8, 8), tol=1e-3) <= exact * (1 + 1e-3 + 1e-9)


def test_dilated_and_circular_strided_convs_are_bounded():
    for layer, n in [(_conv(3, 4, 3, 1, 2, dilation=2), 9), (_conv(3, 4, 3, 2, 1, mode="circular"), 7)]:
        exact = float(layer_singular_values(layer, (3, n, n), method="dense")[0])
        assert conv_norm_bound(layer, (3, n, n)) >= exact


def test_polyphase_kernel_reproduces_the_strided_conv():
    layer = _conv(3, 4, 4, 2, 0)
    x = torch.randn(2, 3, 10, 10, dtype=torch.float64)
    # space-to-depth: channel (c, a, b) holds x[c, 2I + a, 2J + b]
    x2 = x.view(2, 3, 5, 2, 5, 2).permute(0, 1, 3, 5, 2, 4).reshape(2, 12, 5, 5)
    ref = nn.functional.conv2d(x, layer.weight, stride=2)
    torch.testing.assert_close(nn.functional.conv2d(x2, polyphase_kernel(layer.weight, (2, 2))), ref)


def test_linear_bound_and_gram_iteration_against_svd():
    torch.manual_seed(0)
    w = torch.randn(7, 12, dtype=torch.float64)
    s = float(torch.linalg.svdvals(w)[0])
    assert s <= linear_norm_bound(w) <= s * (1 + 1e-9)
    g = gram_iteration_bound(w[None], 8)[0]
    assert s <= float(g) <= s * 1.01
    big = torch.randn(3, 30, 20, dtype=torch.complex128) * 1e150  # the rescaling keeps huge matrices finite
    assert torch.isfinite(gram_iteration_bound(big, 10)).all()
    assert (gram_iteration_bound(big, 10) >= torch.linalg.matrix_norm(big, 2)).all()


def test_bound_refuses_what_it_cannot_certify():
    with pytest.raises(NotImplementedError, match="padding_mode='reflect'"):
        conv_norm_bound(_conv(2, 2, 3, 1, 1, mode="reflect"), (2, 6, 6))
    with pytest.raises(NotImplementedError, match="groups=2"):
        conv_norm_bound(nn.Conv2d(2, 2, 3, groups=2), (2, 6, 6))


def _dense_network_bound(D, shapes):
    """Product of the exact (dense SVD) layer norms times the chain's LeakyReLU factors (1)."""
    layers = {n: m for n, m in D.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))}
    prod = 1.0
    for name, shape in shapes.items():
        prod *= float(torch.linalg.svdvals(LayerOperator(layers[name], shape).dense())[0])
    return prod


def test_lipschitz_record_of_a_small_discriminator():
    torch.manual_seed(0)
    D = StandardCNNDiscriminator(8, 1).double()
    real, fake = torch.randn(8, 1, 8, 8, dtype=torch.float64), torch.randn(8, 1, 8, 8, dtype=torch.float64)
    rec = lipschitz_record(D, real, fake)
    assert rec["reason"] is None
    from src.spectral.lipschitz import record_input_shapes

    dense = _dense_network_bound(D, record_input_shapes(D, real))
    assert rec["certified_upper"] >= dense >= rec["empirical_lower"] > 0
    # per layer the certificate is above the exact norm; at 8x8 input the last convs see 2x2 and 1x1
    # inputs, where the padded torus is loose (up to 3x on 1x1: the torus uses taps the layer never does)
    layers = {n: m for n, m in D.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))}
    shapes = record_input_shapes(D, real)
    first = float(torch.linalg.svdvals(LayerOperator(layers["features.0"], shapes["features.0"]).dense())[0])
    assert first <= rec["layers"]["features.0"] <= first * 1.05
    D.lipschitz_output_gain = 3.0
    assert lipschitz_record(D, real, fake)["certified_upper"] == pytest.approx(3 * rec["certified_upper"], rel=1e-3)


def test_lipschitz_record_never_raises_and_says_why():
    D = nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.LayerNorm(6), nn.Linear(6, 1))
    rec = lipschitz_record(D, torch.randn(4, 3, 2, 2), torch.randn(4, 3, 2, 2))
    assert rec["certified_upper"] is None and "LayerNorm" in rec["reason"]
    assert rec["empirical_lower"] > 0
    broken = lipschitz_record(nn.Conv2d(3, 1, 3, padding_mode="reflect", padding=1), torch.randn(2, 3, 5, 5), torch.randn(2, 3, 5, 5))
    assert broken["certified_upper"] is None and "reflect" in broken["reason"]
    assert math.isfinite(broken["empirical_lower"])


@pytest.mark.parametrize("c_out,c_in,k,torus,dilation", [(5, 3, 3, (7, 6), (1, 1)), (3, 6, 4, (5, 8), (1, 1)),
                                                         (4, 4, 2, (9, 9), (2, 1)), (2, 3, 1, (4, 5), (1, 1)),
                                                         (4, 2, 5, (3, 4), (1, 1))])
def test_assembled_gram_matches_the_fft_of_the_kernel(c_out, c_in, k, torus, dilation):
    # G(w) from half the tap products against K(w)^H K(w) (K K^H on the smaller side) from torch.fft on
    # the torus (taps placed at their dilated positions, wrapped where the kernel exceeds the torus)
    from src.spectral.certified import ConvCertifier

    torch.manual_seed(0)
    w = torch.randn(c_out, c_in, k, k, dtype=torch.float64)
    cert = ConvCertifier(w.shape, torus, dilation)
    grams = cert.grams(cert.tap_products(w), torch.arange(cert.n_freq)).clone()
    h, wd = torus
    placed = torch.zeros(c_out, c_in, h, wd, dtype=torch.float64)
    for a in range(k):
        for b in range(k):
            placed[:, :, (a * dilation[0]) % h, (b * dilation[1]) % wd] += w[:, :, a, b]
    kf = torch.fft.rfft2(placed).permute(2, 3, 0, 1).reshape(-1, c_out, c_in)
    ref = kf @ kf.mH if c_out < c_in else kf.mH @ kf
    torch.testing.assert_close(grams, ref, rtol=1e-10, atol=1e-10)


def test_cholesky_check_both_paths_against_eigenvalues():
    # LAPACK in place (CPU complex128) and torch's cholesky_ex (any other case) agree with eigvalsh
    from src.spectral.certified import _cholesky_succeeds

    torch.manual_seed(0)
    x = torch.randn(6, 5, 5, dtype=torch.complex128)
    g = x @ x.mH
    mu = float(torch.linalg.eigvalsh(g)[:, -1].median())
    a = -g
    a.diagonal(dim1=-2, dim2=-1).real.add_(mu)
    truth = torch.linalg.eigvalsh(a)[:, 0] > 0
    assert 0 < int(truth.sum()) < 6
    for batch in (a.clone(), a.to(torch.complex64)):
        ok, tr = _cholesky_succeeds(batch)
        assert torch.equal(ok, truth)
        torch.testing.assert_close(tr.double(), a.diagonal(dim1=-2, dim2=-1).real.sum(-1), rtol=1e-6, atol=1e-6)
