"""The feature network of digits runs: a small MLP classifier of scikit-learn's 8x8 digits.

Inception knows nothing of 8x8 grayscale digits, so IS and FID of digits GANs use this classifier
instead: IS from its softmax over the 10 classes (at most 10), FID/KID on its 64-unit penultimate
layer. It is trained once (fixed split and seed, one CPU thread: the same weights on every machine),
stored under the cache dir and reused; its held-out accuracy is printed and recorded in the protocol.
"""
import os
from pathlib import Path

import torch
from torch import nn

from ..data.datamodule import default_cache_dir
from ..data.digits import DATASET
from .inception import sha256_file

VERSION = 1
HIDDEN, FEATURES = 128, 64


class DigitsMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(64, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, FEATURES), nn.ReLU())
        self.head = nn.Linear(FEATURES, 10)

    def forward(self, x):
        return self.head(self.body(x))


def _inputs(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) at any size -> float (N, 64) of 8x8 grayscale in [0, 1]."""
    from ..data.images import resize_uint8

    if images.shape[1] == 3:
        images = images.float().mean(1, keepdim=True).round().to(torch.uint8)
    if images.shape[-1] != 8 or images.shape[-2] != 8:
        images = resize_uint8(images, 8)
    return images.reshape(images.shape[0], 64).float() / 255.0


def train_digits_classifier(seed: int = 0, epochs: int = 400) -> tuple[dict, float, int]:
    """Full-batch Adam on 75% of the digits; returns (state_dict, held-out accuracy, n held out)."""
    from sklearn.model_selection import train_test_split

    from ..data.digits import load_digits_images

    images, labels = load_digits_images(8)
    idx_train, idx_test = train_test_split(torch.arange(len(labels)).numpy(), test_size=0.25, random_state=seed,
                                           stratify=labels.numpy())
    x, y = _inputs(images), labels
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # reductions in a fixed order: bit-identical weights across machines
    # fork_rng: training the classifier (on a cold cache, inside a run's check_ready) must not reseed the run's
    # global RNG, or a run's networks would depend on whether the classifier was already cached
    with torch.random.fork_rng():
        try:
            torch.manual_seed(seed)
            net = DigitsMLP()
            opt = torch.optim.Adam(net.parameters(), lr=3e-3, weight_decay=1e-4)
            xt, yt = x[idx_train], y[idx_train]
            for _ in range(epochs):
                opt.zero_grad()
                nn.functional.cross_entropy(net(xt), yt).backward()
                opt.step()
            with torch.no_grad():
                acc = float((net(x[idx_test]).argmax(1) == y[idx_test]).float().mean())
        finally:
            torch.set_num_threads(threads)
    return net.state_dict(), acc, len(idx_test)


def classifier_path() -> Path:
    return default_cache_dir() / DATASET.name / f"classifier-v{VERSION}.pt"


def load_or_train(path: Path | None = None, verbose: bool = True) -> tuple[DigitsMLP, dict, Path]:
    path = Path(path) if path else classifier_path()
    blob = None
    if path.is_file():
        try:
            blob = torch.load(path, weights_only=True)
        except Exception:
            blob = None  # a corrupt file is retrained below
    trained = blob is None
    if trained:
        state, acc, n_test = train_digits_classifier()
        blob = {"state_dict": state, "test_accuracy": acc, "n_test": n_test, "version": VERSION}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            torch.save(blob, tmp)
            os.replace(tmp, path)
        except OSError:
            pass  # an unwritable cache only costs retraining next time
    net = DigitsMLP()
    net.load_state_dict(blob["state_dict"])
    net.eval()
    info = {"test_accuracy": float(blob["test_accuracy"]), "n_test": int(blob["n_test"])}
    if verbose:
        print(f"digits classifier: test accuracy {info['test_accuracy']:.1%} on {info['n_test']} held-out digits "
              f"({'trained now, ' if trained else ''}{path})", flush=True)
    return net, info, path


class DigitsFeatures:
    """Same interface as InceptionFeatures: uint8 images -> (64 penultimate features, 10 logits)."""

    name = "digits-mlp"
    feature_dim = FEATURES
    channels = 1
    cache_subdir = DATASET.name  # real statistics under $GANLAB_CACHE/<dataset>

    def __init__(self, device: str | torch.device = "cpu", batch_size: int = 1000, path: Path | None = None):
        self.net, self.info, self.weights_path = load_or_train(path)
        self.weights_sha256 = sha256_file(self.weights_path) if self.weights_path.is_file() else "untracked"
        self.device, self.batch_size = torch.device(device), int(batch_size)
        self.net.to(self.device)

    def describe(self) -> dict:
        return {"features": self.name,
                "features_detail": f"64-{HIDDEN}-{FEATURES}-10 MLP trained on 8x8 digits; FID/KID on its {FEATURES} "
                                   f"penultimate units, IS from its softmax",
                "classifier_test_accuracy": self.info["test_accuracy"], "weights_sha256": self.weights_sha256,
                "weights_path": str(self.weights_path)}

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = _inputs(images).to(self.device)
        h = self.net.body(x)
        return h.float().cpu(), self.net.head(h).float().cpu()


__all__ = ["DigitsFeatures", "DigitsMLP", "train_digits_classifier", "load_or_train", "classifier_path"]
