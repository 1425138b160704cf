"""The run's loggers: W&B set up from the run's config and Hydra's job, and every logger closed with
the run's summary.

``conf/logger/wandb.yaml`` builds :class:`GANWandbLogger`. It decides online/offline by itself
(offline unless an API key is reachable), groups the runs of one sweep, names a run after the
overrides that distinguish it, logs the resolved config flattened ("optim/lr") and, at the end, the
summary and the final sample plot. The API key is only ever read from the environment or netrc by
wandb itself; nothing here copies it anywhere.

Under Hydra multirun the basic launcher runs every job in the same process: without wandb.finish()
all jobs would log into the first job's W&B run, so finish_loggers() finishes it.

One x-axis everywhere: every value (losses, spectral measurements, periodic and final scores) is
logged at the generator step, never at Lightning's optimizer-step counter (n_dis + 1 per generator
update). The resolved run config (the regularizer's and penalty's hyperparameters included) goes to
every logger: W&B's run config, TensorBoard's hparams, the CSV logger's hparams.yaml.

Resumed runs keep their history: :class:`GANCSVLogger` keeps the rows of metrics.csv up to the
checkpoint's step (Lightning's CSVLogger deletes the file), :class:`GANTensorBoardLogger` purges
events after it, and :class:`GANWandbLogger` continues the same W&B run (its id is kept in the run dir).
"""
import logging
import netrc
import os
from pathlib import Path
from urllib.parse import urlparse

from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_only

log = logging.getLogger(__name__)

MODES = ("auto", "online", "offline", "disabled")


def _netrc_has_wandb_key() -> bool:
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    path = os.environ.get("NETRC") or os.path.join(os.path.expanduser("~"), ".netrc")
    try:
        auth = netrc.netrc(path).authenticators(host)
    except (OSError, netrc.NetrcParseError):
        return False
    return bool(auth and auth[2])


def wandb_mode(requested: str = "auto") -> str:
    """online / offline / disabled. ``auto``: $WANDB_MODE if set, else online when an API key is
    reachable ($WANDB_API_KEY or a netrc entry, as ``wandb login`` writes), else offline, so a run
    without credentials never blocks on a login prompt and can be uploaded later with ``wandb sync``."""
    requested = (requested or "auto").lower()
    if requested not in MODES:
        raise ValueError(f"logger.mode={requested!r} is unknown; valid: {', '.join(MODES)}")
    if requested != "auto":
        return requested
    env = os.environ.get("WANDB_MODE", "").lower()
    if env:
        return {"dryrun": "offline", "run": "online"}.get(env, env)
    return "online" if os.environ.get("WANDB_API_KEY") or _netrc_has_wandb_key() else "offline"


def flatten(d, sep: str = "/", prefix: str = "") -> dict:
    """{'optim': {'lr': 1e-3}} -> {'optim/lr': 1e-3}; lists stay values (W&B shows them as such)."""
    out = {}
    for k, v in (d or {}).items():
        key = f"{prefix}{sep}{k}" if prefix else str(k)
        if isinstance(v, dict):
            out.update(flatten(v, sep, key) if v else {key: {}})
        else:
            out[key] = v
    return out


