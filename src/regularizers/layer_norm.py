"""Layer normalization in D (Ba et al. 2016; a baseline of the SN paper), learnable gain removed.

Fills every NormSlot of D: for feature maps GroupNorm(1, C), i.e. one mean and variance over each
sample's C x H x W features; for flat features LayerNorm(C). Both without affine parameters.
"""
from torch import nn

from .base import NormSlotRegularizer


class LayerNorm(NormSlotRegularizer):
    name = "layer_norm"
    default_loss = "ns"

    def make_norm(self, num_features: int, kind: str) -> nn.Module:
        return nn.GroupNorm(1, num_features, affine=False) if kind == "2d" else nn.LayerNorm(num_features, elementwise_affine=False)
