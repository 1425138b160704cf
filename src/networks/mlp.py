"""MLP generator and discriminator for 2-D toy data (and any small flat data)."""
import math

from torch import nn

from .activations import check_activation, make_activation
from .norm_slot import NormSlot


class MLPGenerator(nn.Module):
    def __init__(self, z_dim: int, data_shape, hidden: int = 256, depth: int = 3):
        super().__init__()
        self.z_dim = z_dim
        self.data_shape = tuple(data_shape)
        layers, width = [], z_dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        layers.append(nn.Linear(width, math.prod(self.data_shape)))
        self.net = nn.Sequential(*layers)
        self.out_act = nn.Tanh() if len(self.data_shape) > 1 else nn.Identity()

    def forward(self, z):
        return self.out_act(self.net(z)).view(z.shape[0], *self.data_shape)


class MLPDiscriminator(nn.Module):
    """Flatten, ``depth`` x (Linear, [NormSlot], activation), Linear -> 1; ``d_activation`` from
    src.networks.activations (LeakyReLU 0.1 by default)."""

    def __init__(self, data_shape, hidden: int = 256, depth: int = 3, slope: float = 0.1,
                 d_activation: str = "leaky_relu", group_size: int = 2):
        super().__init__()
        layers, width, widths = [nn.Flatten()], math.prod(data_shape), {}
        for i in range(depth):
            widths[f"net.{len(layers)} (Linear {width}->{hidden})"] = hidden
            layers += [nn.Linear(width, hidden)]
            if i > 0:  # no normalization on the input layer, as for the CNNs
                layers.append(NormSlot(hidden, "1d"))
            layers.append(make_activation(d_activation, slope, group_size))
            width = hidden
        check_activation(d_activation, group_size, widths)
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x).view(-1)


def build(z_dim: int, data_shape, hidden: int = 256, depth: int = 3, d_activation: str = "leaky_relu", group_size: int = 2):
    return (MLPGenerator(z_dim, data_shape, hidden, depth),
            MLPDiscriminator(data_shape, hidden, depth, d_activation=d_activation, group_size=group_size))
