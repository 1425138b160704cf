"""Exact singular values of convolutions and layers.

Which method is exact when (input n x n, kernel k x k, c_out x c_in channels):

* ``conv_singular_values_fft`` (Sedghi, Gupta & Long, ICLR 2019): the kernel zero-padded to n x n and
  transformed by a 2-D FFT gives one c_out x c_in matrix per frequency; the union of their singular
  values is the spectrum of the convolution. EXACT for circular padding (padding_mode="circular")
  of the kernel's reach ((k - 1) * dilation in total per axis, so the output has the input's size;
  how it is split between the sides is a circular shift, which is unitary) and stride 1
  (``fft_is_exact``). torch's conv2d is a cross-correlation; that conjugates each frequency
  matrix, which leaves singular values unchanged.
  Kernels are real, so frequencies w and -w give conjugate matrices: only the rfft2 half is
  decomposed and the interior columns are counted twice.
* zero padding p, or any stride: the layer as applied is a restriction (rows dropped by the stride,
  border inputs fixed to zero) of a circular convolution on an (n + 2p) torus (``torus_size``), so
  ``conv_norm_bound_fft`` (the largest FFT singular value at the torus size) is a rigorous UPPER
  bound on the operator norm, not the norm. The exact spectrum then comes from the dense operator
  (``layer_singular_values(..., method="dense")``, small sizes only: the matrix has
  (c_out h_out w_out) x (c_in n n) entries) and the exact norm from a converged iteration
  (``power_iteration.operator_norm``, Lanczos).
* the reshaped matrix W_mat = W.flatten(1) (``reshaped_singular_values``) is what Miyato's SN
  normalizes; for a convolution its norm is not the operator norm: |conv| <= k |W_mat| (stride 1,
  circular; the frequency matrix is W_mat times a (c_in k^2) x c_in matrix of unit phases whose norm
  is k), and both directions of the gap occur in practice (see docs/findings.md).
"""
import torch
from torch import nn

from .power_iteration import LayerOperator


def _fold_kernel(weight: torch.Tensor, size, dilation) -> torch.Tensor:
    """The kernel's taps placed at (a * dilation) mod n on an n x n grid (summed where they wrap)."""
    c_out, c_in, kh, kw = weight.shape
    h, w = size
    dh, dw = dilation
    if kh * dh <= h and kw * dw <= w and dh == dw == 1:
        return weight  # the FFT's own zero padding (s=(h, w)) does the rest
    out = weight.new_zeros(c_out, c_in, h, w)
    for a in range(kh):
        for b in range(kw):
            out[:, :, (a * dh) % h, (b * dw) % w] += weight[:, :, a, b]
    return out


def frequency_matrices(weight: torch.Tensor, input_size, dilation=1, real: bool = True) -> torch.Tensor:
    """The per-frequency c_out x c_in matrices of a circular convolution: (h, w or w//2+1, c_out, c_in)."""
    size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    dilation = (dilation, dilation) if isinstance(dilation, int) else tuple(dilation)
    k = _fold_kernel(weight, size, dilation)
    spec = torch.fft.rfft2(k, s=size) if real else torch.fft.fft2(k, s=size)
    return spec.permute(2, 3, 0, 1)


def batched_svdvals(mats: torch.Tensor, method: str = "svd", chunk: int = 64) -> torch.Tensor:
    """Singular values (descending) of a batch of matrices (B, m, n), in chunks of ``chunk``.

    method="svd": torch.linalg.svdvals (accurate to ~eps * sigma_1 for every value). "gram":
    eigvalsh of the smaller Gram matrix, about half the flops, but small sigma_i are only accurate to
    ~sqrt(eps) * sigma_1 (squaring loses them); compute in float64 when that matters.
    """
    if method not in ("svd", "gram"):
        raise ValueError(f"method must be 'svd' or 'gram', not {method!r}")
    out = []
    for start in range(0, mats.shape[0], chunk):  # bounded memory for the Gram matrices
        m = mats[start:start + chunk]
        if method == "svd":
            out.append(torch.linalg.svdvals(m))
        else:
            g = m.mH @ m if m.shape[-1] <= m.shape[-2] else m @ m.mH
            out.append(_eigvals_to_svdvals(torch.linalg.eigvalsh(g)))
    return torch.cat(out)


