"""Shared helpers of the analysis commands: compose a run config as the CLI would, list regularizers."""
import os
from pathlib import Path

from omegaconf import DictConfig, open_dict

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


def compose(overrides, run_dir: Path) -> DictConfig:
    """The config ``python -m src.train OVERRIDES hydra.run.dir=RUN_DIR`` would run with."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = hydra_compose("config", overrides=[*overrides, f"hydra.runtime.output_dir={run_dir}"], return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)  # ${hydra:runtime.output_dir} resolves to run_dir
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def train(overrides, run_dir: Path, prepare=None) -> dict:
    """Train one run in this process with src.train's own builders (fresh: run_dir is emptied).

    ``prepare(module)``, when given, runs after the module is built and before training.
    Returns {module, datamodule, trainer, status ("completed" / "diverged"), error, seconds, steps,
    metrics (the run's evaluator; {} when it diverged), loss}.
    """
    import shutil
    import time

    from ..errors import DivergedError
    from ..train import build_run, make_trainer

    shutil.rmtree(run_dir, ignore_errors=True)
    cfg = compose(["trainer.enable_progress_bar=false", *overrides], run_dir)
    module, dm, evaluator = build_run(cfg, run_dir)
    if prepare is not None:
        prepare(module)
    dm.steps_per_fit = cfg.steps
    trainer, _ = make_trainer(cfg, run_dir, module)
    t0 = time.perf_counter()
    status, error = "completed", None
    try:
        trainer.fit(module, datamodule=dm)
    except DivergedError as exc:
        status, error = "diverged", str(exc)
    seconds = time.perf_counter() - t0
    metrics = evaluator.evaluate(module.generate, dm) if status == "completed" else {}
    return {"module": module, "datamodule": dm, "trainer": trainer, "status": status, "error": error, "seconds": seconds,
            "steps": module.g_step, "metrics": metrics, "loss": cfg.loss.name}


def save_figure(fig, path: Path, dpi: int = 80, colors: int = 128) -> None:
    """Save a matplotlib figure as a palette PNG (a few times smaller; these figures get committed)."""
    from PIL import Image

    fig.savefig(path, dpi=dpi)
    with Image.open(path) as im:
        small = im.convert("RGB").quantize(colors=colors, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)
