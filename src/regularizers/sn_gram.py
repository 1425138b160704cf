"""Certified spectral normalization (sn_gram): each conv divided by a CERTIFIED upper bound of its
operator norm as applied (stride, zero padding, input size); Linear layers by their exact norm.

What is certified: at every training step the divisor s(W) is an upper bound of the layer's true
norm at the current weights (src.spectral.certified: the circular convolution on the padded torus,
polyphase for strides, per-frequency Cholesky certificates in float64 with rounding margins), so the
normalized layer W / s(W) has operator norm <= 1, never above (a power-iteration estimate
approaches the norm from below, so SN/sn_conv layers sit slightly above 1). s(W) is at most (1 + tol)
above the circular norm; that norm exceeds the zero-padded layer's by the border effect (about 1% at
16x16-32x32 inputs, 11% on the 4x4 input of the standard CNN's last conv).

What is differentiated: s(W) is a max over frequencies of Cholesky certificates, which has no useful
gradient; the gradient treats s = sigma_pi * (s / sigma_pi) with the ratio held constant, where
sigma_pi is sn_conv's conv-true power-iteration estimate on the layer as applied (one warm-started
iteration per new weight, d sigma_pi / dW = conv2d_weight(v, u)). The ratio makes the surrogate
homogeneous of degree 1, as s is. The certificate is recomputed whenever the weight changed (compared
by value with a copy of the certified weight), so a G step after a D step recertifies, and a D step that
follows a G step reuses it: n_dis certificates per generator update.

Cost of a certificate (docs/benchmarks.md): the float64 tap products M_d (half of them, by
M_-d = M_d^T: k^4 c_in c_out min(c_in, c_out) / 2 multiply-adds, polyphase for strides), one float64
Cholesky factorization per torus frequency (c^3 / 3 complex multiply-adds), a warm-started power
iteration per frequency (the estimate that sets mu; 30 iterations on the first call) and
``power_iterations`` conv-level iterations (u, v of the gradient). float64, because the certificate
adds the products' rounding error: in float32 that margin (gamma_n |sum_t |W_t||^2) would be 1.5%
of the squared norm on the standard CNN's 256 -> 512 layer at its initial weights, over the default
tolerance.
"""
import torch
from torch import nn
from torch.nn.utils import parametrize

from ..errors import ConfigError
from ..spectral.certified import ConvCertifier, check_certifiable, conv_geometry, linear_norm_bound, polyphase_kernel
from ..spectral.power_iteration import conv_forward, conv_power_iteration_nograd
from .base import Regularizer, apply_output_gain
from .spectral_norm import DivideBySigma
from .spectral_norm_conv import conv_input_shapes


class CertifiedConvNorm(nn.Module):
    """Parametrization W -> W / s(W), s a certified bound of |conv(., W)| as applied (module docstring)."""

    def __init__(self, layer: nn.Conv2d, input_shape, tol: float = 0.005, power_iterations: int = 3, eps: float = 1e-12):
        super().__init__()
        w = layer.weight.detach()
        self.input_shape = tuple(int(s) for s in input_shape)
        self.stride, self.padding = tuple(layer.stride), tuple(layer.padding)
        self.tol, self.power_iterations, self.eps = float(tol), int(power_iterations), eps
        kernel, torus, dilation = conv_geometry(layer, self.input_shape, w)
        self._polyphase = kernel.shape[1] != w.shape[1]  # strided: the certificate is on the polyphase kernel
        self._certifier = ConvCertifier(kernel.shape, torus, dilation)
        gen = torch.Generator().manual_seed(0)
        # per-frequency power-iteration vectors (complex, stored as real pairs so checkpoints keep them)
        self.register_buffer("freq_vectors", torch.randn(self._certifier.n_freq, self._certifier.side, 2, generator=gen,
                                                         dtype=torch.float64).to(w.device))
        self.register_buffer("warm", torch.zeros((), dtype=torch.bool, device=w.device))
        out_shape = conv_forward(torch.zeros(1, *self.input_shape, dtype=w.dtype, device=w.device), w, self.stride, self.padding).shape
        u = torch.randn(out_shape, dtype=w.dtype, device=w.device)
        u = u / u.norm().clamp_min(eps)
        self.register_buffer("u", u)
        self.register_buffer("v", torch.zeros(1, *self.input_shape, dtype=w.dtype, device=w.device))
        self.register_buffer("sigma", torch.ones((), dtype=w.dtype, device=w.device))  # the certified bound
        self.register_buffer("sigma_estimate", torch.ones((), dtype=w.dtype, device=w.device))
        self._certified = None  # a copy of the weight the buffers certify

    def certify(self, weight: torch.Tensor) -> None:
        """Recompute the certificate and the power-iteration iterates for ``weight`` (no gradients)."""
        with torch.no_grad():
            w = weight.detach()
            sigma_pi, u, v, _ = conv_power_iteration_nograd(w, self.u, self.input_shape, self.stride, self.padding,
                                                            self.power_iterations, self.eps)
            kernel = polyphase_kernel(w, self.stride) if self._polyphase else w
            self._certifier.x = torch.view_as_complex(self.freq_vectors)  # updated in place
            bound = self._certifier.bound(kernel, tol=self.tol, n_iter=self.power_iterations if bool(self.warm) else 30)
            self.warm.fill_(True)
            self.u.copy_(u)
            self.v.copy_(v)
            self.sigma.fill_(bound)
            if float(self.sigma) < bound:  # float32 storage rounded the certificate down: the next float up
                self.sigma.copy_(torch.nextafter(self.sigma, torch.full_like(self.sigma, float("inf"))))
            self.sigma_estimate.copy_(sigma_pi)
            self._certified = w.clone()

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        with torch.autocast(weight.device.type, enabled=False):
            # compared by value, not by version counter: fused optimizers update in place without bumping it
            done = self._certified
            if done is None or done.shape != weight.shape or done.dtype != weight.dtype or not torch.equal(done, weight.detach()):
                self.certify(weight)
            sigma = self.sigma.to(weight.dtype).clamp_min(self.eps)
            if not (torch.is_grad_enabled() and weight.requires_grad):
                return weight / sigma
            with torch.no_grad():
                ratio = sigma / self.sigma_estimate.clamp_min(self.eps)
                dsigma = torch.nn.grad.conv2d_weight(self.v, weight.shape, self.u, self.stride, self.padding) * ratio
            return DivideBySigma.apply(weight, sigma, None, None, dsigma)

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._certified = None  # loaded weights: certify again on the next forward

    def extra_repr(self) -> str:
        return f"input_shape={self.input_shape}, stride={self.stride}, padding={self.padding}, tol={self.tol}"


