"""Fixed-noise samples during training: image grids, or scatter plots over the data for 2-D runs."""
from pathlib import Path

import lightning as L
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torchvision.utils import make_grid, save_image  # noqa: E402


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


def save_grid(images: torch.Tensor, path: Path) -> torch.Tensor:
    grid = make_grid(images, nrow=8, normalize=True, value_range=(-1, 1))
    save_image(grid, path)
    return grid


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
