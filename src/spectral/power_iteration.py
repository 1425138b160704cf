"""Power iteration for a layer's spectral norm: on the reshaped kernel, or on the convolution itself.

* reshaped: the kernel W (c_out, c_in, k, k) viewed as a c_out x (c_in k k) matrix (Miyato et al.);
  cheap, but its norm is not the operator norm of the convolution as applied.
* conv-true: the linear map x -> conv2d(x, W) with the layer's stride and padding at its input size;
  the adjoint is torch's own conv2d input-gradient (exact for any stride/padding), so the iteration
  converges to the operator norm of the layer as applied (Gouk et al. 2018 do the same).

Both return the iterates so callers (SN parametrizations, the spectral callback) can keep them.

Whole layers: ``LayerOperator(layer, input_shape)`` is the linear map of an nn.Linear / nn.Conv2d as
applied (any stride, padding, padding_mode, dilation, groups; bias excluded) with ``apply``,
``adjoint`` and ``dense``. ``operator_power_iteration`` warm-starts from a
returned iterate; ``power_iteration_trace`` and ``reshaped_power_iteration_trace`` give the estimate
after every iteration; ``operator_norm`` converges (Lanczos via scipy, or power iteration).
"""
import copy
import math

import torch
import torch.nn.functional as F
from torch import nn


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


# ---- layer operators (additions) -------------------------------------------------------------------------
# The functions above take raw tensors (they are shared with the SN parametrizations). The ones below
# take a whole nn.Linear / nn.Conv2d plus the input shape it is applied at, and serve the analysis
# tools: warm-startable power iteration, per-iteration traces, and converged norms.


