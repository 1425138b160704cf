"""The ResNet of Miyato et al. 2018 (Table 4; STL-10 at 48x48 follows the same pattern from 6x6)."""
import math

import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .activations import check_activation, make_activation
from .norm_slot import NormSlot


def _xavier(module: nn.Module, gain: float) -> nn.Module:
    nn.init.xavier_uniform_(module.weight, gain)
    if module.bias is not None:
        nn.init.zeros_(module.bias)
    return module


class GeneratorBlock(nn.Module):
    """BN, ReLU, 2x nearest upsample, conv3x3, BN, ReLU, conv3x3; shortcut: upsample, conv1x1."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.bn1, self.bn2 = nn.BatchNorm2d(c_in), nn.BatchNorm2d(c_out)
        self.conv1 = _xavier(nn.Conv2d(c_in, c_out, 3, 1, 1), math.sqrt(2))
        self.conv2 = _xavier(nn.Conv2d(c_out, c_out, 3, 1, 1), math.sqrt(2))
        self.shortcut = _xavier(nn.Conv2d(c_in, c_out, 1), 1.0)

    def forward(self, x):
        h = F.interpolate(F.relu(self.bn1(x)), scale_factor=2)
        h = self.conv2(F.relu(self.bn2(self.conv1(h))))
        return h + self.shortcut(F.interpolate(x, scale_factor=2))


class DiscriminatorBlock(nn.Module):
    """[ReLU], conv3x3, ReLU, conv3x3, [avgpool 2]; shortcut conv1x1 (+pool) when shape changes.

    ``first`` is the "optimized" input block: no ReLU before the first conv, and the shortcut pools
    before its 1x1 conv. No normalization in D's blocks (the NormSlots stay identities unless the
    ``batch_norm`` / ``layer_norm`` regularizers fill them). ``activation`` (an nn.Module, ReLU by
    default; ``arch.d_activation``) takes the place of both ReLUs.
    """

    def __init__(self, c_in: int, c_out: int, downsample: bool, first: bool = False, activation: nn.Module | None = None):
        super().__init__()
        self.first, self.downsample = first, downsample
        self.act = activation if activation is not None else nn.ReLU()
        self.conv1 = _xavier(nn.Conv2d(c_in, c_out, 3, 1, 1), math.sqrt(2))
        self.norm1 = NormSlot(c_out, "2d")
        self.conv2 = _xavier(nn.Conv2d(c_out, c_out, 3, 1, 1), math.sqrt(2))
        self.norm2 = NormSlot(c_out, "2d")
        self.learn_shortcut = downsample or c_in != c_out
        self.shortcut = _xavier(nn.Conv2d(c_in, c_out, 1), 1.0) if self.learn_shortcut else None

    def forward(self, x):
        h = x if self.first else self.act(x)
        h = self.norm2(self.conv2(self.act(self.norm1(self.conv1(h)))))
        if self.downsample:
            h = F.avg_pool2d(h, 2)
        s = x
        if self.learn_shortcut:
            if self.first:
                s = self.shortcut(F.avg_pool2d(s, 2) if self.downsample else s)
            else:
                s = self.shortcut(s)
                s = F.avg_pool2d(s, 2) if self.downsample else s
        return h + s


class ResNetGenerator(nn.Module):
    def __init__(self, z_dim: int, resolution: int, channels: int, width: int = 256):
        super().__init__()
        self.z_dim, self.width, self.base = z_dim, width, resolution // 8
        self.dense = _xavier(nn.Linear(z_dim, self.base * self.base * width), 1.0)
        self.blocks = nn.Sequential(*[GeneratorBlock(width, width) for _ in range(3)])
        self.out = nn.Sequential(nn.BatchNorm2d(width), nn.ReLU(), _xavier(nn.Conv2d(width, channels, 3, 1, 1), 1.0), nn.Tanh())

    def forward(self, z):
        return self.out(self.blocks(self.dense(z).view(z.shape[0], self.width, self.base, self.base)))


class ResNetDiscriminator(nn.Module):
    """Four blocks, activation, global sum pooling, dense -> 1; ``d_activation`` (ReLU by default, as
    in the paper; src.networks.activations) is used at every nonlinearity of D."""

    def __init__(self, channels: int, width: int = 128, d_activation: str = "relu", group_size: int = 2):
        super().__init__()
        # every activation of D sees `width` features: after each block's conv1, and each block's output
        check_activation(d_activation, group_size, {f"blocks.{i}.conv1 (conv {channels if i == 0 else width}->{width})": width
                                                    for i in range(4)})
        act = lambda: make_activation(d_activation, group_size=group_size)  # noqa: E731
        self.blocks = nn.Sequential(
            DiscriminatorBlock(channels, width, downsample=True, first=True, activation=act()),
            DiscriminatorBlock(width, width, downsample=True, activation=act()),
            DiscriminatorBlock(width, width, downsample=False, activation=act()),
            DiscriminatorBlock(width, width, downsample=False, activation=act()),
        )
        self.act = act()
        self.dense = _xavier(nn.Linear(width, 1), 1.0)

    def forward(self, x):
        h = self.act(self.blocks(x)).sum(dim=(2, 3))  # global sum pooling
        return self.dense(h).view(-1)


def build(z_dim: int, resolution: int, channels: int, g_width: int = 256, d_width: int = 128,
          d_activation: str = "relu", group_size: int = 2, width: float = 1.0):
    from .standard_cnn import check_width, scaled

    width = check_width(width)
    g_width, d_width = scaled(g_width, width), scaled(d_width, width)  # arch.width multiplies both
    if resolution % 8 or resolution < 8:
        raise ConfigError(f"arch resnet cannot take resolution {resolution}: it must be a positive multiple of 8 (32 for CIFAR-10, 48 for STL-10)")
    check_activation(d_activation, group_size, {f"blocks.0.conv1 (conv {channels}->{d_width})": d_width})  # before G is built
    return ResNetGenerator(z_dim, resolution, channels, g_width), ResNetDiscriminator(channels, d_width, d_activation, group_size)
