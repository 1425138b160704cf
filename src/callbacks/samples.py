"""Fixed-noise samples during training: image grids, or scatter plots over the data for 2-D runs.

Grids are for looking at, not for scoring: each grid PNG carries a text chunk ``GRID_KEY`` (the
image size, count and upscaling), and ``is_sample_grid`` recognises it, or, for grids written before
the marker existed, a run's ``samples/step_XXXXXXX.png`` / ``samples/final.png``. ``src.evaluate``
refuses such files; ``python -m src.export`` writes individual images for scoring.
"""
import json
import math
import re
from pathlib import Path

import lightning as L
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from PIL.PngImagePlugin import PngInfo  # noqa: E402
from torchvision.utils import make_grid  # noqa: E402

GRID_KEY = "lipschitz-gan-lab:sample-grid"  # PNG text chunk that marks a sample grid
MIN_GRID_SIDE = 256  # small images (digits' 8x8 give an 82x82 grid) are upscaled, nearest-neighbour, to at least this
_SNAPSHOT_NAME = re.compile(r"(step_\d+|final)\.png")


def scatter_plot(samples: torch.Tensor, data: torch.Tensor, path: Path, title: str = "") -> None:
    fig, ax = plt.subplots(figsize=(5, 5))
    d = data[:5000].cpu().numpy()
    s = samples.cpu().numpy()
    ax.scatter(d[:, 0], d[:, 1], s=2, c="tab:blue", alpha=0.3, label="data")
    ax.scatter(s[:, 0], s[:, 1], s=2, c="tab:red", alpha=0.5, label="generated")
    lim = max(3.0, float(abs(d).max()) * 1.15)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.legend(loc="upper right", markerscale=4)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def grid_scale(side: int, min_side: int = MIN_GRID_SIDE) -> int:
    """The integer nearest-neighbour factor that brings a grid of this side to at least min_side pixels."""
    return max(1, math.ceil(min_side / max(1, side)))


def save_grid(images: torch.Tensor, path: Path, nrow: int = 8) -> torch.Tensor:
    """Save [-1, 1] images as one grid PNG (marked with GRID_KEY); returns the grid (C, H, W) in [0, 1].

    Rounds to uint8 as torchvision's save_image does. Small grids are upscaled by an integer factor,
    nearest-neighbour, so every generated pixel stays a sharp block."""
    grid = make_grid(images.detach().float().cpu(), nrow=nrow, normalize=True, value_range=(-1, 1))
    scale = grid_scale(max(grid.shape[1:]))
    if scale > 1:
        grid = torch.nn.functional.interpolate(grid[None], scale_factor=scale, mode="nearest")[0]
    array = grid.mul(255).add_(0.5).clamp_(0, 255).permute(1, 2, 0).to(torch.uint8).numpy()
    info = PngInfo()
    info.add_text(GRID_KEY, json.dumps({"images": int(images.shape[0]), "nrow": nrow,
                                        "image_size": list(images.shape[1:]), "scale": scale}))
    Image.fromarray(array[..., 0] if array.shape[2] == 1 else array).save(path, pnginfo=info)
    return grid


def is_sample_grid(path) -> bool:
    """Whether an image file is a training sample grid: it carries GRID_KEY, or it is a run's
    samples/step_*.png or samples/final.png (grids written before the marker)."""
    path = Path(path)
    parent = path.parent
    if parent.name == "samples" and _SNAPSHOT_NAME.fullmatch(path.name) and any(
            (parent.parent / marker).exists() for marker in ("summary.json", ".hydra", "checkpoints")):
        return True
    if path.suffix.lower() != ".png":
        return False
    try:
        with Image.open(path) as im:  # text chunks before the image data are read with the header
            return GRID_KEY in im.info
    except Exception:
        return False  # not readable as an image: the scorer reports it


class SampleSnapshots(L.Callback):
    """Every ``every`` generator updates (and at the end), save samples from the module's fixed noise."""

    def __init__(self, out_dir: Path, every: int = 1000, n_scatter: int = 2000):
        self.out_dir = Path(out_dir)
        self.every, self.n_scatter = every, n_scatter
        self.last_image = None  # path of the newest snapshot (loggers pick it up)

    def snapshot(self, trainer: L.Trainer, module, tag: str) -> Path:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        dm = trainer.datamodule
        path = self.out_dir / f"{tag}.png"
        if dm.is_image:
            grid = save_grid(module.generate(len(module.fixed_z), z=module.fixed_z), path)
            for logger in trainer.loggers:
                if hasattr(logger, "log_image"):
                    logger.log_image(key="samples", images=[grid], step=trainer.global_step)
        else:
            z = torch.randn(self.n_scatter, module.z_dim, generator=torch.Generator().manual_seed(0))
            scatter_plot(module.generate(self.n_scatter, z=z), dm.data, path, f"generator step {module.g_step}")
        self.last_image = path
        return path

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if self.every and module.g_step % self.every == 0 and trainer.is_global_zero:
            self.snapshot(trainer, module, f"step_{module.g_step:07d}")

    def on_train_end(self, trainer, module) -> None:
        if trainer.is_global_zero:
            self.snapshot(trainer, module, "final")
