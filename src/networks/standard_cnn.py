"""The standard CNN of Miyato et al. 2018, Table 3 (32x32 and 48x48; any multiple of 8)."""
from torch import nn

from ..errors import ConfigError
from .activations import check_activation, make_activation
from .norm_slot import NormSlot


def _init_normal(module: nn.Module, std: float = 0.02) -> None:
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def scaled(n: int, width: float) -> int:
    """A channel count of the paper's network times the width multiplier (at least 1)."""
    return max(1, int(round(n * width)))


class StandardCNNGenerator(nn.Module):
    """z -> dense -> Mg x Mg x 512 -> 3 x (deconv 4x4 s2, BN, ReLU) -> conv 3x3 -> tanh (channels x width)."""

    def __init__(self, z_dim: int, resolution: int, channels: int, width: float = 1.0):
        super().__init__()
        self.z_dim = z_dim
        self.mg = resolution // 8
        self.c0 = scaled(512, width)
        self.dense = nn.Linear(z_dim, self.mg * self.mg * self.c0)
        blocks = []
        for c_in, c_out in [(512, 256), (256, 128), (128, 64)]:
            c_in, c_out = scaled(c_in, width), scaled(c_out, width)
            blocks += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1), nn.BatchNorm2d(c_out), nn.ReLU()]
        blocks += [nn.Conv2d(scaled(64, width), channels, 3, 1, 1), nn.Tanh()]
        self.body = nn.Sequential(*blocks)
        _init_normal(self)

    def forward(self, z):
        return self.body(self.dense(z).view(z.shape[0], self.c0, self.mg, self.mg))


class StandardCNNDiscriminator(nn.Module):
    """Seven convolutions (3x3 s1 / 4x4 s2 alternating, padding 1), LeakyReLU 0.1, dense -> 1.

    ``d_activation`` (src.networks.activations) replaces the LeakyReLUs; maxmin / groupsort act on
    groups of channels at each pixel."""

    SPEC = [(64, 3, 1), (64, 4, 2), (128, 3, 1), (128, 4, 2), (256, 3, 1), (256, 4, 2), (512, 3, 1)]

    def __init__(self, resolution: int, channels: int, slope: float = 0.1, d_activation: str = "leaky_relu", group_size: int = 2,
                 width: float = 1.0):
        super().__init__()
        layers, c_in, widths = [], channels, {}
        for i, (c_out, k, s) in enumerate(self.SPEC):
            c_out = scaled(c_out, width)
            widths[f"features.{len(layers)} (conv {c_in}->{c_out})"] = c_out
            layers.append(nn.Conv2d(c_in, c_out, k, s, 1))
            if i > 0:  # no normalization on the input layer
                layers.append(NormSlot(c_out, "2d"))
            layers.append(make_activation(d_activation, slope, group_size))
            c_in = c_out
        check_activation(d_activation, group_size, widths)
        self.features = nn.Sequential(*layers)
        self.dense = nn.Linear(c_in * (resolution // 8) ** 2, 1)
        _init_normal(self)

    def forward(self, x):
        return self.dense(self.features(x).flatten(1)).view(-1)


def check_width(width) -> float:
    import math

    if isinstance(width, bool) or not isinstance(width, (int, float)) or not math.isfinite(width) or width <= 0:
        raise ConfigError(f"arch.width={width!r} is invalid; it must be a positive number (1.0 = the paper's channel counts)")
    return float(width)


def build(z_dim: int, resolution: int, channels: int, d_activation: str = "leaky_relu", group_size: int = 2,
          width: float = 1.0):
    width = check_width(width)
    if resolution % 8 or resolution < 8:
        raise ConfigError(f"arch standard_cnn cannot take resolution {resolution}: it must be a positive multiple of 8 (32 for CIFAR-10, 48 for STL-10)")
    check_activation(d_activation, group_size)  # before G is built: a bad name costs nothing
    return (StandardCNNGenerator(z_dim, resolution, channels, width),
            StandardCNNDiscriminator(resolution, channels, d_activation=d_activation, group_size=group_size, width=width))
