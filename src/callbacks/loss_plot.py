"""Loss curves of the run, plotted at the end of training from the module's logged history."""
from pathlib import Path

import lightning as L
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_losses(history: list, path: Path, title: str = "") -> None:
    fig, ax = plt.subplots(figsize=(7, 4))
    steps = [h["step"] for h in history]
    for key, label in [("loss/d", "D loss"), ("loss/g", "G loss"), ("loss/penalty", "penalty")]:
        vals = [h.get(key) for h in history]
        if any(v is not None for v in vals):
            ax.plot(steps, vals, label=label, lw=1)
    ax.set_xlabel("generator step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


class LossCurves(L.Callback):
    def __init__(self, path: Path, title: str = ""):
        self.path, self.title = Path(path), title

    def on_train_end(self, trainer, module) -> None:
        if trainer.is_global_zero and module.history:
            plot_losses(module.history, self.path, self.title)
