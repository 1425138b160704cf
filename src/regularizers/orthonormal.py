"""Orthonormal regularization (Brock et al. 2017), as a baseline of the SN paper.

wrap: every Linear/Conv2d weight of D initialised orthonormal (nn.init.orthogonal_ on the kernel
reshaped to d_out x d_in k k). penalty: coef * sum over layers of |G - I|_F^2 with G the smaller
Gram matrix: W W^T when d_out < d_in, else W^T W. The two differ only by the constant d_in - d_out
(their trace terms are equal), so the gradient is exactly that of |W^T W - I|_F^2, but the smaller
one is 0 at an orthonormal init and costs min(d_out, d_in)^2 instead of max(...)^2 memory.

coef = 0.01 (our choice: the SN paper does not state its coefficient). Chosen by balancing
gradients on the standard CNN at 32x32 (orthonormal init, NS loss, batch 64): the adversarial
loss's gradient per conv layer has norm 0.02-0.2, and |G - I|_F^2's gradient is 1.2-6.2 when a
layer's weights are 10% (relative Frobenius) away from orthonormal. At coef = 0.01 the two are of
the same order at ~10% deviation, so layers stay near orthonormal without being frozen; at BigGAN's
1e-4 (for its off-diagonal variant) the penalty would be ~100x weaker than the loss and the method
would reduce to orthonormal initialisation. Sweep it with regularizer.coef.
"""
import torch
from torch import nn

from ..spectral.lipschitz import weight_layers
from .base import Regularizer


def gram_deviation(weight: torch.Tensor) -> torch.Tensor:
    """|G - I|_F^2 for the smaller Gram matrix G of the reshaped weight, in float32."""
    m = weight.flatten(1).float()
    d_out, d_in = m.shape
    gram = m @ m.t() if d_out < d_in else m.t() @ m
    eye = torch.eye(gram.shape[0], device=gram.device, dtype=gram.dtype)
    return (gram - eye).pow(2).sum()


class Orthonormal(Regularizer):
    name = "orthonormal"
    default_loss = "ns"

    def __init__(self, coef: float = 0.01):
        self.require_positive("coef", coef)
        self.coef = float(coef)

    def wrap(self, discriminator: nn.Module, example_input: torch.Tensor) -> None:
        with torch.no_grad():
            for layer in weight_layers(discriminator).values():
                nn.init.orthogonal_(layer.weight)

    def penalty(self, discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        layers = list(weight_layers(discriminator).values())
        with torch.autocast(layers[0].weight.device.type, enabled=False):
            return self.coef * sum(gram_deviation(layer.weight) for layer in layers)
