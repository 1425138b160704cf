"""Power iteration for a layer's spectral norm: on the reshaped kernel, or on the convolution itself.

* reshaped: the kernel W (c_out, c_in, k, k) viewed as a c_out x (c_in k k) matrix (Miyato et al.);
  cheap, but its norm is not the operator norm of the convolution as applied.
* conv-true: the linear map x -> conv2d(x, W) with the layer's stride and padding at its input size;
  the adjoint is torch's own conv2d input-gradient (exact for any stride/padding), so the iteration
  converges to the operator norm of the layer as applied (Gouk et al. 2018 do the same).

Both return the iterates so callers (SN parametrizations, the spectral callback) can keep them.
"""
import torch
import torch.nn.functional as F


def _normalize(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    return x / x.norm().clamp_min(eps)


def reshaped_power_iteration(weight_mat: torch.Tensor, u: torch.Tensor, n_iter: int = 1, v: torch.Tensor | None = None):
    """n_iter steps of v <- W^T u / |.|, u <- W v / |.| on a (d_out, d_in) matrix.

    Returns (sigma, u, v) with sigma = u^T W v, differentiable in W when W requires grad
    (u and v are treated as constants, as in Miyato et al.).
    """
    with torch.no_grad():
        for _ in range(n_iter):
            v = _normalize(weight_mat.t() @ u)
            u = _normalize(weight_mat @ v)
        if v is None:  # n_iter == 0 and no v given: derive it from u
            v = _normalize(weight_mat.t() @ u)
    sigma = torch.dot(u, weight_mat @ v)
    return sigma, u, v


def conv_forward(x: torch.Tensor, weight: torch.Tensor, stride, padding) -> torch.Tensor:
    return F.conv2d(x, weight, None, stride, padding)


def conv_adjoint(y: torch.Tensor, weight: torch.Tensor, input_shape, stride, padding) -> torch.Tensor:
    """The transpose of the linear map x -> conv2d(x, weight) (bias excluded), applied to y."""
    return torch.nn.grad.conv2d_input(tuple(input_shape), weight, y, stride, padding)


def conv_power_iteration(weight: torch.Tensor, v: torch.Tensor, stride, padding, n_iter: int = 1):
    """Power iteration on the convolution operator, x of shape (1, c_in, H, W).

    ``v`` is the current input-space iterate (1, c_in, H, W). Each step: u <- A v / |.|,
    v <- A^T u / |.|. Returns (sigma, v, u) with sigma = u^T A v = <u, conv(v)>, differentiable in
    ``weight`` (v, u constant).
    """
    with torch.no_grad():
        u = None
        for _ in range(max(n_iter, 0)):
            u = _normalize(conv_forward(v, weight, stride, padding))
            v = _normalize(conv_adjoint(u, weight, v.shape, stride, padding))
        u = _normalize(conv_forward(v, weight, stride, padding))
    sigma = (u * conv_forward(v, weight, stride, padding)).sum()
    return sigma, v, u