def _eigvals_to_svdvals(lam: torch.Tensor) -> torch.Tensor:
    return lam.clamp_min(0).sqrt().flip(-1)


def _tap_positions(weight: torch.Tensor, size, dilation):
    """(taps (T, c_out, c_in), positions (T, 2) on the h x w torus) of the kernel's nonzero taps."""
    c_out, c_in, kh, kw = weight.shape
    pos = torch.tensor([[(a * dilation[0]) % size[0], (b * dilation[1]) % size[1]] for a in range(kh) for b in range(kw)])
    return weight.permute(2, 3, 0, 1).reshape(kh * kw, c_out, c_in), pos


def _map_chunks(fn, starts, workers: int) -> list:
    """fn over chunk starts, on ``workers`` threads each running single-threaded torch ops.

    Many small LAPACK calls parallelize far better across matrices than inside each one (2 cores:
    ~2x, against ~1.4x from MKL's own threads on a 512 x 512 eigvalsh).
    """
    if workers <= 1 or len(starts) <= 1:
        return [fn(s) for s in starts]
    from concurrent.futures import ThreadPoolExecutor

    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(fn, starts))
    finally:
        torch.set_num_threads(prev)


def _structured_gram_eigvals(weight: torch.Tensor, size, dilation, chunk: int = 32, workers: int | None = None) -> torch.Tensor:
    """Eigenvalues (ascending) of K(w)^H K(w) (or K K^H on the smaller side) for the rfft2 frequencies.

    With taps W_t at positions p_t, K(w) = sum_t W_t e^{-2 pi i <w, p_t>/n}, so the Gram matrix is
    sum_d M_d e^{-2 pi i <w, d>/n} over the distinct differences d = p_t' - p_t, with the real matrices
    M_d = sum_{p_t' - p_t = d} W_t^T W_t'. For a 3x3 kernel: 81 real products once (one matmul) and
    25 terms per frequency, instead of one complex c x c x c product per frequency.
    """
    taps, pos = _tap_positions(weight, size, dilation)
    n_taps, c_out, c_in = taps.shape
    h, w = size
    if c_out < c_in:  # work on the smaller side: K K^H = sum W_t W_t'^T e^{-i<w, p_t - p_t'>}
        taps, sign = taps.transpose(1, 2), -1
    else:
        sign = 1
    c = taps.shape[2]
    stacked = taps.permute(1, 0, 2).reshape(taps.shape[1], n_taps * c)  # (rows, T c)
    pairs = (stacked.t() @ stacked).view(n_taps, c, n_taps, c).permute(0, 2, 1, 3)  # [t, t'] = W_t^T W_t'
    diffs = sign * (pos[None, :, :] - pos[:, None, :])  # [t, t'] = p_t' - p_t (or its negative)
    keys, inverse = torch.unique(diffs.reshape(-1, 2), dim=0, return_inverse=True)
    m = taps.new_zeros(len(keys), c, c).index_add_(0, inverse, pairs.reshape(-1, c, c))
    fu = torch.arange(h, dtype=torch.float64)
    fv = torch.arange(w // 2 + 1, dtype=torch.float64)
    theta = -2 * torch.pi * (fu[:, None, None] * keys[:, 0] / h + fv[None, :, None] * keys[:, 1] / w)  # (h, wr, D)
    theta = theta.reshape(-1, len(keys))
    cos, sin = theta.cos().to(m.dtype), theta.sin().to(m.dtype)
    flat = m.reshape(len(keys), -1)

    def block(start):  # (chunk, c, c) Gram matrices at a time: bounded memory
        g = torch.complex(cos[start:start + chunk] @ flat, sin[start:start + chunk] @ flat).view(-1, c, c)
        return torch.linalg.eigvalsh(g)

    out = _map_chunks(block, list(range(0, theta.shape[0], chunk)), torch.get_num_threads() if workers is None else workers)
    return torch.cat(out).view(h, w // 2 + 1, c)


def conv_singular_values_fft(weight: torch.Tensor, input_size, dilation=1, method: str = "svd",
                             full: bool = True, sort: bool = True, workers: int | None = None):
    """All singular values of the circular, stride-1 convolution with ``weight`` on h x w inputs.

    ``input_size``: n or (h, w). ``method``: "svd" (batched svdvals of the rfft2 frequency matrices;
    accurate) or "gram" (eigvalsh of Gram matrices assembled from the kernel's tap products, the fast
    path for small kernels; small sigma_i accurate to ~sqrt(eps) * sigma_1 only, see batched_svdvals).
    ``full=True`` returns the whole spectrum, min(c_out, c_in) * h * w values (the frequency pairs w,
    -w expanded), sorted descending when ``sort``; ``full=False`` returns (values, multiplicity):
    the rfft2 half as a (h, w//2+1, min(c_out, c_in)) tensor and how often each column counts.
    Runs in the dtype of ``weight`` (float64 for reference values). "gram" spreads the frequencies
    over ``workers`` threads (default: torch.get_num_threads()).
    """
    size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    dil = (dilation, dilation) if isinstance(dilation, int) else tuple(dilation)
    weight = weight.detach()
    h, w = size
    wr = w // 2 + 1
    if method == "gram" and weight.shape[2] * weight.shape[3] <= 64:
        vals = _eigvals_to_svdvals(_structured_gram_eigvals(weight, size, dil, workers=workers))
    else:
        spec = frequency_matrices(weight, size, dil)
        vals = batched_svdvals(spec.reshape(h * wr, *spec.shape[2:]), method).view(h, wr, -1)
    mult = torch.ones(wr, dtype=torch.long)
    mult[1:(w + 1) // 2] = 2  # columns whose conjugate partner (w - j) is not stored by rfft2
    if not full:
        return vals, mult
    vals = torch.repeat_interleave(vals, mult.to(vals.device), dim=1).reshape(-1)
    return torch.sort(vals, descending=True).values if sort else vals


def conv_norm_fft(weight: torch.Tensor, input_size, dilation=1) -> float:
    """The operator norm of the circular stride-1 convolution (exact; see the module docstring)."""
    vals, _ = conv_singular_values_fft(weight, input_size, dilation, full=False)
    return float(vals.max())


def torus_size(layer: nn.Conv2d, input_shape) -> tuple:
    """The torus on which ``layer`` as applied is a restriction of a circular convolution.

    Zero padding: the padded input (h + pad_top + pad_bottom, w + pad_left + pad_right); circular
    padding: the input itself, provided the output is no larger than the input (more circular
    padding than (k - 1) * dilation repeats output rows: no such torus). Reflect / replicate padding
    repeat inputs: none either.
    """
    _, h, w = input_shape
    left, right, top, bottom = layer._reversed_padding_repeated_twice
    if layer.padding_mode == "zeros":
        return (h + top + bottom, w + left + right)
    if layer.padding_mode == "circular":
        (kh, kw), (dh, dw) = layer.kernel_size, layer.dilation
        if top + bottom > (kh - 1) * dh or left + right > (kw - 1) * dw:
            raise NotImplementedError("circular padding wider than the kernel's reach repeats output rows")
        return (h, w)
    raise NotImplementedError(f"padding_mode={layer.padding_mode!r} has no circular embedding")


def fft_is_exact(layer: nn.Conv2d) -> bool:
    """True when the FFT spectrum is the layer's exact spectrum: circular padding of exactly the
    kernel's reach ((k - 1) * dilation in total per axis, output size = input size), stride 1."""
    left, right, top, bottom = layer._reversed_padding_repeated_twice
    (kh, kw), (dh, dw) = layer.kernel_size, layer.dilation
    return (layer.padding_mode == "circular" and tuple(layer.stride) == (1, 1) and layer.groups == 1
            and top + bottom == (kh - 1) * dh and left + right == (kw - 1) * dw)


def layer_fft_spectrum(layer: nn.Conv2d, input_shape, weight: torch.Tensor | None = None, method: str = "svd") -> torch.Tensor:
    """The FFT spectrum (descending) of the circular stride-1 convolution on ``torus_size``.

    The layer's exact spectrum when it is circular with stride 1; otherwise the spectrum of the
    circular operator it is a restriction of (its largest value bounds the layer's norm).
    """
    if layer.groups != 1:
        raise NotImplementedError("grouped convolutions")
    w = (layer.weight if weight is None else weight).detach()
    return conv_singular_values_fft(w, torus_size(layer, input_shape), layer.dilation, method=method)


def conv_norm_bound_fft(layer: nn.Conv2d, input_shape, weight: torch.Tensor | None = None) -> float:
    """A rigorous upper bound on |conv| of a Conv2d as applied (any padding amount and stride): the
    FFT norm on ``torus_size``. Equal to the norm for circular padding and stride 1."""
    if layer.groups != 1:
        raise NotImplementedError("grouped convolutions")
    w = (layer.weight if weight is None else weight).detach()
    return conv_norm_fft(w, torus_size(layer, input_shape), layer.dilation)


def reshaped_singular_values(weight: torch.Tensor, method: str = "gram") -> torch.Tensor:
    """Singular values of W_mat = weight.flatten(1) (Miyato's reshaped kernel), descending, float64.

    "gram": eigvalsh of the smaller float64 Gram matrix (about 10x faster than an SVD of a wide
    c_out x c_in k^2 matrix; sigma_i accurate to ~1e-8 sigma_1); "svd": svdvals in float64.
    """
    m = weight.detach().flatten(1).double()
    if method == "svd":
        return torch.linalg.svdvals(m)
    if method != "gram":
        raise ValueError(f"method must be 'gram' or 'svd', not {method!r}")
    g = m @ m.t() if m.shape[0] <= m.shape[1] else m.t() @ m
    return _eigvals_to_svdvals(torch.linalg.eigvalsh(g))


def layer_singular_values(layer: nn.Module, input_shape, method: str = "auto", weight: torch.Tensor | None = None,
                          max_dense: int = 8192) -> torch.Tensor:
    """Exact singular values of a Linear / Conv2d as applied at ``input_shape`` (C, H, W) or (d,).

    method="fft": only for circular padding and stride 1 (raises otherwise); "dense": SVD of the
    explicit matrix (refuses more than ``max_dense`` inputs or outputs); "auto": FFT when exact,
    else dense. Linear layers: the SVD of the weight.
    """
    w = (layer.weight if weight is None else weight).detach()
    if isinstance(layer, nn.Linear):
        return torch.linalg.svdvals(w)
    fft_exact = fft_is_exact(layer)
    if method == "auto":
        method = "fft" if fft_exact else "dense"
    if method == "fft":
        if not fft_exact:
            raise ValueError("the FFT spectrum is exact only for circular 'same' padding and stride 1; use method='dense'")
        return conv_singular_values_fft(w, tuple(input_shape[1:]), layer.dilation)
    if method != "dense":
        raise ValueError(f"method must be 'auto', 'fft' or 'dense', not {method!r}")
    op = LayerOperator(layer, input_shape, w)
    if max(op.in_numel, op.out_numel) > max_dense:
        raise ValueError(f"dense operator of {op.out_numel} x {op.in_numel} is too large (max_dense={max_dense}); "
                         "use power_iteration.operator_norm for the norm")
    return torch.linalg.svdvals(op.dense())


__all__ = ["batched_svdvals", "fft_is_exact", "conv_norm_bound_fft", "layer_fft_spectrum", "torus_size", "conv_norm_fft", "conv_singular_values_fft", "frequency_matrices",
           "layer_singular_values", "reshaped_singular_values"]