class LayerOperator:
    """The linear map of a Linear or Conv2d layer as applied (bias excluded), on inputs of one shape.

    ``weight`` is a fixed tensor (by default ``layer.weight`` read once, so for parametrized layers the
    effective weight; read it with the module in eval mode so an SN parametrization does not run an
    extra power iteration). ``input_shape`` excludes the batch dimension: (d_in,) or (C, H, W).
    Handles any stride, padding (ints or 'same'/'valid'), padding_mode, dilation and groups.
    """

    def __init__(self, layer: nn.Module, input_shape, weight: torch.Tensor | None = None):
        if not isinstance(layer, (nn.Linear, nn.Conv2d)):
            raise TypeError(f"LayerOperator takes nn.Linear or nn.Conv2d, not {type(layer).__name__}")
        with torch.no_grad():
            self.weight = (layer.weight if weight is None else weight).detach()
        self.kind = "linear" if isinstance(layer, nn.Linear) else "conv"
        self.input_shape = tuple(int(s) for s in input_shape)
        if self.kind == "conv":
            self.stride, self.dilation, self.groups = tuple(layer.stride), tuple(layer.dilation), layer.groups
            self.padding_mode = layer.padding_mode
            # explicit (left, right, top, bottom) amounts; covers 'same' (possibly asymmetric) and 'valid'
            self._pad = tuple(layer._reversed_padding_repeated_twice)
            symmetric = self._pad[0] == self._pad[1] and self._pad[2] == self._pad[3]
            # zero padding with symmetric amounts: torch's conv2d_input is the exact adjoint, no autograd
            self._fast = self.padding_mode == "zeros" and symmetric
            self.padding = (self._pad[2], self._pad[0])
            self.output_shape = tuple(self.apply(torch.zeros(1, *self.input_shape, dtype=self.weight.dtype, device=self.weight.device)).shape[1:])
        else:
            if self.input_shape != (self.weight.shape[1],):
                raise ValueError(f"Linear layer with {self.weight.shape[1]} inputs cannot take input shape {self.input_shape}")
            self.output_shape = (self.weight.shape[0],)

    @property
    def in_numel(self) -> int:
        return math.prod(self.input_shape)

    @property
    def out_numel(self) -> int:
        return math.prod(self.output_shape)

    def cast(self, dtype=None, device=None) -> "LayerOperator":
        """A copy whose weight has the given dtype / device."""
        new = copy.copy(self)
        new.weight = self.weight.to(dtype=dtype, device=device)
        return new

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """A x for a batch x of shape (B, *input_shape)."""
        if self.kind == "linear":
            return x @ self.weight.t()
        if self._fast:
            return F.conv2d(x, self.weight, None, self.stride, self.padding, self.dilation, self.groups)
        mode = "constant" if self.padding_mode == "zeros" else self.padding_mode
        return F.conv2d(F.pad(x, self._pad, mode=mode), self.weight, None, self.stride, 0, self.dilation, self.groups)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """A^T y for a batch y of shape (B, *output_shape)."""
        if self.kind == "linear":
            return y @ self.weight
        shape = (y.shape[0], *self.input_shape)
        if self._fast:
            return torch.nn.grad.conv2d_input(shape, self.weight, y, self.stride, self.padding, self.dilation, self.groups)
        # other padding modes: the map is linear, so the gradient of <A x, y> in x is A^T y at any x
        with torch.enable_grad():
            x = torch.zeros(shape, dtype=y.dtype, device=y.device, requires_grad=True)
            (g,) = torch.autograd.grad(self.apply(x), x, y)
        return g

    def dense(self, chunk: int = 4096) -> torch.Tensor:
        """The explicit (out_numel, in_numel) matrix, column j = A e_j (for small sizes only)."""
        n = self.in_numel
        cols = []
        for start in range(0, n, chunk):
            m = min(chunk, n - start)
            basis = torch.zeros(m, n, dtype=self.weight.dtype, device=self.weight.device)
            basis[torch.arange(m), torch.arange(start, start + m)] = 1.0
            cols.append(self.apply(basis.view(m, *self.input_shape)).reshape(m, -1))
        return torch.cat(cols).t()

    def random_input(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """A random unit vector of shape (1, *input_shape)."""
        v = torch.randn((1, *self.input_shape), generator=generator, dtype=self.weight.dtype, device="cpu" if generator is None else generator.device)
        return _normalize(v.to(self.weight.device))


def operator_power_iteration(op: LayerOperator, v: torch.Tensor | None = None, n_iter: int = 1, generator: torch.Generator | None = None):
    """n_iter steps u <- A v / |.|, v <- A^T u / |.| from v (random when None); no gradients.

    Returns (sigma, v, u) with sigma = |A v| for the final unit v: a lower bound on |A| that
    increases monotonically to it. Pass the returned v back in to warm-start the next call.
    """
    with torch.no_grad():
        v = op.random_input(generator) if v is None else _normalize(v.to(op.weight.dtype))
        for _ in range(max(int(n_iter), 0)):
            v = _normalize(op.adjoint(_normalize(op.apply(v))))
        av = op.apply(v)
        sigma = av.norm()
        return sigma, v, _normalize(av)


def power_iteration_trace(op: LayerOperator, n_iter: int, v: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """The estimate |A v_t| after each of t = 1..n_iter iterations (a 1-D tensor)."""
    out = []
    with torch.no_grad():
        v = op.random_input(generator) if v is None else _normalize(v)
        for _ in range(n_iter):
            v = _normalize(op.adjoint(_normalize(op.apply(v))))
            out.append(op.apply(v).norm())
    return torch.stack(out)


def reshaped_power_iteration_trace(weight: torch.Tensor, n_iter: int, u: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Miyato's estimate u^T W_mat v after each of t = 1..n_iter iterations, W_mat = weight.flatten(1)."""
    w = weight.detach().flatten(1)
    u = _normalize(torch.randn(w.shape[0], generator=generator, dtype=w.dtype)) if u is None else u
    out = []
    with torch.no_grad():
        for _ in range(n_iter):
            sigma, u, _ = reshaped_power_iteration(w, u, 1)
            out.append(sigma)
    return torch.stack(out)


def operator_norm(op: LayerOperator, tol: float = 1e-7, max_iter: int = 10000, method: str = "lanczos",
                  v: torch.Tensor | None = None, generator: torch.Generator | None = None) -> float:
    """The operator norm |A|_2 to relative accuracy ~tol (computed in float64).

    method="lanczos": ARPACK (scipy eigsh) on A^T A, which converges even when the top singular
    values are clustered, as they are for convolutions at large input sizes. method="power": plain
    power iteration until the estimate changes by less than tol (relative) for 10 iterations; it can
    stop early on a clustered spectrum, so it is a lower bound, not a certificate.
    """
    op64 = op.cast(torch.float64)
    if method == "power":
        v = op64.random_input(generator) if v is None else v.double()
        sigma_prev, still = 0.0, 0
        for _ in range(max_iter):
            sigma, v, _ = operator_power_iteration(op64, v, 1)
            sigma = float(sigma)
            still = still + 1 if abs(sigma - sigma_prev) <= tol * sigma else 0
            if still >= 10:
                break
            sigma_prev = sigma
        return sigma
    if method != "lanczos":
        raise ValueError(f"method must be 'lanczos' or 'power', not {method!r}")
    import numpy as np
    from scipy.sparse.linalg import LinearOperator, eigsh

    n = op64.in_numel
    if n <= 2:  # ARPACK needs k < n
        return float(torch.linalg.matrix_norm(op64.dense(), 2))

    def gram(x):
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64)).view(1, *op64.input_shape).to(op64.weight.device)
        return op64.adjoint(op64.apply(t)).reshape(-1).cpu().numpy()

    start = (op64.random_input(generator) if v is None else v.double()).reshape(-1).cpu().numpy()
    lam = eigsh(LinearOperator((n, n), matvec=gram, dtype=np.float64), k=1, which="LA", tol=tol, v0=start,
                maxiter=max_iter, return_eigenvectors=False)
    return float(math.sqrt(max(float(lam[0]), 0.0)))


# ---- SN parametrizations' iterations (additions) -----------------------------------------------------------
# No autograd at all: the SN parametrizations supply d sigma / dW themselves (src/regularizers/
# spectral_norm.py), which saves a differentiable matrix-vector product / convolution per layer per step.


def reshaped_power_iteration_nograd(weight_mat: torch.Tensor, u: torch.Tensor, n_iter: int = 1, eps: float = 1e-12):
    """Miyato's n_iter >= 1 steps v <- W^T u / |.|, u <- W v / |.| on a (d_out, d_in) matrix, no gradients.

    Returns (sigma, u, v) with sigma = u^T W v = |W v| (a detached scalar); d sigma / dW = u v^T.
    """
    with torch.no_grad():
        for _ in range(max(int(n_iter), 1)):
            v = _normalize(weight_mat.t() @ u, eps)
            wv = weight_mat @ v
            sigma = wv.norm()
            u = wv / sigma.clamp_min(eps)
    return sigma, u, v


def conv_power_iteration_nograd(weight: torch.Tensor, u: torch.Tensor, input_shape, stride, padding, n_iter: int = 1, eps: float = 1e-12):
    """Miyato's order on the convolution operator A = conv2d(., weight) at input_shape (C, H, W), no gradients.

    ``u`` is the output-space iterate (1, c_out, H', W'). n_iter >= 1 steps v <- A^T u / |.|,
    u <- A v / |.|. Returns (sigma, u, v, dsigma) with sigma = <u, A v> = |A v| (detached) and
    dsigma = d<u, A(W) v>/dW for fixed u, v (torch's conv weight-gradient), the gradient of sigma.
    """
    with torch.no_grad():
        for _ in range(max(int(n_iter), 1)):
            v = _normalize(conv_adjoint(u, weight, (1, *input_shape), stride, padding), eps)
            av = conv_forward(v, weight, stride, padding)
            sigma = av.norm()
            u = av / sigma.clamp_min(eps)
        dsigma = torch.nn.grad.conv2d_weight(v, weight.shape, u, stride, padding)
    return sigma, u, v, dsigma