class ExactLinearNorm(nn.Module):
    """Parametrization W -> W / |W|_2 for a Linear layer, |W|_2 from a float64 SVD (certified up to
    rounding, src.spectral.certified.linear_norm_bound); gradient u1 v1^T from the same SVD."""

    def __init__(self, eps: float = 1e-12):
        super().__init__()
        self.eps = eps

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        with torch.autocast(weight.device.type, enabled=False), torch.no_grad():
            w64 = weight.detach().double()
            u_, s_, vh = torch.linalg.svd(w64, full_matrices=False)
            bound = linear_norm_bound(weight)
            sigma = torch.tensor(bound, dtype=weight.dtype, device=weight.device).clamp_min(self.eps)
        if not (torch.is_grad_enabled() and weight.requires_grad):
            return weight / sigma
        dsigma = (torch.outer(u_[:, 0], vh[0]) * (bound / max(float(s_[0]), self.eps))).to(weight.dtype)
        return DivideBySigma.apply(weight, sigma, None, None, dsigma)


class CertifiedSpectralNorm(Regularizer):
    name = "sn_gram"
    default_loss = "ns"

    def __init__(self, tol: float = 0.005, power_iterations: int = 3, output_gain: float = 1.0):
        self.require_positive("tol", tol)
        self.require_positive("power_iterations", power_iterations, integer=True)
        self.require_positive("output_gain", output_gain)
        self.tol, self.power_iterations, self.output_gain = float(tol), int(power_iterations), float(output_gain)

    def wrap(self, discriminator: nn.Module, example_input: torch.Tensor) -> None:
        shapes = conv_input_shapes(discriminator, example_input)
        named = {m: n for n, m in discriminator.named_modules()}
        for conv, seen in shapes.items():
            where = f"D.{named[conv]}"
            reason = check_certifiable(conv)
            if reason is None and (conv.padding_mode != "zeros" or isinstance(conv.padding, str)):
                reason = f"padding={conv.padding!r}, padding_mode={conv.padding_mode!r} (sn_gram supports integer zero padding)"
            if reason:
                raise ConfigError(f"regularizer=sn_gram cannot certify {where} ({conv}): {reason}; use regularizer=sn for this architecture")
            if len(seen) != 1:
                what = "never ran" if not seen else f"ran at several input sizes {sorted(seen)}"
                raise ConfigError(f"regularizer=sn_gram cannot certify {where}: it {what} on the example batch, "
                                  "so its operator norm is undefined; use regularizer=sn for this architecture")
        for conv, seen in shapes.items():
            (shape,) = seen
            parametrize.register_parametrization(conv, "weight", CertifiedConvNorm(conv, shape, self.tol, self.power_iterations))
        for layer in [m for m in discriminator.modules() if isinstance(m, nn.Linear)]:
            parametrize.register_parametrization(layer, "weight", ExactLinearNorm())
        apply_output_gain(discriminator, self.output_gain)
