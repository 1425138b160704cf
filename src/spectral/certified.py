"""Certified upper bounds on the operator norm of Linear / Conv2d layers AS APPLIED, and D's certified
Lipschitz bound.

A certified bound is never below the true norm (unlike a power-iteration estimate, which approaches it
from below). For a Conv2d with input n x m, zero padding p and any stride:

1. The layer is a restriction of the circular, stride-1 convolution on the padded torus
   (n + p_top + p_bottom) x (m + p_left + p_right) (``exact.torus_size``): the padded input embeds
   isometrically, the outputs the layer keeps are a subset of the circular ones (no valid output wraps),
   and a stride drops more of them (a norm <= 1 selection). So |layer| <= |circular conv on the torus|.
2. The circular convolution is block-diagonalized by the 2-D DFT: its norm is max over the torus
   frequencies w of sigma_1(K(w)), K(w) the c_out x c_in frequency matrix (Sedghi et al. 2019). Its
   Gram matrix G(w) = K(w)^H K(w) (on the smaller channel side) is assembled from the real tap
   products M_d = sum_{p_t' - p_t = d} W_t^T W_t' (one matmul) as sum_d M_d e^{-2 pi i <w, d>/N}.
3. Per frequency, lambda_max(G(w)) <= mu is CERTIFIED by a successful float64 Cholesky factorization
   of mu I - G(w) (positive definite <=> every eigenvalue of G(w) is below mu), with mu chosen from a
   power-iteration estimate: mu = (max_w estimate (1 + tol))^2, raised by (1 + tol)^2 for the
   frequencies where the factorization fails, until all succeed. The bound is then at most
   (1 + tol) above the circular norm (mu starts above an under-estimate and only grows past a
   failure, i.e. past a true eigenvalue), and a Cholesky costs a third of one Gram-iteration step.
   ``method="gram"`` instead runs the Gram iteration per frequency (Delattre et al. 2023):
   ||G||_2 <= ||G^(2^t)||_F^(1/2^t), with the iterate rescaled to unit Frobenius norm every step and
   the logarithms of the scales accumulated, so nothing overflows.

Rounding (why the float64 numbers certify): a Cholesky factorization that completes in floating
point is the exact factorization of A + E with |E| <= gamma_{c+1} |R^H| |R| (Higham, "Accuracy and
Stability of Numerical Algorithms", Thm 10.3); so lambda_min(A) >= -gamma/(1 - gamma) tr(A), and we
add eps_chol = 4 gamma/(1 - 4 gamma) tr(mu I - G) (the 4 covers complex arithmetic) to mu. G itself
is computed with an error ||E_G||_2 <= ||E_G||_F <= 4 (c_out + D + 16) u (sum_t ||W_t||_F)^2 (a
matmul of c_out terms, a sum of D phase-weighted matrices), which is added too. In float64 both
are ~1e-12 relative; the Gram iteration gets a relative margin of 1e-9 for the same reasons. Linear
layers: the float64 SVD's sigma_1 (backward stable: within p(n) u ||W|| of the exact value) plus a
margin of 64 max(d_out, d_in) u ||W||_F.
"""
import math

import torch
from torch import nn

from .exact import torus_size

U64 = 2.0 ** -53  # float64 unit roundoff
SAMPLE = 8  # frequencies (times two) where a cold certifier's power iteration runs (ConvCertifier.bound)


def linear_norm_bound(weight: torch.Tensor) -> float:
    """Certified |W|_2 of a matrix: float64 sigma_1 plus a rounding margin (see the module docstring)."""
    w = weight.detach().double().reshape(weight.shape[0], -1)
    sigma = float(torch.linalg.matrix_norm(w, 2))
    return sigma + 64 * max(w.shape) * U64 * float(w.norm())


