"""Weight normalization with the learnable scale removed (Salimans & Kingma 2016, as in the SN paper).

Every Linear/Conv2d weight of D is reparametrized so that each output unit's weight row (for a
conv, its c_in x k x k filter) has unit L2 norm: W_i / |W_i|, gamma fixed to 1.
"""
import torch
from torch import nn
from torch.nn.utils import parametrize

from ..spectral.lipschitz import weight_layers
from .base import Regularizer


class RowNormalize(nn.Module):
    """Parametrization W -> W_i / |W_i| for every output unit i (dim 0)."""

    def __init__(self, eps: float = 1e-12):
        super().__init__()
        self.eps = eps

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        with torch.autocast(weight.device.type, enabled=False):
            norms = weight.flatten(1).norm(dim=1).clamp_min(self.eps)
            return weight / norms.view(-1, *([1] * (weight.dim() - 1)))


class WeightNorm(Regularizer):
    name = "weight_norm"
    default_loss = "ns"

    def wrap(self, discriminator: nn.Module, example_input: torch.Tensor) -> None:
        for layer in weight_layers(discriminator).values():
            parametrize.register_parametrization(layer, "weight", RowNormalize())
