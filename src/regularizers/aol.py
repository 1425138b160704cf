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

The rescaling is differentiated through exactly (as in the paper), by a hand-written backward:
autograd's own (through |.| of the conv2d of the kernel with itself) spent its time in elementwise
passes over strided Gram tensors and in a two-sided conv backward, and the critic's output row
(Linear 8192 -> 1) built an 8192 x 8192 |W^T W| (now the closed form |w_j| |w|_1): together 2.6x the
cost of an unregularized update on the standard CNN. Here the Gram kernel is conv2d of the kernel with itself
(oneDNN skips the zero-padded taps: k^4 c_in^2 c_out multiply-adds; 3/4 of that from 128 input
channels, the symmetry M_{-d} = M_d^T giving one off-diagonal block of the channel halves), and its
gradient one conv2d of the full size (the same symmetry folds autograd's two conv-backward terms into one).
The Gram kernel of the last weight is kept: a D update that follows the G update (same weights)
reuses it and pays only the backward. What remains is arithmetic: on the standard CNN the Gram
kernels and their gradient take ~1.4e10 multiply-adds per D update, about a third of the D update's
own (~4e10 at batch 64), because c_in k^2 exceeds batch x output pixels on the last convs (the
256 -> 256 4x4 conv's Gram kernel, 3.2e9 with the halves, is 3x that layer's forward on 64 inputs
of 8x8).
"""
import torch
from torch import nn
from torch.nn.utils import parametrize

from ..errors import ConfigError
from .base import Regularizer, apply_output_gain


def aol_scale_linear(weight: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """d (d_in,) for a Linear weight (d_out, d_in)."""
    if weight.shape[0] == 1:  # a critic's output row: |w w^T| row sums are |w_j| |w|_1, no d_in x d_in matrix
        w = weight[0]
        return (w.abs() * w.abs().sum()).clamp_min(eps).rsqrt()
    return (weight.t() @ weight).abs().sum(dim=1).clamp_min(eps).rsqrt()


def gram_kernel(weight: torch.Tensor) -> torch.Tensor:
    """All the M_d of a conv kernel (c_out, c_in, kh, kw) at once: (c_in, c_in, 2kh-1, 2kw-1), entry
    [j, j', (kh-1, kw-1) + d] = sum_o sum_p W[o, j, p + d] W[o, j', p] (the kernel's autocorrelation)."""
    c_in, (kh, kw) = weight.shape[1], weight.shape[2:]
    wt = weight.transpose(0, 1)  # (c_in, c_out, kh, kw): input channels as the batch
    pad = (kh - 1, kw - 1)
    if c_in < 128:
        return torch.nn.functional.conv2d(wt, wt, padding=pad)
    # gram[j, j', a] = gram[j', j, -a]: with the channels in two halves, the off-diagonal block once (3/4 of the work)
    h = c_in // 2
    a, b = wt[:h], wt[h:]
    out = weight.new_empty(c_in, c_in, 2 * kh - 1, 2 * kw - 1)
    out[:h, :h] = torch.nn.functional.conv2d(a, a, padding=pad)
    out[h:, h:] = torch.nn.functional.conv2d(b, b, padding=pad)
    out[:h, h:] = torch.nn.functional.conv2d(a, b, padding=pad)
    out[h:, :h] = out[:h, h:].transpose(0, 1).flip(2, 3)
    return out


def gram_kernel_abs_rowsum(weight: torch.Tensor) -> torch.Tensor:
    """sum_d sum_j' |M_d[j, j']| for each input channel j of a conv kernel (c_out, c_in, kh, kw)."""
    return gram_kernel(weight).abs().sum(dim=(1, 2, 3))


class _AOLConv(torch.autograd.Function):
    """W -> W * s^(-1/2) (per input channel), s_j = max(sum |gram[j]|, eps), with the exact gradient.

    backward: with g = dL/d(out), dL/ds_j = -1/2 s_j^(-3/2) sum(g W)[:, j] (0 where clamped), and
    L's dependence on the Gram kernel R = dL/dgram = (dL/ds_j) sign(gram[j, j', a]). gram = W (*) W
    is quadratic with gram[j, j', a] = gram[j', j, -a], so dL/dW = conv2d(W, R + R^T(j <-> j', a -> -a)
    flipped) (checked against autograd through |conv2d(W, W)| in tests/regularizers/test_sn_gram_aol.py).
    """

    @staticmethod
    def forward(ctx, weight, gram, eps):
        s = gram.abs().sum(dim=(1, 2, 3))
        clamped = s < eps
        d = s.clamp_min(eps).rsqrt()
        ctx.save_for_backward(weight, gram, d, clamped)
        return weight * d[None, :, None, None]

    @staticmethod
    def backward(ctx, grad):
        weight, gram, d, clamped = ctx.saved_tensors
        kh, kw = weight.shape[2:]
        grad_w = grad * d[None, :, None, None]
        gd = (grad * weight).sum(dim=(0, 2, 3))
        gs = (-0.5 * gd * d ** 3).masked_fill(clamped, 0.0)
        r = gram.sign().mul_(gs[:, None, None, None])
        rs = r.flip(2, 3).add_(r.transpose(0, 1))  # (R + R^T reversed) flipped: the conv's kernel
        grad_w += torch.nn.functional.conv2d(weight, rs, padding=(kh - 1, kw - 1))
        return grad_w, None, None


class AOLRescale(nn.Module):
    """Parametrization W -> W diag(d) (input channels rescaled), d from AOL's row sums."""

    def __init__(self, eps: float = 1e-12):
        super().__init__()
        self.eps = eps
        self._gram = None  # (a copy of the weight, its Gram kernel): reused while the weight equals the copy

    def _gram_of(self, weight: torch.Tensor) -> torch.Tensor:
        # compared by value, not by version counter: fused optimizers update in place without bumping it
        cached = self._gram
        w = weight.detach()
        if cached is not None and cached[0].shape == w.shape and cached[0].dtype == w.dtype and torch.equal(cached[0], w):
            return cached[1]
        with torch.no_grad():
            gram = gram_kernel(w)
        self._gram = (w.clone(), gram)
        return gram

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        with torch.autocast(weight.device.type, enabled=False):  # the scaling in float32 under mixed precision
            if weight.dim() == 2:
                return weight * aol_scale_linear(weight, self.eps)[None, :]
            return _AOLConv.apply(weight, self._gram_of(weight), self.eps)

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._gram = None


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
