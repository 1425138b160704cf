"""Spectral normalization of the reshaped kernel (Miyato et al. 2018).

Each Linear/Conv2d weight W is reparametrized (torch.nn.utils.parametrize) as W / sigma(W), where
sigma is estimated by power iteration on W reshaped to d_out x (d_in k k). u and v are buffers kept
between steps (u initialised N(0, I)); the gradient flows through sigma = u^T W v with u, v held
constant. Written here rather than using torch.nn.utils.parametrizations.spectral_norm because the
lab needs Miyato's initialisation (one random u, no 15 warm-up iterations), the iterates exposed for
the spectral callback, and one code path shared with the conv-true variant.

The iteration runs without autograd and DivideBySigma supplies the gradient (u v^T for sigma).
Iteration order is Miyato's Algorithm 1 (v <- W^T u, then u <- W v, sigma = u^T W v). PyTorch's
parametrization runs u <- W v first, then v <- W^T u: the same sequence of iterates shifted by half
a step, so both agree once the iteration has converged (tests/regularizers/test_regularizers.py checks both).
"""
import torch
from torch import nn
from torch.nn.utils import parametrize

from ..spectral.power_iteration import reshaped_power_iteration_nograd
from ..spectral.lipschitz import weight_layers
from .base import Regularizer, apply_output_gain


class DivideBySigma(torch.autograd.Function):
    """W -> W / sigma with sigma's gradient supplied: u v^T (reshaped SN) or a kernel-shaped tensor.

    backward: dL/dW = (g - <g, W / sigma> dsigma) / sigma, i.e. the gradient of W / sigma(W) with
    the power-iteration vectors held constant (Miyato et al.), in two passes over the weight instead
    of autograd's half-dozen (division, its sigma branch, the matrix-vector product, accumulation).
    """

    @staticmethod
    def forward(ctx, weight, sigma, u, v, dsigma):
        out = weight / sigma
        ctx.save_for_backward(out, sigma, u, v, dsigma)
        return out

    @staticmethod
    def backward(ctx, grad):
        out, sigma, u, v, dsigma = ctx.saved_tensors
        coef = -torch.dot(grad.reshape(-1), out.reshape(-1)) / sigma
        if dsigma is None:  # reshaped: dsigma = u v^T, applied as a broadcast outer product
            g = torch.addcmul(grad.reshape(u.numel(), -1) / sigma, u[:, None], (coef * v)[None, :])
            return g.reshape(grad.shape), None, None, None, None
        return torch.addcmul(grad / sigma, dsigma, coef), None, None, None, None


class ReshapedSpectralNorm(nn.Module):
    """Parametrization W -> W / sigma(W_mat) with a persistent power-iteration vector u."""

    def __init__(self, weight: torch.Tensor, power_iterations: int = 1, eps: float = 1e-12):
        super().__init__()
        self.power_iterations = power_iterations
        self.eps = eps
        w_mat = weight.detach().flatten(1)
        u = nn.functional.normalize(torch.randn(w_mat.shape[0], device=weight.device, dtype=weight.dtype), dim=0, eps=eps)
        # v follows from u (not an independent random vector) so that an eval-mode forward before
        # any training step uses sigma = u^T W v = |W^T u| > 0 rather than a random-sign estimate
        v = nn.functional.normalize(w_mat.t() @ u, dim=0, eps=eps)
        self.register_buffer("u", u)
        self.register_buffer("v", v)
        self.register_buffer("sigma", torch.dot(u, w_mat @ v))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        # the power iteration and sigma in float32 even inside an autocast region
        with torch.autocast(weight.device.type, enabled=False):
            w_mat = weight.detach().flatten(1)
            if self.training:
                sigma, u, v = reshaped_power_iteration_nograd(w_mat, self.u, self.power_iterations, self.eps)
                with torch.no_grad():
                    self.u.copy_(u)
                    self.v.copy_(v)
                    self.sigma.copy_(sigma)
                # the Function keeps the fresh tensors u, v, not the buffers updated in place above,
                # so a graph built in this step stays valid after the next step's update
            else:
                u, v = self.u.clone(), self.v.clone()
                sigma = torch.dot(u, w_mat @ v)
            return DivideBySigma.apply(weight, sigma.clamp_min(self.eps), u, v, None)


class SpectralNorm(Regularizer):
    name = "sn"
    default_loss = "ns"

    def __init__(self, power_iterations: int = 1, output_gain: float = 1.0):
        self.require_positive("power_iterations", power_iterations, integer=True)
        self.require_positive("output_gain", output_gain)
        self.power_iterations = int(power_iterations)
        self.output_gain = float(output_gain)

    def wrap(self, discriminator: nn.Module, example_input: torch.Tensor) -> None:
        for layer in weight_layers(discriminator).values():
            parametrize.register_parametrization(layer, "weight", ReshapedSpectralNorm(layer.weight.detach(), self.power_iterations))
        apply_output_gain(discriminator, self.output_gain)
