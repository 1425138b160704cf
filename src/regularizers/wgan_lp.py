"""WGAN-LP, the one-sided gradient penalty (Petzka, Fischer, Lukovnicov 2018).

lam * E max(0, |grad D(x_hat)|_2 - 1)^2 at the same interpolates as WGAN-GP, x_hat = x + alpha
(x_fake - x), one alpha ~ U[0, 1] per sample from the regularizer's own checkpointed stream. Unlike
WGAN-GP it only penalises gradient norms above 1, the Lipschitz constraint itself, instead of pulling
every norm to exactly 1. lam = 10 as WGAN-GP's default, so the two differ only in the one-sidedness.
"""
import torch
from torch import nn

from .gradient_penalty import gradient_norm_penalty
from .wgan_gp import WGANGP


class WGANLP(WGANGP):
    name = "wgan_lp"
    default_loss = "wasserstein"

    def penalty(self, discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return self.lam * gradient_norm_penalty(discriminator, self.interpolate(real, fake), one_sided=True)
