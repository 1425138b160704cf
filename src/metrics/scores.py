"""IS, FID and KID from features gathered in ONE pass of the feature network over each image set.

What is kept while images stream through (``FeatureStats``):

* FID: running sums of the features and of their outer products in float64 (the states of
  torchmetrics' FrechetInceptionDistance), constant memory.
* IS: per split, the sum of the softmax and of sum_c p log p. The split of every sample is fixed in
  advance by torch-fidelity's shuffle (numpy RandomState(2020) permutation, split k = positions
  [k N / S, (k+1) N / S)), so IS needs no per-sample logits and equals torch-fidelity's exactly.
  (torchmetrics' InceptionScore shuffles with the global torch RNG, splits with ``chunk`` and
  reports Bessel's std: not torch-fidelity's numbers, and it keeps every logit.)
* KID: the float32 features of every sample (KID draws random subsets of samples: torch-fidelity's
  subsets, scored with torchmetrics' poly_kernel / maximum_mean_discrepancy). This is the only
  per-sample memory: 4 x dim bytes (8 KiB for Inception's 2048 features).
"""
import contextlib

import numpy as np
import torch

SHUFFLE_SEED = 2020  # torch-fidelity's rng_seed: IS shuffling and KID subsets
GRAM_MAX = 4096  # KID: up to this many samples in both sets, one precomputed kernel matrix (128 MiB)


