"""Björck-Bowie orthonormalization of every weight matrix of D (Anil, Lucas & Grosse 2019).

Each Linear / Conv2d weight is reparametrized (torch.nn.utils.parametrize) as the orthonormalized
W_mat = W.flatten(1) (d_out x d_in k k for a conv): first scaled by a bound on its largest singular
value, min(|W|_F, sqrt(|W|_1 |W|_inf)) >= sigma_max, so every singular value lies in (0, 1], then
``iterations`` steps of the first-order Björck iteration

    W <- W (3/2 I - 1/2 W^T W)

which maps each singular value s to s (3 - s^2) / 2: fixed point 1, quadratic convergence near it,
x1.5 per step for small s. A wide matrix gets orthonormal rows and a tall one orthonormal columns:
every singular value of W_mat converges to 1. The iteration runs on the smaller Gram side (m x m
matrices, see ``bjorck_orthonormalize``): the same iterates, several times cheaper for conv kernels.
The iterations are differentiated through by autograd, as in the paper; they run in float32 even
under mixed precision.

wrap also initialises each raw weight orthogonally (nn.init.orthogonal_ on W_mat), as Anil et al.
do: the iteration then starts converged. From a random square matrix the smallest singular value
after scaling can be ~1e-4, which needs ~25 steps to reach 1 (x1.5 per step).

What it bounds: a Linear layer's norm is exactly 1 (all singular values 1). For a convolution it
orthonormalizes the reshaped matrix, not the operator. Each output pixel is W_mat times a patch, so
|conv(x)|^2 <= |W_mat|^2 sum_i cover(i) x_i^2, with cover(i) the number of patches holding input
pixel i (at most ceil(k / stride)^2): the conv's norm is at most ceil(k / stride), and equals it
when W_mat is tall (its taps are then mutually orthogonal and the bound is an equality: the
standard CNN's first layer, 64 x 27, has norm exactly 3). Wide kernels land in between (1.34-2.22
on the standard CNN at init; python -m src.analysis.bjorck_conv_norms). So the network is not
1-Lipschitz nor gradient-norm preserving; a certified conv bound needs sn_conv / sn_gram / aol.
"""
import torch
from torch import nn
from torch.nn.utils import parametrize

from ..spectral.lipschitz import weight_layers
from .base import Regularizer


def scale_bound(w: torch.Tensor) -> torch.Tensor:
    """An upper bound on sigma_max(w): min(Frobenius, sqrt(|w|_1 |w|_inf)) (Hölder: sigma^2 <= |w|_1 |w|_inf)."""
    a = w.abs()
    holder = (a.sum(0).max() * a.sum(1).max()).sqrt()
    return torch.minimum(torch.linalg.matrix_norm(w), holder)


def bjorck_orthonormalize(w: torch.Tensor, iterations: int = 20, eps: float = 1e-12) -> torch.Tensor:
    """The closest orthonormal matrix to the 2-D ``w`` (its polar factor), by first-order Björck
    iteration after scaling; differentiable.

    Run in the space of the smaller Gram matrix: with w wide (a tall one is transposed), every
    iterate is W_k = P_k W_0 for an m x m matrix P_k (m = the smaller side), and
    W_k W_k^T W_k = P_k G P_k^T P_k W_0 with G = W_0 W_0^T, so
    P_{k+1} = 3/2 P_k - 1/2 (P_k G P_k^T) P_k gives exactly the iterates of W <- W (3/2 I - 1/2 W^T W)
    at 3 m^3 per step instead of 2 m^2 n: with 20 steps and the one-time G and P W products, 2.6x
    fewer operations for the standard CNN's 512 x 2304 kernel, 7x for 256 x 4096 (and for their
    gradients). Used when 3 m < 2 n; near-square matrices iterate on W directly.
    """
    tall = w.shape[0] > w.shape[1]
    if tall:
        w = w.t()
    w = w / scale_bound(w).clamp_min(eps)
    m, n = w.shape
    if 3 * m < 2 * n:  # Gram space is cheaper
        gram = w @ w.t()
        p = torch.eye(m, device=w.device, dtype=w.dtype)
        for _ in range(iterations):
            p = 1.5 * p - 0.5 * ((p @ gram) @ p.t()) @ p
        w = p @ w
    else:  # near-square: iterate on W itself (also better conditioned: G squares W's condition number)
        for _ in range(iterations):
            w = 1.5 * w - 0.5 * (w @ w.t()) @ w
    return w.t() if tall else w


class BjorckOrthonormal(nn.Module):
    """Parametrization W -> bjorck_orthonormalize(W.flatten(1)) reshaped back to the kernel's shape."""

    def __init__(self, iterations: int = 20):
        super().__init__()
        self.iterations = iterations

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        with torch.autocast(weight.device.type, enabled=False):  # float32 at least (float64 stays float64)
            w = bjorck_orthonormalize(weight.to(torch.promote_types(weight.dtype, torch.float32)).flatten(1), self.iterations)
        return w.to(weight.dtype).reshape(weight.shape)

    def extra_repr(self) -> str:
        return f"iterations={self.iterations}"


class Bjorck(Regularizer):
    name = "bjorck"
    default_loss = "ns"

    def __init__(self, iterations: int = 20):
        self.require_positive("iterations", iterations, integer=True)
        self.iterations = int(iterations)

    def wrap(self, discriminator: nn.Module, example_input: torch.Tensor) -> None:
        for layer in weight_layers(discriminator).values():
            with torch.no_grad():
                nn.init.orthogonal_(layer.weight)  # start at the fixed point (Anil et al.)
            parametrize.register_parametrization(layer, "weight", BjorckOrthonormal(self.iterations))
