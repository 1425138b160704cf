"""Train one GAN: ``python -m src.train [group=option ...] [key=value ...]`` (Hydra).

Thin on purpose: compose the config, build the pieces with hydra.utils.instantiate, hand them to
Lightning, score the generator, and write summary.json (status completed / diverged / failed).
"""
import logging
import sys
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from .errors import DivergedError, UserError
from .summary import base_summary, write_summary

log = logging.getLogger(__name__)


def build_run(cfg: DictConfig, run_dir: Path):
    """Everything a run needs, built and checked before any training: (module, datamodule, evaluator, trainer kwargs)."""
    import lightning as L
    import torch

    from .data import GANDataModule
    from .errors import instantiate
    from .losses import get_loss
    from .metrics import build_evaluator
    from .module import GAN
    from .regularizers import build_regularizer

    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
    data_cfg.pop("steps", None)
    datamodule = GANDataModule(**data_cfg)
    datamodule.load()
    evaluator = build_evaluator(cfg.metrics, datamodule)
    evaluator.check_ready()  # fail now, not after hours of training
    regularizer = build_regularizer(cfg.regularizer)
    loss = get_loss(cfg.loss.name)

    arch = OmegaConf.to_container(cfg.arch, resolve=True)
    arch.pop("name")
    if datamodule.is_image:
        generator, discriminator = instantiate(arch, z_dim=cfg.z_dim, resolution=datamodule.resolution, channels=datamodule.channels)
    else:
        generator, discriminator = instantiate(arch, z_dim=cfg.z_dim, data_shape=datamodule.sample_shape)
    example = datamodule.sample(2, torch.Generator().manual_seed(0))
    module = GAN(generator, discriminator, regularizer, loss, OmegaConf.to_container(cfg.optim, resolve=True),
                 z_dim=cfg.z_dim, batch_size=cfg.data.batch_size, steps=cfg.steps, seed=cfg.seed,
                 example_input=example, log_every=cfg.log_every,
                 run_config=OmegaConf.to_container(cfg, resolve=True),
                 perf=OmegaConf.to_container(cfg.perf, resolve=True) if cfg.get("perf") else None)
    return module, datamodule, evaluator


def make_trainer(cfg: DictConfig, run_dir: Path, module, extra_callbacks=()):
    import lightning as L
    from hydra.utils import instantiate

    from .callbacks import GeneratorStepCheckpoint, LossCurves, SampleSnapshots, StepTimer
    from .checkpoint_io import AtomicCheckpointIO
    from .module import total_optimizer_steps

    n_dis = int(cfg.optim.n_dis)
    timer = StepTimer()
    callbacks = [
        GeneratorStepCheckpoint(n_dis, cfg.checkpoint.every, dirpath=run_dir / "checkpoints", save_top_k=-1, save_last=True),
        SampleSnapshots(run_dir / "samples", every=cfg.samples.every),
        LossCurves(run_dir / "loss_curves.png", title=f"{cfg.regularizer.name} / {cfg.loss.name} / {cfg.optim.name}"),
        timer,
        *extra_callbacks,
        *[instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None and c.get("_target_")],
    ]
    logger = instantiate(cfg.logger) if cfg.logger.get("_target_") else False
    trainer_kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
    trainer = L.Trainer(
        max_steps=total_optimizer_steps(cfg.steps, n_dis), max_epochs=-1, logger=logger, callbacks=callbacks,
        default_root_dir=str(run_dir), log_every_n_steps=max(1, int(cfg.log_every)), enable_model_summary=False,
        num_sanity_val_steps=0, plugins=[AtomicCheckpointIO()], **trainer_kwargs)
    return trainer, timer


