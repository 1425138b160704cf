"""Quality measures of 2-D toy samples.

* modes covered / high-quality fraction (Srivastava et al. 2017, VEEGAN; Lin et al. 2018, PacGAN):
  a sample is high-quality when it lies within 3 standard deviations of its nearest mode; a mode
  is covered when at least ``min_share`` of its fair share (n / K) of the samples are high-quality
  samples assigned to it (0.2 reproduces PacGAN's "20 of 2,500 on the 25-grid").
* sliced Wasserstein-1 distance between samples and fresh data (mean over random directions of the
  1-D W1 distance, scipy's exact 1-D solver), the distance that also applies to the swiss roll.
"""
import numpy as np
import torch
from scipy.stats import wasserstein_distance

from ..data.toy2d import mode_centers, sample_toy2d


def mode_statistics(samples: np.ndarray, centers: np.ndarray, std: float, min_share: float = 0.2) -> dict:
    d = np.linalg.norm(samples[:, None, :] - centers[None], axis=2)
    nearest, dist = d.argmin(1), d.min(1)
    high = dist <= 3 * std
    counts = np.bincount(nearest[high], minlength=len(centers))
    threshold = min_share * len(samples) / len(centers)
    return {
        "modes_covered": int((counts >= threshold).sum()),
        "modes_total": int(len(centers)),
        "high_quality_fraction": float(high.mean()),
    }


def sliced_wasserstein(a: np.ndarray, b: np.ndarray, n_directions: int = 128, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    dirs = rng.normal(size=(n_directions, a.shape[1]))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    return float(np.mean([wasserstein_distance(a @ t, b @ t) for t in dirs]))


class ToyEvaluator:
    """Scores 2-D samples of a toy2d dataset: at the end of training, and every ``every`` generator updates
    during it (the learning curve: ``eval/<measure>`` in the loggers, ``metrics_history`` in summary.json).

    Every evaluation draws its noise from its own generator seeded with ``seed`` (the same z each time, so
    the curve's points differ only by G), never from the global RNG that training uses: scoring during
    training leaves the training run bit-identical to one without it."""

    def __init__(self, n_samples: int = 2500, min_share: float = 0.2, variant: str = "ring8", std: float = 0.02,
                 every: int = 0, seed: int = 0):
        self.n_samples, self.min_share, self.variant, self.std = n_samples, min_share, variant, std
        self.every, self.seed = every, seed
        self.history: list[dict] = []
        self._noise: torch.Tensor | None = None
        self._real: np.ndarray | None = None

    def check_ready(self) -> None:
        pass

    def protocol(self) -> dict:
        out = {"n_fake": self.n_samples, "n_real": self.n_samples, "real_split": "fresh draw (seed 12345)",
               "features": "raw 2-D coordinates", "high_quality": "within 3 std of nearest mode",
               "mode_covered": f">= {self.min_share} x fair share of high-quality samples", "noise_seed": self.seed}
        if self.every:
            out["every"] = self.every
        return out

    def noise(self, z_dim: int) -> torch.Tensor:
        """The fixed noise every evaluation scores (drawn once: each periodic evaluation reuses it)."""
        if self._noise is None or self._noise.shape[1] != z_dim:
            self._noise = torch.randn(self.n_samples, z_dim, generator=torch.Generator().manual_seed(self.seed))
        return self._noise

    def real(self) -> np.ndarray:
        """The fresh data draw the samples are compared with (fixed seed; drawn once)."""
        if self._real is None:
            self._real = sample_toy2d(self.variant, self.n_samples, 12345, self.std).numpy()
        return self._real

    def score(self, fake: np.ndarray) -> dict:
        out = {"sliced_wasserstein": sliced_wasserstein(fake, self.real())}
        centers = mode_centers(self.variant)
        if centers is not None:
            out.update(mode_statistics(fake, centers, self.std, self.min_share))
        return out

    def score_module(self, module) -> dict:
        """Scores a GANModule's generator on this evaluator's fixed noise."""
        fake = module.generate(self.n_samples, z=self.noise(module.z_dim))
        return self.score(fake.detach().float().cpu().numpy())

    def evaluate(self, module, datamodule=None) -> dict:
        """The final score of ``module``'s generator on this evaluator's fixed noise (with the periodic ones as
        ``history`` when ``every`` is set). ``module``: what the evaluator uses of a GAN module: z_dim,
        g_step, generate(n, z=...)."""
        metrics, step = self.score_module(module), module.g_step
        if not self.every:
            return metrics
        if not self.history or self.history[-1]["step"] != step:
            self.history.append({"step": step, **metrics})
        return {**metrics, "history": list(self.history)}

    def training_callbacks(self) -> list:
        from ..callbacks.evaluation import ToyEvaluationCallback

        return [ToyEvaluationCallback(self)] if self.every else []
