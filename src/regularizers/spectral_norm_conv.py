"""Conv-true spectral normalization: each convolution divided by its operator norm as applied.

Where ``sn`` normalizes the kernel reshaped to d_out x (d_in k k), this normalizes the linear map
A: x -> conv2d(x, W) itself, at the layer's real stride, padding and input size (Gouk et al. 2018 do
the same for Lipschitz networks). The power iteration is Miyato's on that operator
(src.spectral.power_iteration.conv_power_iteration_nograd): v <- A^T u / |.|, u <- A v / |.|,
sigma = <u, A v>, with the output-space iterate u, a (1, c_out, H', W') feature map, kept between
steps as a buffer (initialised N(0, I)); one iteration per training step by default. The gradient
flows through sigma with u, v constant: d sigma / dW = conv2d_weight(v, u), supplied directly (one
weight-gradient convolution instead of a differentiable forward plus its backward). Linear layers
are plain matrices, so they get ``sn``'s parametrization (exact for them).

Input sizes come from one no-grad forward of D on the example batch with pre-hooks on every conv.
"""
import torch
from torch import nn
from torch.nn.utils import parametrize

from ..errors import ConfigError
from ..spectral.lipschitz import layer_input_shapes, weight_layers
from ..spectral.power_iteration import conv_forward, conv_power_iteration_nograd
from .base import Regularizer, apply_output_gain
from .spectral_norm import DivideBySigma, ReshapedSpectralNorm


class ConvSpectralNorm(nn.Module):
    """Parametrization W -> W / |conv(., W)|_op at a fixed input size, stride and padding."""

    def __init__(self, weight: torch.Tensor, input_shape, stride, padding, power_iterations: int = 1, eps: float = 1e-12):
        super().__init__()
        self.input_shape = tuple(int(s) for s in input_shape)  # (c_in, H, W)
        self.stride, self.padding = tuple(stride), tuple(padding)
        self.power_iterations = power_iterations
        self.eps = eps
        w = weight.detach()
        out_shape = conv_forward(torch.zeros(1, *self.input_shape, device=w.device, dtype=w.dtype), w, self.stride, self.padding).shape
        u = torch.randn(out_shape, device=w.device, dtype=w.dtype)
        u = u / u.norm().clamp_min(eps)
        # v = A^T u / |.| and u kept: an eval-mode forward before any training step then uses
        # sigma = <u, A v> = |A^T u| > 0, as sn's initial state
        _, _, v, _ = conv_power_iteration_nograd(w, u, self.input_shape, self.stride, self.padding, 1, eps)
        self.register_buffer("u", u)
        self.register_buffer("v", v)
        self.register_buffer("sigma", (u * conv_forward(v, w, self.stride, self.padding)).sum())

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        with torch.autocast(weight.device.type, enabled=False):  # iterate and normalize in float32
            w = weight.detach()
            if self.training:
                sigma, u, v, dsigma = conv_power_iteration_nograd(w, self.u, self.input_shape, self.stride, self.padding,
                                                                  self.power_iterations, self.eps)
                with torch.no_grad():
                    self.u.copy_(u)
                    self.v.copy_(v)
                    self.sigma.copy_(sigma)
            else:
                with torch.no_grad():
                    sigma = (self.u * conv_forward(self.v, w, self.stride, self.padding)).sum()
                if not (torch.is_grad_enabled() and weight.requires_grad):  # e.g. the spectral monitor's reads
                    return weight / sigma.clamp_min(self.eps)
                with torch.no_grad():
                    dsigma = torch.nn.grad.conv2d_weight(self.v, w.shape, self.u, self.stride, self.padding)
            return DivideBySigma.apply(weight, sigma.clamp_min(self.eps), None, None, dsigma)

    def extra_repr(self) -> str:
        return f"input_shape={self.input_shape}, stride={self.stride}, padding={self.padding}, power_iterations={self.power_iterations}"


def conv_input_shapes(discriminator: nn.Module, example_input: torch.Tensor) -> dict:
    """{conv layer: {(c_in, H, W), ...}} from one no-grad, eval-mode forward of D on ``example_input`` (D left
    as it was; src.spectral.lipschitz.layer_input_shapes)."""
    shapes = layer_input_shapes(discriminator, example_input)
    return {layer: set(shapes.get(name, ())) for name, layer in weight_layers(discriminator).items()
            if isinstance(layer, nn.Conv2d)}


class ConvSpectralNormRegularizer(Regularizer):
    name = "sn_conv"
    default_loss = "ns"

    def __init__(self, power_iterations: int = 1, output_gain: float = 1.0):
        self.require_positive("power_iterations", power_iterations, integer=True)
        self.require_positive("output_gain", output_gain)
        self.power_iterations = int(power_iterations)
        self.output_gain = float(output_gain)

    def wrap(self, discriminator: nn.Module, example_input: torch.Tensor) -> None:
        shapes = conv_input_shapes(discriminator, example_input)
        named = {m: n for n, m in discriminator.named_modules()}
        for conv, seen in shapes.items():
            where = f"D.{named[conv]}"
            if conv.groups != 1 or tuple(conv.dilation) != (1, 1) or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
                raise ConfigError(f"regularizer=sn_conv cannot apply to {where} ({conv}): it supports Conv2d with groups=1, "
                                  "dilation=1 and integer zero padding; use regularizer=sn for this architecture")
            if len(seen) != 1:
                what = "never ran" if not seen else f"ran at several input sizes {sorted(seen)}"
                raise ConfigError(f"regularizer=sn_conv cannot apply to {where}: it {what} on the example batch, "
                                  "so its operator norm is undefined; use regularizer=sn for this architecture")
            (shape,) = seen
            parametrize.register_parametrization(conv, "weight", ConvSpectralNorm(
                conv.weight.detach(), shape, conv.stride, conv.padding, self.power_iterations))
        for layer in [m for m in discriminator.modules() if isinstance(m, nn.Linear)]:
            parametrize.register_parametrization(layer, "weight", ReshapedSpectralNorm(layer.weight.detach(), self.power_iterations))
        apply_output_gain(discriminator, self.output_gain)
