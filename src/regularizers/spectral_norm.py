"""Spectral normalization of the reshaped kernel (Miyato et al. 2018).

Each Linear/Conv2d weight W is reparametrized (torch.nn.utils.parametrize) as W / sigma(W), where
sigma is estimated by power iteration on W reshaped to d_out x (d_in k k). u and v are buffers kept
between steps (u initialised N(0, I)); the gradient flows through sigma = u^T W v with u, v held
constant. Written here rather than using torch.nn.utils.parametrizations.spectral_norm because the
lab needs Miyato's initialisation (one random u, no 15 warm-up iterations), the iterates exposed for
the spectral callback, and one code path shared with the conv-true variant.
"""
import torch
from torch import nn
from torch.nn.utils import parametrize

from ..spectral.power_iteration import reshaped_power_iteration
from .base import Regularizer, weight_layers


class ReshapedSpectralNorm(nn.Module):
    """Parametrization W -> W / sigma(W_mat) with a persistent power-iteration vector u."""

    def __init__(self, weight: torch.Tensor, power_iterations: int = 1, eps: float = 1e-12):
        super().__init__()
        self.power_iterations = power_iterations
        self.eps = eps
        d_out = weight.shape[0]
        d_in = weight[0].numel()
        self.register_buffer("u", nn.functional.normalize(torch.randn(d_out, device=weight.device, dtype=weight.dtype), dim=0, eps=eps))
        self.register_buffer("v", nn.functional.normalize(torch.randn(d_in, device=weight.device, dtype=weight.dtype), dim=0, eps=eps))
        self.register_buffer("sigma", torch.ones((), device=weight.device, dtype=weight.dtype))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        w_mat = weight.flatten(1)
        if self.training:
            sigma, u, v = reshaped_power_iteration(w_mat, self.u, self.power_iterations)
            with torch.no_grad():
                self.u.copy_(u)
                self.v.copy_(v)
                self.sigma.copy_(sigma.detach())
            # sigma was computed from the fresh iterates u, v (new tensors), not from the buffers
            # updated in place above, so the graph stays valid across steps
        else:
            sigma = torch.dot(self.u, w_mat @ self.v)
        return weight / sigma.clamp_min(self.eps)


class SpectralNorm(Regularizer):
    name = "sn"
    default_loss = "ns"

    def __init__(self, power_iterations: int = 1):
        self.require_positive("power_iterations", power_iterations, integer=True)
        self.power_iterations = int(power_iterations)

    def wrap(self, discriminator: nn.Module, example_input: torch.Tensor) -> None:
        for layer in weight_layers(discriminator):
            parametrize.register_parametrization(layer, "weight", ReshapedSpectralNorm(layer.weight.detach(), self.power_iterations))