def gram_iteration_bound(mats: torch.Tensor, n_iter: int = 6) -> torch.Tensor:
    """Per-matrix certified upper bounds of sigma_1 for a batch (B, m, n) by rescaled Gram iteration.

    G_0 = A, G_{t+1} = G_t^H G_t / ||G_t||_F^2... with log-scales accumulated: ||A||_2 <=
    (prod_t r_t^(2^-t)) ||G_T||_F^(2^-T) where r_t = ||G_t||_F before rescaling. float64, plus a
    relative margin of 1e-9.
    """
    g = mats.to(torch.complex128 if mats.is_complex() else torch.float64)
    if g.shape[-1] > g.shape[-2]:
        g = g.mH
    log_scale = torch.zeros(g.shape[0], dtype=torch.float64, device=g.device)
    power = 1.0
    for _ in range(int(n_iter)):
        r = torch.linalg.matrix_norm(g, "fro").clamp_min(1e-300)
        g = g / r[:, None, None].to(g.dtype)
        log_scale = log_scale + power * r.log()
        g = g.mH @ g
        power /= 2
    final = torch.linalg.matrix_norm(g, "fro").clamp_min(1e-300)
    return torch.exp(log_scale + power * final.log()) * (1 + 1e-9)


class ConvCertifier:
    """Certified norm of one Conv2d geometry (kernel shape, torus, dilation), reusable across weights.

    Keeps per-frequency power-iteration vectors between calls (``x``), so repeated calls on slowly
    changing weights (sn_gram's training steps) need only a few iterations per call.

    Only half of the tap products are formed: the pair (t', t) gives the transpose of the pair
    (t, t') at the opposite difference (M_{-d} = M_d^T), so with N_d the sum over pairs t < t' (a
    half-plane of differences), G(w) = M_0 + sum_d cos(theta_d) (N_d + N_d^T) + i sin(theta_d) (N_d - N_d^T):
    half the products and half the per-frequency assembly of the full sum over d.
    """

    def __init__(self, weight_shape, torus, dilation=(1, 1), device=None):
        c_out, c_in, kh, kw = weight_shape
        self.weight_shape = tuple(weight_shape)
        self.torus = tuple(int(s) for s in torus)
        self.transpose = c_out < c_in  # Gram on the smaller side: K K^H when c_out < c_in
        self.side = min(c_out, c_in)
        h, w = self.torus
        dh, dw = dilation
        pos = torch.tensor([[a * dh, b * dw] for a in range(kh) for b in range(kw)])
        n_taps = len(pos)
        # pairs t < t' (row-major taps): differences p_t' - p_t, all in one half-plane (negated for K K^H)
        t1, t2 = torch.triu_indices(n_taps, n_taps, offset=1)
        diffs = pos[t2] - pos[t1]
        if self.transpose:
            diffs = -diffs
        self.n_taps = n_taps
        self.n_keys_full = len(torch.unique(torch.cat([diffs, -diffs, torch.zeros(1, 2, dtype=diffs.dtype)]), dim=0))
        if len(diffs):
            self.keys, inverse = torch.unique(diffs, dim=0, return_inverse=True)
        else:  # a 1x1 kernel: G = M_0 at every frequency
            self.keys, inverse = diffs.reshape(0, 2), torch.zeros(0, dtype=torch.long)
        # key of pair (t, t') in the row-major list of pairs t < t', tap by tap
        self.pair_key = inverse
        fu = torch.arange(h, dtype=torch.float64)
        fv = torch.arange(w // 2 + 1, dtype=torch.float64)  # rfft half: w and -w give conjugate G
        theta = -2 * math.pi * (fu[:, None, None] * self.keys[:, 0] / h + fv[None, :, None] * self.keys[:, 1] / w)
        theta = theta.reshape(h * (w // 2 + 1), len(self.keys))
        self.cos, self.sin = theta.cos().to(device), theta.sin().to(device)
        self.n_freq = theta.shape[0]
        self.x: torch.Tensor | None = None  # (n_freq, side) complex128 power-iteration vectors

    # ---- the Gram matrices ---------------------------------------------------------------------------
    def tap_products(self, weight: torch.Tensor):
        """(M_0 (c, c), S (D, c, c), A (D, c, c), eta, stacked) in float64: M_0 = sum_t W_t^T W_t, S_d = N_d + N_d^T
        and A_d = N_d - N_d^T for N_d = the sum over tap pairs t < t' with difference d of W_t^T W_t'
        (class docstring), the bound eta on the rounding error of any assembled G(w) (module docstring), and
        the three stacked for grams()."""
        c_out, c_in, kh, kw = self.weight_shape
        w = weight.detach().double()
        taps = w.permute(2, 3, 0, 1).reshape(kh * kw, c_out, c_in)
        if self.transpose:
            taps = taps.transpose(1, 2)
        rows, c = taps.shape[1], taps.shape[2]
        t_n = self.n_taps
        stacked = taps.permute(1, 0, 2).reshape(rows, t_n * c)
        lhs = taps.transpose(1, 2).contiguous()
        m0 = torch.zeros(c, c, dtype=torch.float64, device=w.device)
        n = w.new_zeros(len(self.keys), c, c)
        key = self.pair_key.tolist()
        at = 0
        for t in range(t_n):  # row block t of the pair matrix, from its diagonal block on: (c, (T - t) c)
            block = self._buffer("taps", (c, (t_n - t) * c), torch.float64, w.device)
            torch.mm(lhs[t], stacked[:, t * c:], out=block)
            m0 += block[:, :c]
            for j in range(1, t_n - t):
                n[key[at]] += block[:, j * c:(j + 1) * c]
                at += 1
        nt = n.transpose(1, 2)
        eta = 4 * (rows + self.n_keys_full + 16) * U64 * float(taps.flatten(1).norm(dim=1).sum()) ** 2
        sym, anti = n + nt, n - nt
        n_k = len(self.keys)
        stacked = w.new_zeros(1 + 2 * n_k, c, c, 2)  # the rows of grams()' one matmul
        stacked[0, ..., 0] = m0
        stacked[1:1 + n_k, ..., 0] = sym
        stacked[1 + n_k:, ..., 1] = anti
        return m0, sym, anti, eta, stacked.view(1 + 2 * n_k, 2 * c * c)

    def grams(self, prods, index: torch.Tensor, negate: bool = False, shift: float = 0.0, buffer: str = "g") -> torch.Tensor:
        """G(w) (or shift I - G(w) with ``negate``) for the rfft2 frequencies ``index``: (len(index), c, c)
        complex128, in a reused buffer valid until the next call with the same ``buffer`` name (fresh
        multi-MiB allocations cost as much as the assembly in page faults). One real matmul writes the
        interleaved real and imaginary parts: [1, cos, sin] @ [[M_0, 0]; [S_d, 0]; [0, A_d]]."""
        stacked = prods[4]
        c, b = self.side, len(index)
        out = self._buffer(buffer, (b, c, c), torch.complex128, stacked.device)
        coef = torch.cat([torch.ones(b, 1, dtype=torch.float64), self.cos[index].cpu(), self.sin[index].cpu()], dim=1)
        torch.mm(coef.to(stacked.device).mul_(-1.0 if negate else 1.0), stacked, out=torch.view_as_real(out).view(b, -1))
        if shift:
            out.diagonal(dim1=-2, dim2=-1).real.add_(shift)
        return out

    def _buffer(self, name, shape, dtype, device):
        bufs = self.__dict__.setdefault("_buffers", {})
        buf = bufs.get(name)
        if buf is None or buf.dtype != dtype or buf.device != device or buf.numel() < math.prod(shape):
            buf = bufs[name] = torch.empty(math.prod(shape), dtype=dtype, device=device)
        return buf[:math.prod(shape)].view(shape)

    # ---- the bound -----------------------------------------------------------------------------------
    def bound(self, weight: torch.Tensor, tol: float = 0.005, n_iter: int = 30, method: str = "cholesky",
              gram_iter: int = 6, chunk_bytes: int = 128 * 2 ** 20) -> float:
        """Certified upper bound of |circular conv on the torus| >= |the layer as applied|."""
        if method not in ("cholesky", "gram"):
            raise ValueError(f"method must be 'cholesky' or 'gram', not {method!r}")
        prods = self.tap_products(weight)
        eta = prods[3]
        c = self.side
        per = max(1, chunk_bytes // (16 * c * c))
        chunks = [torch.arange(s, min(s + per, self.n_freq)) for s in range(0, self.n_freq, per)]
        if method == "gram":
            best = max(float(gram_iteration_bound(self.grams(prods, idx), gram_iter).max()) for idx in chunks)
            return math.sqrt(best + eta)  # G's rounding error, on the squared norm
        cold = self.x is None or self.x.shape != (self.n_freq, c) or self.x.device != prods[0].device
        if cold:
            gen = torch.Generator().manual_seed(0)
            self.x = torch.complex(torch.randn(self.n_freq, c, generator=gen, dtype=torch.float64),
                                   torch.randn(self.n_freq, c, generator=gen, dtype=torch.float64)).to(prods[0].device)
        # One pass over the frequencies, a chunk at a time (each G(w) assembled once):
        # 1. power iteration (warm-started): lower estimates of lambda_max(G(w)); mu = the largest so
        #    far times (1 + tol)^2; 2. Cholesky certificates of mu I - G(w), raising mu where they fail.
        # mu only grows, so a certificate at an earlier mu holds at the final one. Without warm vectors
        # on many frequencies, step 1 runs only on a sample (the largest tr G(w) and a spread), since a
        # matrix-vector product over all of them costs about a Cholesky factorization (memory-bound).
        mu, worst_eps = 1e-300, 0.0
        gamma = 4 * (c + 1) * U64
        sampled = cold and self.n_freq > 4 * SAMPLE
        if sampled:
            pick = self._sample(prods)
            mu = max(mu, float(self._power(self.grams(prods, pick, buffer="refine"), pick, n_iter).max()) * (1 + tol) ** 2)
        for idx in chunks:
            if sampled:  # mu known: assemble mu I - G(w) directly, factorized in place
                a = self.grams(prods, idx, negate=True, shift=mu)
            else:
                g = self.grams(prods, idx)
                est = self._power(g, idx, n_iter).cpu()
                mu = max(mu, float(est.max()) * (1 + tol) ** 2)
                a = torch.neg(g, out=self._buffer("a", g.shape, g.dtype, g.device))
                a.diagonal(dim1=-2, dim2=-1).real.add_(mu)
            for _ in range(200):  # (1 + tol)^400 covers any estimate error
                ok, tr = _cholesky_succeeds(a)
                if ok.any():
                    worst_eps = max(worst_eps, float(tr[ok].max()) * gamma / (1 - gamma))
                if ok.all():
                    break
                idx = idx[~ok]
                g = self.grams(prods, idx, buffer="refine")
                est = self._power(g, idx, 10).cpu()  # refine where mu was too low
                mu = max(mu * (1 + tol) ** 2, float(est.max()) * (1 + tol) ** 2)
                a = torch.neg(g, out=self._buffer("a", g.shape, g.dtype, g.device))
                a.diagonal(dim1=-2, dim2=-1).real.add_(mu)
            else:  # pragma: no cover - a Frobenius bound as the last resort
                return math.sqrt(max(float(torch.linalg.matrix_norm(self.grams(prods, i), "fro").max()) for i in chunks) + eta)
        return math.sqrt(mu + worst_eps + eta)

    def _sample(self, prods) -> torch.Tensor:
        """SAMPLE frequencies with the largest tr G(w) = |K(w)|_F^2 (the antisymmetric parts have no
        diagonal), and SAMPLE spread evenly over the rest: where the power iteration runs when cold."""
        m0, sym = prods[0], prods[1]
        tr = float(m0.diagonal().sum()) + (self.cos.to(m0.device) @ sym.diagonal(dim1=1, dim2=2).sum(1) if len(self.keys)
                                           else torch.zeros(self.n_freq, dtype=torch.float64, device=m0.device))
        top = torch.topk(torch.as_tensor(tr).cpu(), SAMPLE).indices
        spread = torch.linspace(0, self.n_freq - 1, SAMPLE).round().long()
        return torch.unique(torch.cat([top, spread]))

    def _power(self, g: torch.Tensor, idx: torch.Tensor, n_iter: int) -> torch.Tensor:
        x = self.x[idx.to(self.x.device)]
        x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-300)
        for _ in range(max(int(n_iter), 1)):
            y = (g @ x[:, :, None])[:, :, 0]
            x = y / y.norm(dim=1, keepdim=True).clamp_min(1e-300)
        self.x[idx.to(self.x.device)] = x
        return torch.einsum("bi,bij,bj->b", x.conj(), g, x).real.clamp_min(0)  # Rayleigh quotient <= lambda_max


def _cholesky_succeeds(a: torch.Tensor):
    """(ok (B,) bool, tr (B,) float64) for a batch of Hermitian A = mu I - G(w): whether each Cholesky
    factorization completes in floating point, and tr(A) (for the rounding margin; module docstring).
    ``a`` is overwritten. On the CPU LAPACK's zpotrf runs in place without zeroing the other triangle
    (torch's batched cholesky_ex copies and clears it: ~2x the factorization's own time here)."""
    tr = a.diagonal(dim1=-2, dim2=-1).real.sum(-1).cpu()
    if a.device.type == "cpu" and a.dtype == torch.complex128:
        from scipy.linalg import lapack

        arr = a.numpy()  # rows contiguous: arr[i].T is the same memory in column order (conj(A): PD iff A is)
        ok = [lapack.zpotrf(arr[i].T, lower=1, clean=0, overwrite_a=1)[1] == 0 for i in range(len(arr))]
        return torch.tensor(ok, dtype=torch.bool), tr
    _, info = torch.linalg.cholesky_ex(a)
    return (info == 0).cpu(), tr


def check_certifiable(layer: nn.Module) -> str | None:
    """None when ``conv_norm_bound`` can certify the layer, else the reason (one phrase)."""
    if isinstance(layer, nn.Linear):
        return None
    if not isinstance(layer, nn.Conv2d):
        return f"{type(layer).__name__} is not Linear or Conv2d"
    if layer.groups != 1:
        return f"groups={layer.groups} (only groups=1 is supported)"
    if layer.padding_mode not in ("zeros", "circular"):
        return f"padding_mode={layer.padding_mode!r} repeats inputs (only 'zeros' and 'circular' have a circular embedding)"
    return None


def conv_norm_bound(layer: nn.Conv2d, input_shape, weight: torch.Tensor | None = None, tol: float = 0.005,
                    method: str = "cholesky", n_iter: int = 30, gram_iter: int = 6) -> float:
    """Certified upper bound on the operator norm of ``layer`` as applied to inputs of ``input_shape``
    (C, H, W): its stride, padding, dilation and input size (see the module docstring)."""
    reason = check_certifiable(layer)
    if reason:
        raise NotImplementedError(reason)
    w, torus, dilation = conv_geometry(layer, input_shape, (layer.weight if weight is None else weight).detach())
    cert = ConvCertifier(w.shape, torus, dilation, device=w.device)
    return cert.bound(w, tol=tol, n_iter=n_iter, method=method, gram_iter=gram_iter)


def polyphase_kernel(weight: torch.Tensor, stride) -> torch.Tensor:
    """The stride-s convolution as a stride-1 one on the space-to-depth input: K'[o, (c, a, b), i, j] =
    K[o, c, s_h i + a, s_w j + b] (zero past the kernel), shape (c_out, c_in s_h s_w, ceil(k_h/s_h), ceil(k_w/s_w))."""
    sh, sw = stride
    c_out, c_in, kh, kw = weight.shape
    kh2, kw2 = -(-kh // sh), -(-kw // sw)
    padded = weight.new_zeros(c_out, c_in, kh2 * sh, kw2 * sw)
    padded[:, :, :kh, :kw] = weight
    # (o, c, i, a, j, b) -> (o, c, a, b, i, j)
    return padded.view(c_out, c_in, kh2, sh, kw2, sw).permute(0, 1, 3, 5, 2, 4).reshape(c_out, c_in * sh * sw, kh2, kw2)


def conv_geometry(layer: nn.Conv2d, input_shape, weight: torch.Tensor):
    """(kernel, torus, dilation) of the circular stride-1 convolution that the layer is a restriction of.

    Stride 1: the kernel on ``torus_size``. Stride s (dilation 1): the padded input, extended with zeros
    to a multiple of s (a further restriction), read as s_h s_w phase channels (space-to-depth, a
    permutation of the input) on a torus s times smaller, where the layer is the stride-1 convolution
    with the polyphase kernel: exact up to the padding, so as tight as the stride-1 case (the stride-1
    bound of a strided layer is 1.5x loose on the SN-GAN 4x4 stride-2 layers). Stride with dilation:
    the stride-1 bound (still certified: striding selects outputs).
    """
    torus = torus_size(layer, input_shape)
    stride, dilation = tuple(layer.stride), tuple(layer.dilation)
    circular_misfit = layer.padding_mode == "circular" and any(t % s for t, s in zip(torus, stride))
    if stride == (1, 1) or dilation != (1, 1) or circular_misfit:  # (a circular wrap cannot be extended)
        return weight, torus, dilation
    small = tuple(-(-t // s) for t, s in zip(torus, stride))
    return polyphase_kernel(weight, stride), small, (1, 1)


def layer_norm_bound(layer: nn.Module, input_shape=None, weight: torch.Tensor | None = None, **kwargs) -> float:
    """Certified operator-norm bound of a Linear (exact up to rounding) or Conv2d as applied."""
    if isinstance(layer, nn.Linear):
        return linear_norm_bound(layer.weight if weight is None else weight)
    return conv_norm_bound(layer, input_shape, weight, **kwargs)


__all__ = ["ConvCertifier", "check_certifiable", "conv_norm_bound", "gram_iteration_bound", "layer_norm_bound",
           "linear_norm_bound"]


# ---- a whole discriminator ------------------------------------------------------------------------------
def certified_layer_bounds(module: nn.Module, shapes: dict, **kwargs) -> dict:
    """{name: certified bound} for every Linear / Conv2d of ``module`` at its recorded input shape
    (effective weights, read in eval mode)."""
    from .lipschitz import eval_mode, weight_layers

    layers = weight_layers(module)
    out = {}
    with eval_mode(module), torch.no_grad():
        for name, shape in shapes.items():
            out[name] = layer_norm_bound(layers[name], shape, layers[name].weight.detach(), **kwargs)
    return out


def lipschitz_record(discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor, example_input: torch.Tensor | None = None,
                     seed: int = 0) -> dict:
    """D's certified Lipschitz upper bound and empirical lower bound, for summary.json's "lipschitz".

    {"certified_upper": float | None, "empirical_lower": float | None, "reason": None | str,
    "layers": {name: certified bound}}. certified_upper is the product of the certified layer bounds
    combined by D's structure (src.spectral.lipschitz.lipschitz_upper_bound, output gain included):
    an upper bound, not an estimate; None, with the reason, when the structure cannot be certified
    (e.g. LayerNorm, an unknown module, a layer with no certificate). empirical_lower is the largest
    |grad_x D| over the real, fake and interpolated points. Never raises: failures give None values
    and a reason.
    """
    from .lipschitz import input_gradient_norms, interpolate, lipschitz_upper_bound, record_input_shapes

    out = {"certified_upper": None, "empirical_lower": None, "reason": None, "layers": {}}
    reasons = []
    try:
        param = next(discriminator.parameters(), None)
        device = param.device if param is not None else real.device
        real, fake = real.detach().to(device), fake.detach().to(device, real.dtype)
        n = min(len(real), len(fake))
        gen = torch.Generator(device=device).manual_seed(seed)
        grads = [input_gradient_norms(discriminator, x) for x in (real, fake, interpolate(real[:n], fake[:n], gen))]
        out["empirical_lower"] = max(float(g.max()) for g in grads)
    except Exception as exc:  # noqa: BLE001 - a record must never stop the run
        reasons.append(f"empirical lower bound failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    try:
        example = (real if example_input is None else example_input)[:1]
        shapes = record_input_shapes(discriminator, example)
        from .lipschitz import weight_layers

        layers = weight_layers(discriminator)
        missing = [f"{n} ({r})" for n, r in ((n, check_certifiable(layers[n])) for n in shapes) if r]
        if missing:
            raise NotImplementedError("no certificate for " + ", ".join(missing))
        norms = certified_layer_bounds(discriminator, shapes)
        out["layers"] = norms
        bound, valid, note = lipschitz_upper_bound(discriminator, norms, shapes)
        if valid and math.isfinite(bound):
            out["certified_upper"] = float(bound)
        else:
            reasons.append(f"structure not certified: {note}")
    except Exception as exc:  # noqa: BLE001
        reasons.append(f"certified bound failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    out["reason"] = "; ".join(reasons) or None
    return out


__all__ += ["certified_layer_bounds", "lipschitz_record"]
