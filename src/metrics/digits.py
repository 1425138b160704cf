"""The feature network of digits runs: a small MLP classifier of scikit-learn's 8x8 digits.

Inception knows nothing of 8x8 grayscale digits, so IS and FID of digits GANs use this classifier
instead: IS from its softmax over the 10 classes (at most 10), FID/KID on its 64-unit penultimate
layer. Its weights ship with the package (`digits_classifier_v1.pt`, 72 KB, pinned by SHIPPED_SHA256)
rather than being trained on first use: training is deterministic on one machine, but two machines'
CPU kernels round differently (two 2-core machines of this project gave different weights from the
same code), and a study that spans machines must score every job with the same feature network.
`train_digits_classifier` is how the shipped file was made (full-batch Adam, fixed split and seed);
its held-out accuracy is printed and recorded in the protocol.
"""
from pathlib import Path

import torch
from torch import nn

from ..data.digits import DATASET
from .inception import sha256_file

VERSION = 1
HIDDEN, FEATURES = 128, 64
SHIPPED = Path(__file__).with_name(f"digits_classifier_v{VERSION}.pt")
SHIPPED_SHA256 = "443eda8bff3fcc6aea963f1fce9ed42670bd1f642a252b58930d3195b6936bb8"


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
    torch.set_num_threads(1)  # reductions in a fixed order: the same weights on every run of one machine
    # fork_rng: training the classifier must not reseed its caller's global RNG (a run that trained one would get
    # other networks than a run that did not)
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


def save_classifier(state: dict, test_accuracy: float, n_test: int, path: Path) -> None:
    """The file layout `load_classifier` reads (how SHIPPED was written, from train_digits_classifier())."""
    torch.save({"state_dict": state, "test_accuracy": test_accuracy, "n_test": n_test, "version": VERSION}, path)


def load_classifier(path: Path | None = None, verbose: bool = True) -> tuple[DigitsMLP, dict, Path]:
    """The shipped classifier (checked against its pinned hash), or the one saved at `path`."""
    path = Path(path) if path else SHIPPED
    if path == SHIPPED:
        if not path.is_file():
            raise FileNotFoundError(f"the digits classifier {path} is missing from the package; restore it with "
                                    f"`git checkout -- {path.name}` (or reinstall)")
        digest = sha256_file(path)
        if digest != SHIPPED_SHA256:
            raise RuntimeError(f"the digits classifier {path} has sha256 {digest[:12]}, not the pinned "
                               f"{SHIPPED_SHA256[:12]}: every digits score depends on it; restore it with "
                               f"`git checkout -- {path.name}`")
    blob = torch.load(path, weights_only=True)
    net = DigitsMLP()
    net.load_state_dict(blob["state_dict"])
    net.eval()
    info = {"test_accuracy": float(blob["test_accuracy"]), "n_test": int(blob["n_test"])}
    if verbose:
        print(f"digits classifier: test accuracy {info['test_accuracy']:.1%} on {info['n_test']} held-out digits "
              f"({path})", flush=True)
    return net, info, path


class DigitsFeatures:
    """Same interface as InceptionFeatures: uint8 images -> (64 penultimate features, 10 logits)."""

    name = "digits-mlp"
    feature_dim = FEATURES
    channels = 1
    cache_subdir = DATASET.name  # real statistics under $GANLAB_CACHE/<dataset>

    def __init__(self, device: str | torch.device = "cpu", batch_size: int = 1000, path: Path | None = None):
        self.net, self.info, self.weights_path = load_classifier(path)
        self.weights_sha256 = sha256_file(self.weights_path)
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


__all__ = ["DigitsFeatures", "DigitsMLP", "train_digits_classifier", "load_classifier", "save_classifier", "SHIPPED",
           "SHIPPED_SHA256"]
