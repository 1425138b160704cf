"""arch.d_activation: GroupSort / MaxMin are gradient-norm preserving (Anil et al. 2019), every arch
takes the key, the defaults are unchanged, and bad names / group sizes stop the run in one line."""

import pytest
import torch
from torch import nn
from torch.autograd.functional import jacobian

from src.errors import ConfigError
from src.networks import mlp, resnet, standard_cnn
from src.networks.activations import GroupSort, MaxMin, make_activation
from src.networks.mlp import MLPDiscriminator
from src.networks.resnet import ResNetDiscriminator
from src.networks.standard_cnn import StandardCNNDiscriminator
from tests.helpers import BASE, assert_user_error


def assert_permutation(jac: torch.Tensor) -> None:
    assert set(jac.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(jac.sum(0), torch.ones(jac.shape[1], dtype=jac.dtype))
    assert torch.equal(jac.sum(1), torch.ones(jac.shape[0], dtype=jac.dtype))


@pytest.mark.parametrize("act", [GroupSort(4), GroupSort(3), GroupSort(2), MaxMin()])
def test_groupsort_jacobian_is_a_permutation(act):
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        x = torch.randn(1, 12, generator=g, dtype=torch.float64)
        jac = jacobian(act, x).reshape(12, 12)
        assert_permutation(jac)
        v = torch.randn(12, generator=g, dtype=torch.float64)
        assert torch.allclose((jac @ v).norm(), v.norm(), rtol=0, atol=1e-12)


def test_groupsort_sorts_each_group_of_channels_at_each_pixel():
    x = torch.randn(2, 8, 3, 5, generator=torch.Generator().manual_seed(1))
    out = GroupSort(4)(x)
    # independent computation: per pixel, channels 0-3 and 4-7 sorted ascending
    for n in range(2):
        for i in range(3):
            for j in range(5):
                col = x[n, :, i, j]
                expect = torch.cat([col[:4].sort().values, col[4:].sort().values])
                assert torch.equal(out[n, :, i, j], expect)
    mm = MaxMin()(x)
    assert torch.equal(mm[:, 0::2], torch.maximum(x[:, 0::2], x[:, 1::2]))
    assert torch.equal(mm[:, 1::2], torch.minimum(x[:, 0::2], x[:, 1::2]))
    # maxmin is groupsort with groups of 2, each pair in the opposite order
    assert torch.equal(mm.unflatten(1, (4, 2)).flip(2).flatten(1, 2), GroupSort(2)(x))


def test_conv_feature_map_jacobian_is_a_permutation():
    x = torch.randn(1, 4, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    assert_permutation(jacobian(MaxMin(), x).reshape(16, 16))


def orthogonal_maxmin_mlp(d_in: int, width: int = 32, depth: int = 3, activation: str = "maxmin") -> nn.Module:
    torch.manual_seed(0)
    d = MLPDiscriminator((d_in,), hidden=width, depth=depth, d_activation=activation).double()
    linears = [m for m in d.modules() if isinstance(m, nn.Linear)]
    for lin in linears[:-1]:
        nn.init.orthogonal_(lin.weight)  # square: orthogonal; tall (d_in < width): orthonormal columns
        nn.init.normal_(lin.bias)
    with torch.no_grad():
        linears[-1].weight.copy_(nn.functional.normalize(torch.randn(1, width, dtype=torch.float64), dim=1))
    return d


def grad_norms(d: nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(d(x).sum(), x)
    return g.norm(dim=1)


def test_orthogonal_maxmin_mlp_has_unit_input_gradient_everywhere():
    x = torch.randn(64, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    norms = grad_norms(orthogonal_maxmin_mlp(32), x)
    assert torch.allclose(norms, torch.ones_like(norms), rtol=0, atol=1e-5)
    # the same network with leaky ReLU loses gradient norm: the property is the activation's
    leaky = grad_norms(orthogonal_maxmin_mlp(32, activation="leaky_relu"), x)
    assert leaky.max() < 0.9


def test_orthogonal_maxmin_mlp_with_narrower_input_is_at_most_one():
    x = torch.randn(64, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    norms = grad_norms(orthogonal_maxmin_mlp(16), x)
    assert norms.max() <= 1 + 1e-9
    assert norms.min() < 0.99  # the input layer's W^T projects onto 16 of 32 directions: strictly below 1


@pytest.mark.parametrize("name,cls", [("leaky_relu", nn.LeakyReLU), ("relu", nn.ReLU), ("maxmin", MaxMin), ("groupsort", GroupSort)])
def test_every_arch_takes_every_activation(name, cls):
    cases = [(mlp.build(8, (2,), hidden=16, d_activation=name, group_size=4)[1], torch.randn(3, 2)),
             (standard_cnn.build(8, 8, 3, d_activation=name, group_size=4)[1], torch.randn(3, 3, 8, 8)),
             (resnet.build(8, 8, 3, 16, 16, d_activation=name, group_size=4)[1], torch.randn(3, 3, 8, 8))]
    for d, x in cases:
        acts = [m for m in d.modules() if isinstance(m, (nn.LeakyReLU, nn.ReLU, GroupSort))]
        assert acts and all(type(m) is cls for m in acts), (type(d).__name__, acts)
        if name == "groupsort":
            assert all(m.group_size == 4 for m in acts)
        if name == "leaky_relu":
            assert all(m.negative_slope == 0.1 for m in acts)
        assert d(x).shape == (3,)


def test_defaults_are_unchanged():
    """The defaults build what they built before the key existed: LeakyReLU 0.1 in the MLP and the
    standard CNN, ReLU in the ResNet, at the same places, and the same parameters from the same seed."""
    torch.manual_seed(0)
    d = StandardCNNDiscriminator(8, 3)
    assert [type(m).__name__ for m in d.features if not isinstance(m, nn.Conv2d) and type(m).__name__ != "NormSlot"] == ["LeakyReLU"] * 7
    assert all(m.negative_slope == 0.1 for m in d.features if isinstance(m, nn.LeakyReLU))
    assert list(MLPDiscriminator((2,)).state_dict()) == ["net.1.weight", "net.1.bias", "net.3.weight", "net.3.bias",
                                                         "net.6.weight", "net.6.bias", "net.9.weight", "net.9.bias"]
    r = ResNetDiscriminator(3, width=8)
    assert all(type(m) is nn.ReLU for m in r.modules() if isinstance(m, (nn.LeakyReLU, nn.ReLU, GroupSort)))
    # the ResNet's forward equals the paper's functional form with F.relu
    torch.manual_seed(1)
    x = torch.randn(2, 3, 8, 8)
    F = nn.functional
    h = x
    for blk in r.blocks:
        m = h if blk.first else F.relu(h)
        m = blk.conv2(F.relu(blk.conv1(m)))
        m = F.avg_pool2d(m, 2) if blk.downsample else m
        s = h
        if blk.learn_shortcut:
            s = blk.shortcut(F.avg_pool2d(s, 2)) if blk.first else F.avg_pool2d(blk.shortcut(s), 2) if blk.downsample else blk.shortcut(s)
        h = m + s
    assert torch.equal(r(x), r.dense(F.relu(h).sum(dim=(2, 3))).view(-1))


@pytest.mark.parametrize("kwargs,needles", [
    (dict(d_activation="swish"), ["arch.d_activation='swish'", "leaky_relu, relu, maxmin, groupsort"]),
    (dict(d_activation="groupsort", group_size=0), ["arch.group_size=0", "positive integer"]),
    (dict(d_activation="groupsort", group_size=-2), ["arch.group_size=-2", "positive integer"]),
    (dict(d_activation="groupsort", group_size=2.5), ["arch.group_size=2.5", "positive integer"]),
    (dict(d_activation="groupsort", group_size=3), ["arch.group_size=3", "features.0 (conv 3->64)", "width 64"]),
])
def test_bad_activation_settings_raise_one_line(kwargs, needles):
    with pytest.raises(ConfigError) as err:
        standard_cnn.build(8, 32, 3, **kwargs)
    msg = str(err.value)
    assert "\n" not in msg and all(n in msg for n in needles), msg


def test_group_size_that_fits_only_some_layers_names_the_first_that_does_not():
    with pytest.raises(ConfigError, match=r"net\.1 \(Linear 2->12\) of width 12 .* groups of 8"):
        mlp.build(8, (2,), hidden=12, d_activation="groupsort", group_size=8)
    with pytest.raises(ConfigError, match=r"maxmin pairs features.*width 7"):
        mlp.build(8, (2,), hidden=7, d_activation="maxmin")
    with pytest.raises(ConfigError, match=r"blocks\.0\.conv1 \(conv 3->12\) of width 12"):
        resnet.build(8, 8, 3, 16, 12, d_activation="groupsort", group_size=8)
    standard_cnn.build(8, 8, 3, d_activation="groupsort", group_size=64)  # divides every width: fine


def test_make_activation_rejects_unknown_names():
    with pytest.raises(ConfigError, match="valid: leaky_relu"):
        make_activation("tanh")


@pytest.mark.parametrize("override,needles", [
    ("arch.d_activation=softplus", ["arch.d_activation='softplus'", "valid: leaky_relu, relu, maxmin, groupsort"]),
    ("arch.group_size=3", ["arch.group_size=3", "net.1 (Linear 2->256)", "width 256"]),
])
def test_cli_bad_activation_is_one_line_before_training(cli, tmp_path, override, needles):
    extra = ["arch.d_activation=groupsort"] if "group_size" in override else []
    result = cli("src.train", *BASE, *extra, override, run_dir=tmp_path / "run")
    assert_user_error(result, *needles)
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("name", ["maxmin", "groupsort"])
def test_spectral_upper_bound_treats_sorting_activations_as_1_lipschitz(name):
    from src.spectral.lipschitz import lipschitz_upper_bound

    d = MLPDiscriminator((2,), hidden=8, d_activation=name, group_size=4)
    norms = {n: float(torch.linalg.matrix_norm(m.weight.detach(), 2)) for n, m in d.named_modules() if isinstance(m, nn.Linear)}
    bound, valid, note = lipschitz_upper_bound(d, norms)
    assert valid, note
    assert bound == pytest.approx(torch.tensor(list(norms.values())).prod().item())
