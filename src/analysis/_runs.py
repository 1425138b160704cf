"""Shared helpers of the analysis commands: train a run as the CLI would (src/assemble.py), list regularizers."""
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "conf"


def limit_threads(n: int | None) -> None:
    """Pin torch to n threads: on a busy shared CPU, oversubscribed OpenMP threads are far slower."""
    import torch

    if n:
        torch.set_num_threads(n)
        os.environ.setdefault("OMP_NUM_THREADS", str(n))


def available_regularizers() -> list:
    return sorted(p.stem for p in (CONF / "regularizer").glob("*.yaml"))


def train(overrides, run_dir: Path) -> dict:
    """Train one run in this process, assembled as src.train assembles it (fresh: run_dir is emptied).

    Returns {module, datamodule, trainer, status ("completed" / "diverged"), error, seconds, steps,
    metrics (the run's evaluator; {} when it diverged), loss}.
    """
    import shutil
    import time

    from ..assemble import assemble, compose
    from ..errors import DivergedError

    shutil.rmtree(run_dir, ignore_errors=True)
    run = assemble(compose(["trainer.enable_progress_bar=false", *overrides], run_dir), run_dir)
    module, dm, trainer = run.module, run.datamodule, run.trainer
    t0 = time.perf_counter()
    status, error = "completed", None
    try:
        trainer.fit(module, datamodule=dm)
    except DivergedError as exc:
        status, error = "diverged", str(exc)
    seconds = time.perf_counter() - t0
    metrics = run.evaluator.evaluate(module, dm) if status == "completed" else {}
    return {"module": module, "datamodule": dm, "trainer": trainer, "status": status, "error": error, "seconds": seconds,
            "steps": module.g_step, "metrics": metrics, "loss": run.cfg.loss.name}


def save_figure(fig, path: Path, dpi: int = 80, colors: int = 128) -> None:
    """Save a matplotlib figure as a palette PNG (a few times smaller; these figures get committed)."""
    from PIL import Image

    fig.savefig(path, dpi=dpi)
    with Image.open(path) as im:
        small = im.convert("RGB").quantize(colors=colors, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)