def peak_memory() -> dict:
    """Peak host memory of this process (ru_maxrss) and, on a GPU, peak device memory, in MiB."""
    import resource

    import torch

    out = {"peak_host_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["peak_device_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


# what a checkpoint must share with the run that resumes from it (the networks' shapes and wrapping)
RESUME_KEYS = ("arch.name", "regularizer.name", "data.resolution", "data.channels", "z_dim")


def resolve_ckpt(cfg: DictConfig, run_dir: Path):
    """The checkpoint to resume from (or None), checked now: readable, and trained with the same networks."""
    last = run_dir / "checkpoints" / "last.ckpt"
    if cfg.ckpt_path in (None, "", "null"):
        path = last if last.is_file() else None  # a run dir that already holds a checkpoint resumes
    elif cfg.ckpt_path == "last":
        if not last.is_file():
            raise UserError(f"ckpt_path=last but {last} does not exist; give a path to a .ckpt file or drop ckpt_path")
        path = last
    else:
        path = Path(cfg.ckpt_path)
        if not path.is_file():
            raise UserError(f"ckpt_path={cfg.ckpt_path} does not exist; give a path to a .ckpt file, or 'last'")
    if path is None:
        return None
    from .checkpoint_io import load_checkpoint_file

    saved = OmegaConf.create(load_checkpoint_file(path).get("run_config") or {})
    for key in RESUME_KEYS:
        theirs, ours = OmegaConf.select(saved, key, default=None), OmegaConf.select(cfg, key, default=None)
        if theirs != ours:
            raise UserError(f"checkpoint {path} was trained with {key}={theirs}, this run has {key}={ours}; "
                            f"resume with the same {key.split('.')[0]} or start a new run directory")
    return str(path)


def run(cfg: DictConfig, run_dir: Path) -> dict:
    """Train, evaluate and summarise one run; never raises for a failed run (the summary says why)."""
    from .validation import validate

    summary = base_summary(cfg)
    module = trainer = None
    try:
        validate(cfg)
        ckpt = resolve_ckpt(cfg, run_dir)
        module, datamodule, evaluator = build_run(cfg, run_dir)
        datamodule.steps_per_fit = cfg.steps
        trainer, timer = make_trainer(cfg, run_dir, module, getattr(evaluator, "training_callbacks", lambda: [])())
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt)
        summary["steps"] = module.g_step
        summary["timing"] = {"sec_per_step": timer.sec_per_step, "total_sec": timer.total_sec}
        # Image evaluators are collectives under DDP (every rank generates, each runs the feature network on
        # its share of the batches, rank 0 gathers and scores): call them on every rank. The toy / none
        # evaluators are cheap and local: rank 0 alone. Only rank 0 writes the summary (below).
        if trainer.is_global_zero or getattr(evaluator, "runs_on_all_ranks", False):
            if trainer.is_global_zero:
                log.info("evaluating the generator ...")
            metrics = evaluator.evaluate(module.generate, datamodule)
            history = metrics.pop("history", None)  # periodic evaluations (metrics.every)
            summary["metrics"] = metrics
            if history:
                summary["metrics_history"] = history
            summary["eval_protocol"] = evaluator.protocol()
            shares = getattr(evaluator, "distributed_info", lambda: None)()
            if shares:  # DDP: how the feature network's work was split over the ranks
                summary["eval_distributed"] = shares
        summary["status"] = "completed"
    except DivergedError as exc:
        summary.update(status="diverged", error=str(exc), steps=exc.step)
        log.warning("run diverged: %s", exc)
    except UserError as exc:
        summary.update(status="failed", error=str(exc))
        summary["error_kind"] = "user"
    except Exception as exc:  # a bug or an environment failure: keep the trace in the log, one line in the summary
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        summary.update(status="failed", error=f"{type(exc).__name__}: {first}"[:500])
        summary["error_kind"] = "internal"
        log.error("run failed:\n%s", traceback.format_exc())
    if module is not None and summary["status"] != "completed" and module._trainer is not None:
        summary["steps"] = summary["steps"] or module.g_step
    summary["resources"] = peak_memory()
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    if (trainer.is_global_zero if trainer is not None else rank_zero_only.rank == 0):  # only rank 0 writes under DDP
        write_summary(run_dir, summary)
    if trainer is not None:
        from .loggers import finish_loggers

        finish_loggers(trainer.loggers, summary)
    return summary


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig):
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    summary = run(cfg, run_dir)
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    if rank_zero_only.rank != 0:  # DDP workers: rank 0 reports
        return summary
    if summary["status"] == "failed":
        print(f"error: {summary['error']}", file=sys.stderr)
        if not multirun:  # in a sweep, the other jobs go on; the summary records the failure
            sys.exit(2 if summary.get("error_kind") == "user" else 1)
    elif summary["status"] == "diverged":
        print(f"diverged: {summary['error']} (summary: {run_dir / 'summary.json'})", file=sys.stderr)
        if not multirun:
            sys.exit(3)
    else:
        metrics = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in summary["metrics"].items()
                            if isinstance(v, (int, float)))
        print(f"done: {summary['steps']} generator steps in {summary['timing']['total_sec']:.1f}s; {metrics}\nrun dir: {run_dir}")
    return summary


def _check_output_dir(argv) -> None:
    """Hydra creates the run dir before our code runs and reports failures as a traceback: check first."""
    import os

    for arg in argv:
        key, _, value = arg.partition("=")
        if key.lstrip("+") in ("hydra.run.dir", "hydra.sweep.dir") and value and "${" not in value:
            target = Path(value).expanduser().absolute()
            parent = target
            while not parent.exists():
                parent = parent.parent
            if not parent.is_dir() or not os.access(parent, os.W_OK):
                print(f"error: {key}={value} cannot be created ({parent} is not a writable folder); choose a writable output folder",
                      file=sys.stderr)
                sys.exit(2)


if __name__ == "__main__":
    _check_output_dir(sys.argv[1:])
    main()
