"""D's nonlinearity (``arch.d_activation``): leaky_relu, relu, and the gradient-norm-preserving
MaxMin / GroupSort of Anil et al. 2019 ("Sorting out Lipschitz function approximation").

GroupSort splits the features into consecutive groups of ``group_size`` and sorts each group; MaxMin
is GroupSort with groups of 2 (each pair becomes (max, min)). Both only permute their input, so
their Jacobian is a permutation matrix almost everywhere: |J v| = |v|, 1-Lipschitz and gradient-norm
preserving, unlike (leaky) ReLU which discards the gradient of every negative unit. For conv feature
maps (N, C, H, W) the groups run over channels at each pixel (``dim=1``), as in the paper.
"""
import torch
from torch import nn

from ..errors import ConfigError

ACTIVATIONS = ("leaky_relu", "relu", "maxmin", "groupsort")


class GroupSort(nn.Module):
    """Sort consecutive groups of ``group_size`` features along ``dim`` (ascending within each group)."""

    def __init__(self, group_size: int = 2, dim: int = 1):
        super().__init__()
        self.group_size, self.dim = int(group_size), dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[self.dim]
        if n % self.group_size:  # the builders check widths up front; this catches direct use
            raise ValueError(f"{type(self).__name__}: group size {self.group_size} does not divide {n} features")
        grouped = x.unflatten(self.dim, (n // self.group_size, self.group_size))
        return grouped.sort(dim=self.dim + 1).values.flatten(self.dim, self.dim + 1)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}, dim={self.dim}"


class MaxMin(GroupSort):
    """GroupSort with groups of 2, written as (max, min) of each pair: no sort kernel needed."""

    def __init__(self, dim: int = 1):
        super().__init__(2, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[self.dim]
        if n % 2:
            raise ValueError(f"MaxMin needs an even number of features, not {n}")
        a, b = x.unflatten(self.dim, (n // 2, 2)).unbind(self.dim + 1)
        return torch.stack((torch.maximum(a, b), torch.minimum(a, b)), self.dim + 1).flatten(self.dim, self.dim + 1)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


def check_activation(name: str, group_size=2, widths: dict | None = None) -> None:
    """One-line ConfigError for an unknown name, a bad group size, or a width the groups do not divide.

    ``widths``: {layer description: number of features the activation after it sees}.
    """
    if name not in ACTIVATIONS:
        raise ConfigError(f"arch.d_activation={name!r} is not known; valid: {', '.join(ACTIVATIONS)}")
    if name not in ("maxmin", "groupsort"):
        return
    size = 2 if name == "maxmin" else group_size
    if name == "groupsort" and not (isinstance(size, int) and not isinstance(size, bool) and size > 0):
        raise ConfigError(f"arch.group_size={size!r} is invalid; it must be a positive integer (2 = maxmin)")
    for layer, width in (widths or {}).items():
        if width % size:
            what = "maxmin pairs features, so" if name == "maxmin" else f"arch.group_size={size} must divide every width:"
            raise ConfigError(f"arch.d_activation={name}: {what} D's layer {layer} of width {width} cannot be split into groups of {size}")


def make_activation(name: str = "leaky_relu", slope: float = 0.1, group_size: int = 2) -> nn.Module:
    """The nn.Module for ``arch.d_activation`` (features along dim 1: (N, C) or (N, C, H, W))."""
    check_activation(name, group_size)
    if name == "leaky_relu":
        return nn.LeakyReLU(slope)
    if name == "relu":
        return nn.ReLU()
    if name == "maxmin":
        return MaxMin()
    return GroupSort(group_size)
