"""Weight clipping (Arjovsky et al. 2017, WGAN): every parameter of D clamped to [-c, c].

As in the WGAN reference code, "every weight" means every parameter of D, biases included. D is
clipped once in wrap as well, so it satisfies the constraint from its first update on (the
initial N(0, 0.02) weights of the standard CNN exceed c = 0.01).
"""
import torch
from torch import nn

from .base import Regularizer


class WeightClip(Regularizer):
    name = "weight_clip"
    default_loss = "wasserstein"

    def __init__(self, c: float = 0.01):
        self.require_positive("c", c)
        self.c = float(c)

    def wrap(self, discriminator: nn.Module, example_input: torch.Tensor) -> None:
        self.after_d_step(discriminator)

    @torch.no_grad()
    def after_d_step(self, discriminator: nn.Module) -> None:
        for p in discriminator.parameters():
            p.clamp_(-self.c, self.c)
