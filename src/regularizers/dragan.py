"""DRAGAN's gradient penalty around the real data (Kodali et al. 2017).

Perturbed data x_p = x + 0.5 std(x) U[0, 1), with std(x) ONE scalar: the population standard
deviation over every element of the real batch, and the uniform noise drawn per element. This
follows the authors' released notebook (DRAGAN's reference TensorFlow code) rather than the paper's
text (delta ~ N(0, cI)); the penalty lam (|grad D(x_hat)| - 1)^2 is taken at x_hat = x + alpha
(x_p - x) with one alpha ~ U[0, 1] per sample, as in that notebook. Peer re-implementations differ:
some use a per-pixel std over the batch, symmetric noise, or the penalty at x_p directly (no alpha);
those are other methods under the same name, not this one. The fake batch is not used.
"""
import torch
from torch import nn

from .gradient_penalty import RandomPenalty, gradient_norm_penalty


class DRAGAN(RandomPenalty):
    name = "dragan"
    default_loss = "ns"

    def __init__(self, lam: float = 10.0):
        super().__init__()
        self.require_positive("lam", lam)
        self.lam = float(lam)

    def perturb(self, real: torch.Tensor) -> torch.Tensor:
        """x_p = x + 0.5 std(x) U[0, 1): one scalar std over the whole batch (numpy's ddof=0)."""
        x = real.detach()
        std = x.float().std(correction=0).to(x.dtype)
        return x + 0.5 * std * self.rand(x.shape, x)

    def interpolate(self, real: torch.Tensor) -> torch.Tensor:
        """x_hat = x + alpha (x_p - x), alpha ~ U[0, 1] per sample."""
        x = real.detach()
        x_p = self.perturb(x)
        alpha = self.rand((x.shape[0],) + (1,) * (x.dim() - 1), x)
        return x + alpha * (x_p - x)

    def penalty(self, discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return self.lam * gradient_norm_penalty(discriminator, self.interpolate(real))
