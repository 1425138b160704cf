"""One run, assembled from a composed config: the only place where a run's pieces are built.

``assemble(cfg, run_dir)`` returns a ``Run``: the datamodule (loaded, ``steps_per_fit`` set), the
evaluator (checked ready, so a run that could not be scored fails before training), the regularizer,
the loss, G and D, the ``GAN`` module, the callbacks, the Lightning trainer and its step timer.
``src.train`` (the run's lifecycle), ``src.analysis``, the benchmarks and the tests all train what it
returns; ``src.evaluate`` / ``src.export`` rebuild a trained generator with ``build_datamodule`` and
``build_networks``, the same functions ``assemble`` uses. The order in which pieces are built is part
of a run's numbers (what draws from the seeded global RNG, and when): keep it.

Configs are the object graph: ``data`` and ``loss`` (and the regularizer, the arch, the logger, the
extra callbacks) carry their ``_target_`` and are built with ``hydra.utils.instantiate``; ``optim``
holds an ``optimizer`` ``_partial_`` that the module calls with each network's parameters, and
``metrics`` is a ``_partial_`` of ``src.metrics.build_evaluator`` called with the datamodule.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

CONF = Path(__file__).resolve().parents[1] / "conf"
DEFAULT_DATAMODULE = "src.data.GANDataModule"  # data configs (and checkpoints) without a _target_


@dataclass
class Run:
    """Everything one run needs, built from its config."""

    cfg: DictConfig
    run_dir: Path | None
    datamodule: Any
    evaluator: Any
    regularizer: Any
    loss: Any
    generator: Any
    discriminator: Any
    module: Any
    callbacks: list = field(default_factory=list)
    trainer: Any = None
    timer: Any = None

    @property
    def steps_per_fit(self) -> int:
        return self.datamodule.steps_per_fit


def compose(overrides=(), run_dir: Path | None = None) -> DictConfig:
    """The config ``python -m src.train OVERRIDES hydra.run.dir=RUN_DIR`` would run with (Hydra's
    runtime keys set for run_dir, the hydra node dropped as in the CLI's cfg)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    import src  # noqa: F401  (registers the OmegaConf resolvers the configs use)

    GlobalHydra.instance().clear()
    overrides = list(overrides)
    if run_dir is not None:
        overrides.append(f"hydra.runtime.output_dir={run_dir}")
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = hydra_compose("config", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)  # ${hydra:runtime.output_dir} resolves to run_dir
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def build_datamodule(data_cfg, **overrides):
    """The datamodule of a data config (not loaded); ``overrides`` replace config keys (e.g. split)."""
    from .errors import instantiate

    values = OmegaConf.to_container(data_cfg, resolve=True) if OmegaConf.is_config(data_cfg) else dict(data_cfg)
    values.update(overrides)
    values.pop("steps", None)
    values.setdefault("_target_", DEFAULT_DATAMODULE)
    return instantiate(values)


def build_networks(arch_cfg, z_dim: int, datamodule):
    """(G, D) of an arch config for the datamodule's samples: an arch that takes ``data_shape`` (the MLP,
    on 2-D points or small images) gets the sample shape; image archs get resolution and channels."""
    import inspect

    from hydra.utils import get_method

    from .errors import instantiate

    arch = OmegaConf.to_container(arch_cfg, resolve=True) if OmegaConf.is_config(arch_cfg) else dict(arch_cfg)
    arch.pop("name", None)
    if "data_shape" in inspect.signature(get_method(arch["_target_"])).parameters:
        return instantiate(arch, z_dim=z_dim, data_shape=datamodule.sample_shape)
    return instantiate(arch, z_dim=z_dim, resolution=datamodule.resolution, channels=datamodule.channels)


def build_evaluator_of(metrics_cfg, datamodule):
    """The evaluator of a metrics config (its build_evaluator _partial_, called with the datamodule)."""
    from .metrics import build_evaluator

    if metrics_cfg.get("_target_"):
        from hydra.utils import instantiate

        return instantiate(metrics_cfg)(datamodule=datamodule)
    return build_evaluator(metrics_cfg, datamodule)


def build_loss(loss_cfg):
    from .errors import instantiate
    from .losses import get_loss

    if loss_cfg.get("_target_"):
        return instantiate(loss_cfg)
    return get_loss(loss_cfg.name)


def build_optimizer(optim: dict):
    """The optimizer factory (params -> torch optimizer) of an optim config: its ``optimizer`` partial,
    or Adam from lr / beta1 / beta2 for configs written before it existed."""
    from functools import partial

    import torch
    from hydra.utils import instantiate

    spec = optim.get("optimizer")
    if spec:
        return instantiate(spec, _convert_="all")
    return partial(torch.optim.Adam, lr=float(optim["lr"]), betas=(float(optim["beta1"]), float(optim["beta2"])))


def assemble(cfg: DictConfig, run_dir: Path | None = None, *, guard=None, resume_step: int = 0,
             trainer: bool = True, extra_callbacks=()) -> Run:
    """Build a run from its composed config (see the module docstring). ``trainer=False`` stops before the
    callbacks and the trainer (no run directory needed); ``guard`` is src.train's InterruptGuard;
    ``resume_step`` the generator step a resumed run starts at (its logger keeps the history before it)."""
    import lightning as L
    import torch

    from .module import GAN
    from .regularizers import build_regularizer
    from .threads import resolve_threads

    threads = resolve_threads(cfg.get("threads"), _hydra_launcher())
    if threads:
        torch.set_num_threads(threads)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = build_datamodule(cfg.data)
    datamodule.load()
    datamodule.steps_per_fit = int(cfg.steps)  # the training loader yields one item per generator step
    evaluator = build_evaluator_of(cfg.metrics, datamodule)
    evaluator.check_ready()  # fail now, not after hours of training
    regularizer = build_regularizer(cfg.regularizer, cfg.get("penalty"))
    loss = build_loss(cfg.loss)
    generator, discriminator = build_networks(cfg.arch, cfg.z_dim, datamodule)
    example = datamodule.sample(2, torch.Generator().manual_seed(0))
    optim = OmegaConf.to_container(cfg.optim, resolve=True)
    module = GAN(generator, discriminator, regularizer, loss, optim,
                 z_dim=cfg.z_dim, batch_size=cfg.data.batch_size, steps=cfg.steps, seed=cfg.seed,
                 example_input=example, log_every=cfg.log_every,
                 run_config=OmegaConf.to_container(cfg, resolve=True),
                 perf=OmegaConf.to_container(cfg.perf, resolve=True) if cfg.get("perf") else None,
                 optimizer=build_optimizer(optim))
    run = Run(cfg=cfg, run_dir=Path(run_dir) if run_dir is not None else None, datamodule=datamodule,
              evaluator=evaluator, regularizer=regularizer, loss=loss, generator=generator,
              discriminator=discriminator, module=module)
    if trainer:
        if run_dir is None:
            raise ValueError("assemble(trainer=True) needs a run_dir")
        callbacks = [*getattr(evaluator, "training_callbacks", lambda: [])(), *extra_callbacks]
        run.trainer, run.timer, run.callbacks = build_trainer(cfg, run.run_dir, callbacks, guard, resume_step)
    return run


def build_trainer(cfg: DictConfig, run_dir: Path, extra_callbacks=(), guard=None, resume_step: int = 0):
    """(trainer, step timer, callbacks): checkpoints, interrupt handling, samples, loss curves, timing, the
    evaluator's and the configured callbacks, the logger; max_steps from ``steps`` and n_dis."""
    import lightning as L
    from hydra.utils import instantiate

    from .callbacks import GeneratorStepCheckpoint, LossCurves, SampleSnapshots, StepTimer
    from .callbacks.interrupt import InterruptGuard, StopAtStepBoundary
    from .checkpoint_io import AtomicCheckpointIO
    from .module import total_optimizer_steps
    from .summary import method_fields

    n_dis = int(cfg.optim.n_dis)
    timer = StepTimer()
    checkpoints = GeneratorStepCheckpoint(n_dis, cfg.checkpoint.every, dirpath=run_dir / "checkpoints", save_top_k=-1, save_last=True)
    callbacks = [
        checkpoints,
        SampleSnapshots(run_dir / "samples", every=cfg.samples.every),
        LossCurves(run_dir / "loss_curves.png", title=f"{method_fields(cfg)['method']} / {cfg.loss.name} / {cfg.optim.name}"),
        timer,
        *extra_callbacks,
        *[instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None and c.get("_target_")],
        # after every other callback's end of step (Lightning runs ModelCheckpoint last of all): the
        # checkpoint a signal causes holds that step's scores and measurements, as a periodic one does
        StopAtStepBoundary(guard or InterruptGuard(), checkpoints.last_path),
    ]
    logger = instantiate(cfg.logger) if cfg.logger.get("_target_") else False
    if logger and hasattr(logger, "resume_at"):
        logger.resume_at(resume_step)  # keep the history of the segments before this one
    trainer_kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
    trainer = L.Trainer(
        max_steps=total_optimizer_steps(cfg.steps, n_dis), max_epochs=-1, logger=logger, callbacks=callbacks,
        default_root_dir=str(run_dir), log_every_n_steps=max(1, int(cfg.log_every)), enable_model_summary=False,
        num_sanity_val_steps=0, plugins=[AtomicCheckpointIO()], **trainer_kwargs)
    return trainer, timer, callbacks


def _hydra_launcher() -> dict | None:
    """The Hydra launcher's config in a multirun (for the threads a job may take), else None."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    try:
        hc = HydraConfig.get()
    except ValueError:  # not under Hydra (tests composing configs)
        return None
    if hc.mode != RunMode.MULTIRUN:
        return None
    return OmegaConf.to_container(hc.launcher, resolve=False) if hc.get("launcher") else None


__all__ = ["Run", "assemble", "build_datamodule", "build_evaluator_of", "build_networks", "build_loss", "build_optimizer",
           "build_trainer", "compose"]
