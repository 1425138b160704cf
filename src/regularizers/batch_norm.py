"""Batch normalization in D (a baseline of the SN paper), learnable scale and shift removed.

Fills every NormSlot of D: BatchNorm2d for feature maps, BatchNorm1d for flat features, both
affine=False. D sees the real and the fake batch in separate forward passes, so each is normalized
with its own statistics (as DCGAN-style discriminators do).
"""
from torch import nn

from .base import NormSlotRegularizer


class BatchNorm(NormSlotRegularizer):
    name = "batch_norm"
    default_loss = "ns"

    def make_norm(self, num_features: int, kind: str) -> nn.Module:
        return nn.BatchNorm2d(num_features, affine=False) if kind == "2d" else nn.BatchNorm1d(num_features, affine=False)