def split_assignment(n: int, splits: int, seed: int = SHUFFLE_SEED) -> torch.Tensor:
    """Split index of each of n samples, as torch-fidelity assigns them after its shuffle."""
    perm = np.random.RandomState(seed).permutation(n)  # shuffled position j holds sample perm[j]
    position = np.empty(n, dtype=np.int64)
    position[perm] = np.arange(n)
    bounds = np.array([(k + 1) * n // splits for k in range(splits)])
    return torch.from_numpy(np.searchsorted(bounds, position, side="right"))


class FeatureStats:
    """Accumulates one image set's features (N x dim) and class logits (N x C) batch by batch."""

    def __init__(self, n: int, dim: int, is_splits: int = 10, keep_features: bool = True):
        if n < 2:
            raise ValueError("at least 2 samples are needed")
        self.n_expected, self.dim = int(n), int(dim)
        self.is_splits = max(1, min(int(is_splits), self.n_expected))
        self.split_of = split_assignment(self.n_expected, self.is_splits)
        self.n = 0
        self.sum = torch.zeros(dim, dtype=torch.float64)
        self.outer_sum = torch.zeros(dim, dim, dtype=torch.float64)
        self.features = torch.empty(self.n_expected, dim, dtype=torch.float32) if keep_features else None
        self.p_sum = None  # (splits, C), allocated at the first batch (C = 1008 for Inception)
        self.plogp_sum = torch.zeros(self.is_splits, dtype=torch.float64)
        self.count = torch.zeros(self.is_splits, dtype=torch.float64)
        self._is = None

    def update(self, features: torch.Tensor, logits: torch.Tensor) -> None:
        b = features.shape[0]
        if self.n + b > self.n_expected:
            raise RuntimeError(f"more than the announced {self.n_expected} samples")
        f = features.double()
        self.sum += f.sum(0)
        self.outer_sum.addmm_(f.T, f)
        if self.features is not None:
            self.features[self.n:self.n + b] = features.float()
        logp = logits.double().log_softmax(1)
        p = logp.exp()
        if self.p_sum is None:
            self.p_sum = torch.zeros(self.is_splits, p.shape[1], dtype=torch.float64)
        split = self.split_of[self.n:self.n + b]
        self.p_sum.index_add_(0, split, p)
        self.plogp_sum.index_add_(0, split, (p * logp).sum(1))
        self.count.index_add_(0, split, torch.ones(b, dtype=torch.float64))
        self.n += b

    def _check_complete(self):
        if self.n != self.n_expected:
            raise RuntimeError(f"{self.n} samples accumulated, {self.n_expected} announced")

    @property
    def mean(self) -> torch.Tensor:
        return self.sum / self.n

    @property
    def cov(self) -> torch.Tensor:
        mu = self.mean
        return (self.outer_sum - self.n * torch.outer(mu, mu)) / (self.n - 1)

    def inception_score(self) -> tuple[float, float]:
        """exp(E_x KL(p(y|x) || p(y))) per split; mean and (population) std over splits, as torch-fidelity."""
        if self._is is None:
            self._check_complete()
            q = self.p_sum / self.count[:, None]
            # mean_x sum_c p (log p - log q) = mean_x sum_c p log p - sum_c q log q
            kl = self.plogp_sum / self.count - torch.special.xlogy(q, q).sum(1)
            scores = kl.exp().numpy()
            self._is = (float(np.mean(scores)), float(np.std(scores)))
        return self._is

    def state(self) -> dict:
        """What the on-disk cache of a (real) set holds."""
        is_mean, is_std = self.inception_score()
        return {"n": self.n, "sum": self.sum, "outer_sum": self.outer_sum, "features": self.features,
                "is_mean": is_mean, "is_std": is_std, "is_splits": self.is_splits}

    @classmethod
    def from_state(cls, state: dict) -> "FeatureStats":
        obj = cls.__new__(cls)
        obj.n = obj.n_expected = int(state["n"])
        obj.dim = int(state["sum"].shape[0])
        obj.is_splits = int(state["is_splits"])
        obj.sum, obj.outer_sum, obj.features = state["sum"], state["outer_sum"], state["features"]
        obj._is = (float(state["is_mean"]), float(state["is_std"]))
        return obj

    def nbytes(self) -> int:
        """Memory held by the accumulators (what grows with N: the KID features)."""
        tensors = [self.sum, self.outer_sum, self.features, getattr(self, "p_sum", None),
                   getattr(self, "split_of", None)]
        return sum(t.numel() * t.element_size() for t in tensors if t is not None)


def frechet_distance(a: FeatureStats, b: FeatureStats) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a) + Tr(S_b) - 2 Tr sqrt(S_a S_b), in float64.

    Tr sqrt(S_a S_b) is the quantity torchmetrics (eigvals of S_a S_b) and torch-fidelity (scipy's
    sqrtm) compute, here from symmetric problems, which are faster and stabler:
    * both sets smaller than the feature dimension (small protocols, tests): S = A A^T with A the
      centred features / sqrt(n - 1); the eigenvalues of S_a S_b are the squared singular values of
      A^T B (n_a x n_b), so Tr sqrt = the nuclear norm of A^T B;
    * otherwise Tr sqrt(S_a^1/2 S_b S_a^1/2), with S_a^1/2 from eigh.
    """
    with _one_thread():
        return _frechet_distance(a, b)


@contextlib.contextmanager
def _one_thread():
    # MKL's multi-threaded SVD / eigh of these matrices are barrier-bound: on a CPU shared with other
    # jobs, 2 threads took 10-30 s where 1 thread takes 0.4 s (1000 x 1000 SVD) or 3 s (2048 eigh).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _frechet_distance(a: FeatureStats, b: FeatureStats) -> float:
    diff = float((a.mean - b.mean).square().sum())
    if a.features is not None and b.features is not None and max(a.n, b.n) < a.dim:
        fa = (a.features.double() - a.mean) / (a.n - 1) ** 0.5
        fb = (b.features.double() - b.mean) / (b.n - 1) ** 0.5
        tr_a, tr_b = float(fa.square().sum()), float(fb.square().sum())
        tr_sqrt = float(torch.linalg.svdvals(fa @ fb.T).sum())
    else:
        sa, sb = a.cov, b.cov
        tr_a, tr_b = float(sa.trace()), float(sb.trace())
        w, v = torch.linalg.eigh(sa)
        root = (v * w.clamp(min=0).sqrt()) @ v.T
        tr_sqrt = float(torch.linalg.eigvalsh(root @ sb @ root).clamp(min=0).sqrt().sum())
    return diff + tr_a + tr_b - 2.0 * tr_sqrt


def kernel_distance(fake: FeatureStats, real: FeatureStats, subsets: int = 100, subset_size: int = 1000,
                    seed: int = SHUFFLE_SEED, device: str | torch.device = "cpu") -> tuple[float, float]:
    """KID: unbiased MMD^2 with the cubic polynomial kernel; mean and std over random subsets.

    The subsets are torch-fidelity's (RandomState(seed).choice without replacement, generated set
    first); kernel and MMD are torchmetrics' functions, in float64. The subset size is
    min(subset_size, n_fake, n_real), so small protocols still get a KID.
    """
    from torchmetrics.image.kid import maximum_mean_discrepancy, poly_kernel, poly_mmd

    m = min(subset_size, fake.n, real.n)
    if m < 2:
        raise ValueError("KID needs at least 2 samples per set")
    rng = np.random.RandomState(seed)
    xf = fake.features.to(device, torch.float64)
    xr = real.features.to(device, torch.float64)
    # Small sets: one kernel matrix over both sets, then each subset is an index into it (computing
    # each subset's kernels costs 100 x 3 m^2 d flops: minutes on a CPU for m = 1000).
    both = torch.cat([xf, xr]) if fake.n + real.n <= GRAM_MAX else None
    gram = poly_kernel(both, both) if both is not None else None
    scores = []
    for _ in range(subsets):
        i = torch.from_numpy(rng.choice(fake.n, m, replace=False)).to(device)
        j = torch.from_numpy(rng.choice(real.n, m, replace=False)).to(device)
        if gram is not None:
            j = j + fake.n
            ic, jc = i[:, None], j[:, None]  # one 2-D gather per block, no (m x N) intermediate
            scores.append(float(maximum_mean_discrepancy(gram[ic, i], gram[ic, j], gram[jc, j])))
        else:
            scores.append(float(poly_mmd(xf[i], xr[j], degree=3, gamma=None, coef=1.0)))
    return float(np.mean(scores)), float(np.std(scores))


__all__ = ["FeatureStats", "frechet_distance", "kernel_distance", "split_assignment", "SHUFFLE_SEED"]
