"""WGAN-GP's gradient penalty (Gulrajani et al. 2017).

lam * (|grad D(x_hat)|_2 - 1)^2 averaged over the batch, at x_hat = x + alpha (x_fake - x) with one
alpha ~ U[0, 1] per sample. With loss=ns this is the SN paper's GAN-GP.
"""
import torch
from torch import nn

from .gradient_penalty import RandomPenalty, gradient_norm_penalty


class WGANGP(RandomPenalty):
    name = "wgan_gp"
    default_loss = "wasserstein"

    def __init__(self, lam: float = 10.0):
        super().__init__()
        self.require_positive("lam", lam)
        self.lam = float(lam)

    def interpolate(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """x_hat = x + alpha (x_fake - x), alpha ~ U[0, 1] per sample (the regularizer's own stream)."""
        real, fake = real.detach(), fake.detach()
        alpha = self.rand((real.shape[0],) + (1,) * (real.dim() - 1), real)
        return real + alpha * (fake - real)

    def penalty(self, discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return self.lam * gradient_norm_penalty(discriminator, self.interpolate(real, fake))