def _hydra_job() -> dict:
    """What Hydra knows about the current job (empty outside a Hydra app, e.g. tests composing configs)."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
    except Exception:
        return {}
    multirun = hc.mode == RunMode.MULTIRUN
    info = {"multirun": multirun, "overrides": list(hc.overrides.task), "output_dir": hc.runtime.output_dir,
            "cwd": hc.runtime.cwd}
    if multirun:
        info["sweep_dir"] = hc.sweep.dir
        info["job_num"] = hc.job.num
    return info


def _sweep_group(job: dict) -> str | None:
    """The sweep dir, relative to where the sweep was launched when it lies below it."""
    if not job.get("multirun"):
        return None
    sweep = Path(job["sweep_dir"])
    try:
        return str(sweep.resolve().relative_to(Path(job["cwd"]).resolve()))
    except (ValueError, OSError):
        return sweep.name


def _run_name(job: dict, fallback: str | None) -> str | None:
    """'optim=D,regularizer=sn,seed=0': the overrides that vary in the sweep (all of the job's
    overrides outside a sweep); logger settings are left out."""
    overrides = [o for o in job.get("overrides", []) if not o.lstrip("+~").startswith("logger")]
    if job.get("multirun"):
        from .report.sweep import swept_keys

        varying = set(swept_keys(Path(job["sweep_dir"])))
        if varying:
            overrides = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") in varying]
    name = ",".join(overrides)
    return (name[:120] if name else None) or fallback


class GANWandbLogger(WandbLogger):
    """Lightning's WandbLogger, configured for this project's runs (see the module docstring).

    ``mode``: auto | online | offline | disabled. ``group`` / ``name``: "auto" derives them from
    the sweep and the overrides (``name_fallback`` when a run has no overrides); anything else is
    used as given. ``tags``: strings, empty ones dropped (W&B caps a tag at 64 characters).
    """

    def __init__(self, mode: str = "auto", group: str | None = "auto", name: str | None = "auto",
                 name_fallback: str | None = None, tags=(), config_sep: str = "/", log_final_images: bool = True,
                 **kwargs):
        job = _hydra_job()
        self._job = job
        self._config_sep = config_sep
        self._config_logged = False
        self._log_final_images = log_final_images
        self.wandb_mode = wandb_mode(mode)
        if group == "auto":
            group = _sweep_group(job)
        if name == "auto":
            name = _run_name(job, name_fallback)
        tags = [str(t)[:64] for t in (tags or []) if t not in (None, "")]
        if kwargs.get("save_dir") is None:  # the run dir, so offline runs sit next to the run's other outputs
            kwargs["save_dir"] = job.get("output_dir", ".")
        # one W&B run per run directory: a resumed run continues the run its first segment started
        self._id_file = Path(kwargs["save_dir"]) / "wandb" / "run_id"
        if kwargs.get("id") is None and self._id_file.is_file():
            kwargs["id"] = self._id_file.read_text().strip() or None
            kwargs.setdefault("resume", "allow")
        # mode goes to wandb.init: Lightning's own offline flag would set WANDB_MODE for the whole
        # process, and with it every later job of a sweep
        super().__init__(name=name, group=group, tags=tags, mode=self.wandb_mode, **kwargs)

    @rank_zero_only  # under DDP the other ranks hold a dummy experiment
    def log_graph(self, model, input_array=None) -> None:
        # Lightning calls this once per fit with the module, right after logging hyperparameters:
        # the module holds the run's resolved config
        config = getattr(model, "run_config", None)
        if config and not self._config_logged:
            self.log_run_config(config)

    @property
    def experiment(self):
        run = super().experiment
        if rank_zero_only.rank == 0 and getattr(run, "id", None) and not self._id_file.is_file():
            self._id_file.parent.mkdir(parents=True, exist_ok=True)
            self._id_file.write_text(str(run.id))
        return run

    def log_run_config(self, config: dict) -> None:
        """The resolved config, flattened ('optim/lr'), plus where the run lives and what was overridden."""
        values = flatten(config, self._config_sep)
        job = self._job
        for key in ("overrides", "output_dir", "sweep_dir", "job_num"):
            if key in job:
                values[f"hydra{self._config_sep}{key}"] = job[key]
        self.experiment.config.update(values, allow_val_change=True)
        self._config_logged = True


def log_final(logger, summary: dict, sep: str = "/") -> None:
    """The summary into the W&B run's summary (flattened) and the final samples and loss curves as images."""
    run = getattr(logger, "_experiment", None)
    if run is None:
        return
    run.summary.update({k: v for k, v in flatten(summary, sep).items() if not isinstance(v, (dict, list))})
    if not getattr(logger, "_log_final_images", True):
        return
    import wandb

    run_dir = Path(logger.save_dir or ".")
    images = {key: run_dir / rel for key, rel in (("samples/final", "samples/final.png"), ("loss_curves", "loss_curves.png"))}
    images = {key: wandb.Image(str(path)) for key, path in images.items() if path.is_file()}
    if images:
        run.log(images)


