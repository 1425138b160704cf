"""Almost-orthogonal Lipschitz (AOL) rescaling (Prach & Lampert 2022): certified 1-Lipschitz layers with
no iteration.

Linear: W -> W diag(d), d_j = (sum_i |W^T W|_ij)^(-1/2). For any matrix, diag(d) W^T W diag(d) has
every Gershgorin-weighted row sum <= 1, so |W diag(d)|_2 <= 1 (the paper's Theorem 1).
Conv2d: the same with the kernel's Gram kernel: d_j = (sum_d sum_j' |M_d[j, j']|)^(-1/2), where
M_d = sum_{p_t' - p_t = d} W_t^T W_t' are the c_in x c_in blocks of the Gram operator A^T A of the
convolution on the infinite grid (block Toeplitz: the row sums do not depend on the position). So
the input-channel-rescaled convolution on the infinite grid has norm <= 1, and so does every
restriction of it: zero padding of any amount (inputs embedded, outputs selected), any stride (a
selection of outputs), and a circular torus (its Gram entries are sums of the same M_d, whose
absolute row sums can only shrink). Dilation spreads the taps without merging pairs: same d.
Refused (one line): groups != 1 (not implemented) and reflect / replicate padding (the padding map
copies inputs, so its own norm exceeds 1).

The rescaling is differentiated through (as in the paper). Cost: one matmul of the stacked taps
(k^2 c_in)^2 c_out per layer per new weight.
"""
import torch
from torch import nn
from torch.nn.utils import parametrize

from ..errors import ConfigError
from .base import Regularizer, apply_output_gain


def aol_scale_linear(weight: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """d (d_in,) for a Linear weight (d_out, d_in)."""
    return (weight.t() @ weight).abs().sum(dim=1).clamp_min(eps).rsqrt()


def gram_kernel_abs_rowsum(weight: torch.Tensor) -> torch.Tensor:
    """sum_d sum_j' |M_d[j, j']| for each input channel j of a conv kernel (c_out, c_in, kh, kw).

    M_d over all tap differences d: conv2d of the kernel with itself (channels as the batch), i.e. the
    cross-correlation of W with W summed over output channels: shape (c_in, c_in, 2kh-1, 2kw-1).
    """
    kh, kw = weight.shape[2:]
    wt = weight.transpose(0, 1)  # (c_in, c_out, kh, kw)
    gram = torch.nn.functional.conv2d(wt, wt, padding=(kh - 1, kw - 1))  # [j, j', a, b] = sum_o sum_taps W[o,j] W[o,j'] shifted
    return gram.abs().sum(dim=(1, 2, 3))


class AOLRescale(nn.Module):
    """Parametrization W -> W diag(d) (input channels rescaled), d from AOL's row sums."""

    def __init__(self, eps: float = 1e-12):
        super().__init__()
        self.eps = eps

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        with torch.autocast(weight.device.type, enabled=False):  # the scaling in float32 under mixed precision
            if weight.dim() == 2:
                return weight * aol_scale_linear(weight, self.eps)[None, :]
            d = gram_kernel_abs_rowsum(weight).clamp_min(self.eps).rsqrt()
            return weight * d[None, :, None, None]


def check_aol(layer: nn.Module) -> str | None:
    if isinstance(layer, nn.Conv2d):
        if layer.groups != 1:
            return f"groups={layer.groups} (AOL here supports groups=1)"
        if layer.padding_mode not in ("zeros", "circular"):
            return f"padding_mode={layer.padding_mode!r} copies inputs, so no rescaling of the kernel certifies it"
    return None


class AOL(Regularizer):
    name = "aol"
    default_loss = "ns"

    def __init__(self, output_gain: float = 1.0):
        self.require_positive("output_gain", output_gain)
        self.output_gain = float(output_gain)

    def wrap(self, discriminator: nn.Module, example_input: torch.Tensor) -> None:
        named = {m: n for n, m in discriminator.named_modules()}
        layers = [m for m in discriminator.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
        for layer in layers:
            reason = check_aol(layer)
            if reason:
                raise ConfigError(f"regularizer=aol cannot certify D.{named[layer]} ({layer}): {reason}; "
                                  "use regularizer=sn for this architecture")
        for layer in layers:
            parametrize.register_parametrization(layer, "weight", AOLRescale())
        apply_output_gain(discriminator, self.output_gain)
