"""torch-fidelity's TF-ported InceptionV3 (through torchmetrics), and where its weights come from.

The weights are looked for, in order: ``metrics.inception_weights`` (a path), torch's hub cache
(``torch.hub.get_dir()/checkpoints/<torch-fidelity's file name>``, where torch-fidelity itself
downloads them), and a download into that cache when the machine is online. Offline machines fail
fast: the download is only tried after a short connection probe succeeds.
"""
import hashlib
import os
import socket
import threading
from pathlib import Path
from urllib.parse import urlparse

import torch

from ..errors import UserError

FEATURES_NAME = "inception-v3-compat"  # torch-fidelity's registered name of the extractor
POOL, LOGITS = "2048", "logits_unbiased"  # FID/KID features, IS logits (torch-fidelity's default layers)
PROBE_TIMEOUT_S = 3.0


def weights_url() -> str:
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    return URL_INCEPTION_V3


def weights_file_name() -> str:
    return os.path.basename(urlparse(weights_url()).path)  # weights-inception-2015-12-05-6726825d.pth


def hub_weights_path() -> Path:
    """Where torch-fidelity's own download puts the weights (so either tool finds the other's copy)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / weights_file_name()


def _online(url: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """A TCP connection to the weights' host within ``timeout`` seconds (DNS included, which can hang)."""
    if os.environ.get("GANLAB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    host = urlparse(url).hostname
    result = []

    def probe():
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
            result.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result)


def resolve_inception_weights(path: str | None = None, download: bool = True, option: str = "metrics.inception_weights",
                              fallback: str = "or train anyway with metrics=none") -> Path:
    """The local weights file, downloading it into the hub cache when needed and possible; else UserError (one line).

    ``option`` / ``fallback`` word the message for the caller (a config key for src.train, a flag for src.evaluate).
    """
    eq = "=" if not option.startswith("--") else " "
    if path not in (None, "", "null"):
        p = Path(str(path)).expanduser()
        if not p.is_file():
            raise UserError(f"{option}{eq}{path} does not exist; give the path of torch-fidelity's "
                            f"{weights_file_name()} (from {weights_url()}), {fallback}")
        return p
    hub = hub_weights_path()
    if hub.is_file():
        return hub
    url = weights_url()
    if download and _online(url):
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(60)  # urllib's reads have no timeout of their own: a stalled mirror must not hang the run
        try:
            hub.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(url, str(hub), progress=True)  # via a temp file: never a partial file at hub
            return hub
        except Exception as exc:  # a dropped connection, a full disk, ...
            reason = f"the download from {url} failed ({type(exc).__name__})"
        finally:
            socket.setdefaulttimeout(previous)
    else:
        reason = f"{url} is unreachable (offline)" if download else "downloads are off"
    raise UserError(f"Inception weights not found: {option} is not set, {hub} does not exist and "
                    f"{reason}; download that file elsewhere and pass {option}{eq}PATH (or copy it to {hub}), {fallback}")


_SHA_MEMO: dict = {}


def sha256_file(path: Path) -> str:
    path = Path(path).resolve()
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _SHA_MEMO:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _SHA_MEMO[key] = h.hexdigest()
    return _SHA_MEMO[key]


class InceptionFeatures:
    """One forward pass of uint8 images -> (2048 pool features, 1008 unbiased logits), float32 on the CPU.

    torchmetrics' NoTrainInceptionV3 wraps torch-fidelity's FeatureExtractorInceptionV3; antialias=False
    selects torch-fidelity's TF1-compatible bilinear resize to 299x299, so features match torch-fidelity's.
    """

    name = FEATURES_NAME
    feature_dim = 2048
    channels = 3
    cache_subdir = "inception"

    def __init__(self, weights: Path, device: str | torch.device = "cpu", batch_size: int = 64):
        from torchmetrics.image.fid import NoTrainInceptionV3

        self.weights_path = Path(weights)
        self.weights_sha256 = sha256_file(self.weights_path)
        self.device, self.batch_size = torch.device(device), int(batch_size)
        try:
            net = NoTrainInceptionV3(name=FEATURES_NAME, features_list=[POOL, LOGITS],
                                     feature_extractor_weights_path=str(self.weights_path), antialias=False)
        except Exception as exc:  # truncated download, wrong file, pickle rejected by weights_only loading
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            raise UserError(f"cannot load Inception weights from {self.weights_path} ({type(exc).__name__}: {first}); "
                            f"re-download {weights_url()} or pass another metrics.inception_weights=PATH") from None
        self.net = net.to(self.device).eval()

    def describe(self) -> dict:
        return {"features": self.name, "fid_kid_layer": f"pool3 ({POOL})", "is_layer": LOGITS,
                "resize": "torch-fidelity TF1 bilinear to 299x299 of uint8 images",
                "weights_sha256": self.weights_sha256, "weights_path": str(self.weights_path)}

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if images.dtype != torch.uint8:
            raise TypeError("Inception takes uint8 images")
        if images.shape[1] == 1:  # grayscale data: Inception wants RGB
            images = images.expand(-1, 3, -1, -1)
        pool, logits = self.net._torch_fidelity_forward(images.to(self.device))
        return pool.float().cpu(), logits.float().cpu()


def make_random_inception_weights(path: Path, seed: int = 0) -> Path:
    """A weights file in torch-fidelity's format with random (variance-preserving) weights.

    For tests and benchmarks on machines without the real weights: torch-fidelity's architecture is
    built without loading anything, re-initialised (He-normal convolutions so activations neither
    vanish nor explode through ~90 layers, logits with a spread that gives IS well above 1), and its
    state_dict saved with torch.save, exactly the layout of the released file.
    """
    from unittest import mock

    import torch_fidelity.feature_extractor_inceptionv3 as fe

    class _Unloaded(fe.FeatureExtractorInceptionV3):
        def load_state_dict(self, state_dict, *args, **kwargs):
            if state_dict is not None:
                return super().load_state_dict(state_dict, *args, **kwargs)

    # the constructor always loads weights: hand it nothing instead of a download
    with mock.patch.object(fe, "load_state_dict_from_url", lambda *a, **k: None):
        net = _Unloaded("inception-v3-compat", [POOL])
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            if p.dim() == 4:
                fan_in = p.shape[1] * p.shape[2] * p.shape[3]
                p.copy_(torch.randn(p.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
        # Pool features share one large common direction (ReLU + average pooling): a random head would
        # give every image the same class, IS ~ 1. Project it out and scale the head so that the logits
        # differ between calibration images by ~2.5 per class: IS of a few, as for real nets.
        net.features_list = [POOL]
        calib = torch.cat([torch.randint(0, 256, (6, 3, 32, 32), generator=gen, dtype=torch.uint8),
                           (torch.linspace(0, 255, 32).view(1, 1, 32, 1) * torch.rand(6, 3, 1, 1, generator=gen)).expand(-1, -1, -1, 32).to(torch.uint8)])
        feats = net.eval()(calib)[0].double()
        mean_dir = feats.mean(0) / feats.mean(0).norm()
        w = torch.randn(net.fc.weight.shape, generator=gen, dtype=torch.float64)
        w -= (w @ mean_dir)[:, None] * mean_dir[None]
        w *= 2.5 / float((feats @ w.T).std(0).mean())
        net.fc.weight.copy_(w.float())
        net.fc.bias.copy_(torch.randn(net.fc.bias.shape, generator=gen) * 0.1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)
    return path


__all__ = ["InceptionFeatures", "resolve_inception_weights", "hub_weights_path", "weights_url", "weights_file_name",
           "sha256_file", "make_random_inception_weights", "FEATURES_NAME"]