class _ResumableWriter(ExperimentWriter):
    """CSVLogger's writer, except that an existing metrics.csv keeps its rows up to ``keep_until``
    (the step a resumed run continues from) instead of being deleted."""

    keep_until: int | None = None

    def _check_log_dir_exists(self) -> None:
        import csv

        if self.keep_until is None or not self._fs.isfile(self.metrics_file_path):
            return super()._check_log_dir_exists()
        with self._fs.open(self.metrics_file_path, "r", newline="") as f:
            reader = csv.DictReader(f)
            keys = list(reader.fieldnames or [])
            rows = [r for r in reader if r.get("step") not in (None, "") and float(r["step"]) <= self.keep_until]
        from .atomic_write import write_atomic
        import io

        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
        write_atomic(self.metrics_file_path, out.getvalue())
        self.metrics_keys = sorted(keys)


class GANCSVLogger(CSVLogger):
    """Lightning's CSVLogger (logs/metrics.csv, hparams.yaml) whose history survives a resume."""

    _keep_until: int | None = None

    def resume_at(self, step: int) -> None:
        """Called before training: keep the rows logged up to ``step`` (0 or less: a fresh run)."""
        self._keep_until = step if step > 0 else None

    @property
    @rank_zero_experiment
    def experiment(self):
        if self._experiment is None:
            writer_cls = type("Writer", (_ResumableWriter,), {"keep_until": self._keep_until})
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = writer_cls(log_dir=self.log_dir)
        return self._experiment


class GANTensorBoardLogger(TensorBoardLogger):
    """Lightning's TensorBoardLogger; a resumed run purges the events logged after its checkpoint."""

    def resume_at(self, step: int) -> None:
        if step > 0:
            self._kwargs["purge_step"] = step + 1


def log_hyperparams(loggers, config: dict) -> None:
    """The resolved run config, flattened ("regularizer/lam"), to every logger (W&B takes it, with the
    Hydra job's overrides, through GANWandbLogger.log_run_config)."""
    values = flatten(config)
    for logger in loggers or []:
        if isinstance(logger, WandbLogger):
            continue
        try:
            logger.log_hyperparams(values)
        except Exception:  # a mirror of the config; the run dir's .hydra/config.yaml is the record
            log.warning("could not log the run config to %s", type(logger).__name__, exc_info=True)


def finish_loggers(loggers, summary: dict, step: int = 0) -> None:
    """The final scores at the run's last generator step (the same x-axis as everything else), then close."""
    for logger in loggers or []:
        final = {f"final/{k}": v for k, v in (summary.get("metrics") or {}).items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool)}
        is_wandb = isinstance(logger, WandbLogger)
        if is_wandb and logger._experiment is None:
            continue  # the run never started (failed before training): logging now would start one
        if final:
            try:
                logger.log_metrics(final, step=step)
            except Exception:
                log.warning("could not log the final metrics to %s", type(logger).__name__, exc_info=True)
        if is_wandb:
            run = logger._experiment
            try:
                log_final(logger, summary)
            except Exception:  # the summary.json on disk is the record; W&B is a mirror
                log.warning("could not log the summary to W&B", exc_info=True)
            run.finish(exit_code=0 if summary.get("status") == "completed" else 1)
            logger._experiment = None
        else:
            try:
                logger.finalize("success" if summary.get("status") == "completed" else "failed")
            except Exception:
                log.warning("could not close %s", type(logger).__name__, exc_info=True)
