"""Train one GAN: ``python -m src.train [group=option ...] [key=value ...]`` (Hydra).

Thin on purpose: the run's pieces are built by src/assemble.py (``assemble``); this module is the
Hydra entry point and a run's lifecycle: lock the run directory, check the config and the checkpoint
to resume from, fit, score the generator, and write summary.json (status completed / diverged /
failed / interrupted; "running" while it trains).

What keeps long, many-job work honest lives here too: the run directory's lock (src/run_lock.py),
the signal handling (src/callbacks/interrupt.py), the checks that a resumed checkpoint means the same
run, and one-line errors for everything a user or the machine can get wrong.
"""
import logging
import os
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


def peak_memory() -> dict:
    """Peak host memory of this process (ru_maxrss) and, on a GPU, peak device memory, in MiB."""
    import resource

    import torch

    out = {"peak_host_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["peak_device_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


# What a checkpoint must share with the run that resumes from it: the networks' shapes and wrapping,
# and the meaning of Lightning's step counter (n_dis + 1 optimizer steps per generator update).
RESUME_KEYS = ("arch.name", "arch.d_activation", "arch.width", "regularizer.name", "penalty.name", "data.name",
               "data.resolution", "data.channels", "z_dim", "optim.n_dis")


def resolve_ckpt(cfg: DictConfig, run_dir: Path):
    """The checkpoint to resume from and its generator step, (None, 0) for a fresh run; checked now:
    readable, written by this lab, and trained with the same networks and step counter."""
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
        return None, 0
    from .checkpoint_io import load_checkpoint_file

    checkpoint = load_checkpoint_file(path)
    if not isinstance(checkpoint.get("run_config"), dict) or not isinstance(checkpoint.get("global_step"), int):
        raise UserError(f"checkpoint {path} was not written by this lab (it has no run_config / global_step); "
                        "give a checkpoint from a run's checkpoints/ folder, or drop ckpt_path to start afresh")
    saved = OmegaConf.create(checkpoint["run_config"])
    for key in RESUME_KEYS:
        theirs, ours = OmegaConf.select(saved, key, default=None), OmegaConf.select(cfg, key, default=None)
        if theirs != ours:
            raise UserError(f"checkpoint {path} was trained with {key}={theirs}, this run has {key}={ours}; "
                            f"resume with the same {key}, or start a new run directory")
    n_dis = int(OmegaConf.select(saved, "optim.n_dis"))
    g_step = checkpoint["global_step"] // (n_dis + 1)
    if g_step > int(cfg.steps):
        raise UserError(f"checkpoint {path} is at generator step {g_step}, beyond steps={cfg.steps}; "
                        f"give steps>={g_step}, or start a new run directory")
    return str(path), g_step


def _save_run_config(cfg: DictConfig, run_dir: Path) -> None:
    """The composed config and overrides into <run dir>/.hydra/, as Hydra would, but only once this run
    holds the directory's lock (conf/config.yaml turns Hydra's own copy off: it would overwrite the
    files of a run still training there)."""
    from .atomic_write import write_atomic

    try:
        hc = HydraConfig.get()
    except ValueError:  # not under Hydra (tests composing a config): the config alone
        hc = None
    folder = run_dir / ".hydra"
    write_atomic(folder / "config.yaml", OmegaConf.to_yaml(cfg))
    if hc is not None:
        write_atomic(folder / "overrides.yaml", OmegaConf.to_yaml(OmegaConf.create(list(hc.overrides.task))))
        write_atomic(folder / "hydra.yaml", OmegaConf.to_yaml(OmegaConf.create({"hydra": hc})))


def _remove_leftovers(run_dir: Path) -> None:
    """Temporary files of saves that a SIGKILL cut short (the lock guarantees no one else is writing)."""
    leftovers = [*run_dir.glob("checkpoints/.*.tmp*"), *run_dir.glob(".summary.json.tmp*"), *run_dir.glob(".hydra/.*.tmp*")]
    for path in leftovers:
        path.unlink(missing_ok=True)
    if leftovers:
        log.info("removed %d temporary file(s) left by an interrupted save", len(leftovers))


def _environment_error(exc: BaseException, run_dir: Path, cfg: DictConfig) -> str | None:
    """A one-line message for failures of the machine rather than the code (full disk, out of memory)."""
    import errno
    import shutil

    chain, cause = [], exc
    while cause is not None and len(chain) < 10:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    text = " ".join(str(c) for c in chain)
    disk_full = any(isinstance(c, OSError) and c.errno == errno.ENOSPC for c in chain) or "No space left on device" in text
    if not disk_full and "file write failed" in text:  # torch.save's wording for a failed write
        try:
            disk_full = shutil.disk_usage(run_dir).free < 64 * 2**20
        except OSError:
            pass
    if disk_full:
        return (f"no space left on the device holding {run_dir} (disk full); free space or choose another hydra.run.dir, "
                "then rerun the same command to resume from the last checkpoint")
    import torch

    oom = any(isinstance(c, torch.OutOfMemoryError) for c in chain) or "can't allocate memory" in text \
        or "out of memory" in text.lower()
    if oom:
        return (f"out of memory with data.batch_size={OmegaConf.select(cfg, 'data.batch_size')} "
                f"(arch={OmegaConf.select(cfg, 'arch.name')}, data={OmegaConf.select(cfg, 'data.name')}); "
                "use a smaller data.batch_size or a machine with more memory")
    return None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first}"[:500]


def run(cfg: DictConfig, run_dir: Path) -> dict:
    """Train, evaluate and summarise one run; never raises for a failed run (the summary says why).

    Refused outright (nothing written, status "refused" returned) when another live process holds
    the run directory.
    """
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    from .callbacks.interrupt import InterruptGuard, RunInterrupted
    from .run_lock import RunDirLock, RunDirLocked

    run_dir = Path(run_dir)
    summary = base_summary(cfg)
    lock = RunDirLock(run_dir)
    try:
        if rank_zero_only.rank == 0:  # DDP ranks > 0 share rank 0's run dir (and its lock); only rank 0 writes
            lock.acquire()
    except RunDirLocked as exc:
        summary.update(status="refused", error=str(exc), error_kind="user")
        return summary
    except UserError as exc:
        summary.update(status="failed", error=str(exc), error_kind="user")
        return summary
    try:
        with InterruptGuard() as guard:
            return _run_locked(cfg, run_dir, summary, guard)
    except RunInterrupted as exc:  # a signal outside the guarded part (writing the summary): say so
        summary.update(status="interrupted", error=str(exc))
        summary["exit_code"] = exc.exit_code
        return summary
    finally:
        lock.release()


def _run_locked(cfg: DictConfig, run_dir: Path, summary: dict, guard) -> dict:
    from .assemble import assemble
    from .callbacks.interrupt import RunInterrupted
    from .summary import read_summary
    from .validation import validate

    module = trainer = timer = None
    started = False  # True once this run has touched the run's state (its summary says "running")
    previous = None
    try:
        previous = read_summary(run_dir)
    except (OSError, ValueError):
        pass
    if cfg.get("skip_completed") and _already_done(previous, cfg):
        # a relaunched study: this job finished before; its record and checkpoint stand as they are
        log.info("skipping %s: already completed (%s generator steps)", run_dir, previous.get("steps"))
        return dict(previous, skipped=True)
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    writer = rank_zero_only.rank == 0
    try:
        if writer:
            _remove_leftovers(run_dir)
        # a new run dir gets its config at once (a run that fails below is still on record); a dir holding an
        # earlier run's record gets this run's only once this run is past the checks
        config_saved = writer and previous is None
        if config_saved:
            _save_run_config(cfg, run_dir)
        validate(cfg)
        ckpt, resume_step = resolve_ckpt(cfg, run_dir)
        built = assemble(cfg, run_dir, guard=guard, resume_step=resume_step)
        module, datamodule, evaluator, trainer, timer = (built.module, built.datamodule, built.evaluator,
                                                         built.trainer, built.timer)
        if writer and not config_saved:
            _save_run_config(cfg, run_dir)
        started = True
        summary["provenance"] = _provenance(previous, resume_step)
        _write(trainer, run_dir, dict(summary, status="running", steps=resume_step, error=None))
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt)
        if guard.signum is not None:  # arrived after the last step's boundary: last.ckpt is final
            raise RunInterrupted(guard.signum, saved=True, step=module.g_step)
        summary["steps"] = module.g_step
        summary["timing"] = _timing(timer)
        if trainer.is_global_zero:
            summary["lipschitz"] = _lipschitz(module, datamodule, cfg.seed)
        # Image evaluators are collectives under DDP (every rank generates, each runs the feature network on
        # its share of the batches, rank 0 gathers and scores): call them on every rank. The toy / none
        # evaluators are cheap and local: rank 0 alone. Only rank 0 writes the summary (below).
        if trainer.is_global_zero or getattr(evaluator, "runs_on_all_ranks", False):
            if trainer.is_global_zero:
                log.info("evaluating the generator ...")
            metrics = evaluator.evaluate(module, datamodule)
            history = metrics.pop("history", None)  # periodic evaluations (metrics.every)
            summary["metrics"] = metrics
            if history:
                summary["metrics_history"] = history
            summary["eval_protocol"] = evaluator.protocol()
            shares = getattr(evaluator, "distributed_info", lambda: None)()
            if shares:  # DDP: how the feature network's work was split over the ranks
                summary["eval_distributed"] = shares
        summary["status"] = "completed"
    except RunInterrupted as exc:
        step = exc.step if exc.step is not None else (module.g_step if module is not None and module._trainer is not None else 0)
        resume = "rerun the same command to resume" + (" from it" if exc.saved else " from the last checkpoint")
        summary.update(status="interrupted", steps=step,
                       error=f"{exc}{' (checkpoint saved)' if exc.saved else ''}; {resume}")
        summary["exit_code"] = exc.exit_code
        log.warning("run interrupted: %s", summary["error"])
    except DivergedError as exc:
        summary.update(status="diverged", error=str(exc), steps=exc.step)
        log.warning("run diverged: %s", exc)
    except UserError as exc:
        summary.update(status="failed", error=str(exc))
        summary["error_kind"] = "user"
    except Exception as exc:  # a bug or an environment failure: keep the trace in the log, one line in the summary
        environment = _environment_error(exc, run_dir, cfg)
        if environment:
            summary.update(status="failed", error=environment)
            summary["error_kind"] = "environment"
            log.error("run failed: %s", environment)
        else:
            summary.update(status="failed", error=_one_line(exc))
            summary["error_kind"] = "internal"
            log.error("run failed:\n%s", traceback.format_exc())
    if module is not None and summary["status"] != "completed" and module._trainer is not None:
        summary["steps"] = summary["steps"] or module.g_step
        if timer is not None:
            summary["timing"] = _timing(timer)
    summary["resources"] = peak_memory()
    if not started and previous is not None and previous.get("status") not in (None, "running"):
        # failed before touching the run (bad input on a rerun): the earlier record stays as it was
        summary["summary_written"] = False
        log.warning("left the existing %s untouched (it records an earlier run)", run_dir / "summary.json")
    else:
        _write(trainer, run_dir, summary)
    if trainer is not None:
        from .loggers import finish_loggers

        finish_loggers(trainer.loggers, summary, step=summary.get("steps") or 0)
    return summary


def _lipschitz(module, datamodule, seed: int, n: int = 64) -> dict:
    """D's certified Lipschitz upper bound (product of certified layer bounds, output gain included) and
    the empirical lower bound (largest |grad_x D| over real, generated and interpolated points) at the end."""
    import torch

    from .spectral.certified import lipschitz_record

    try:
        gen = torch.Generator(device=module.device).manual_seed(seed + 4242)
        real = datamodule.sample(n, gen)
        fake = module.generate(n, z=torch.randn(n, module.z_dim, generator=gen, device=module.device))
        if module.perf["channels_last"] and real.dim() == 4:  # D's layout in training (perf.channels_last)
            real, fake = (x.contiguous(memory_format=torch.channels_last) for x in (real, fake))
        record = lipschitz_record(module.D, real, fake, seed=seed)
    except Exception as exc:  # a record, never a reason to fail a trained run
        return {"certified_upper": None, "empirical_lower": None, "reason": _one_line(exc)}
    return {k: record.get(k) for k in ("certified_upper", "empirical_lower", "reason")}


def _already_done(previous: dict | None, cfg: DictConfig) -> bool:
    """A completed summary of this same job (the method, setting, seed and length asked for now)."""
    if not previous or previous.get("status") != "completed":
        return False
    wanted = base_summary(cfg)
    keys = ("method", "regularizer", "penalty", "loss", "optim", "lr", "beta1", "beta2", "n_dis", "arch", "data", "seed")
    return all(previous.get(k) == wanted.get(k) for k in keys) and previous.get("steps") == wanted["steps_planned"]


def _provenance(previous: dict | None, resume_step: int) -> list[dict]:
    """The earlier segments' records (a resumed run) and this one's."""
    from .provenance import describe

    earlier = (previous or {}).get("provenance") if resume_step > 0 else None
    return [*(earlier if isinstance(earlier, list) else []), describe(resume_step)]


def _timing(timer) -> dict:
    return {"sec_per_step": timer.sec_per_step, "total_sec": timer.total_sec, "segments": timer.segments}


def _write(trainer, run_dir: Path, summary: dict) -> None:
    """summary.json from rank 0 only (under DDP); a failed write (full disk) becomes the run's error."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    if not (trainer.is_global_zero if trainer is not None else rank_zero_only.rank == 0):
        return
    try:
        write_summary(run_dir, summary)
    except OSError as exc:
        message = _environment_error(exc, run_dir, OmegaConf.create({})) or f"cannot write {run_dir / 'summary.json'} ({exc.strerror})"
        summary.update(status="failed", error=message, error_kind="environment")
        summary["summary_written"] = False


def _one_log_handler() -> None:
    """Lightning gives its loggers a console handler of their own when imported before logging is set up;
    under Hydra, whose handlers (console and train.log) sit on the root logger, every Lightning line
    then printed twice. Lightning's records go through the root's handlers only."""
    import lightning  # noqa: F401  (adds those handlers on import: import first, then remove them)

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if type(handler) is logging.StreamHandler:
                logger.removeHandler(handler)
        logger.propagate = True


EXIT_CODES = {"user": 2, "internal": 1, "environment": 1}
# How long an interrupted job of a parallel sweep waits for the jobs beside it to reach their step's end
# (a generator step, a periodic evaluation and a checkpoint; a scheduler's SIGKILL follows SIGTERM after its
# own grace, 30 s by default on SLURM, and cuts this short)
SIBLING_GRACE_S = 60.0


def wait_for_stopping_siblings(sweep_dir: Path, run_dir: Path, timeout: float = SIBLING_GRACE_S) -> list[str]:
    """Before an interrupted job's exit: wait until no other job of its sweep still trains in this launch.

    Under a parallel launcher (joblib) the first job to stop ends its task with the exit below, and the pool
    then ends every other worker at once, wherever it is: a job that got the same signal but was one step
    from its checkpoint lost it (or its summary). So wait, bounded, while a job dir beside this one is held
    by a live process of this launch (same process group: the pool's workers; a sequential sweep has none).
    Returns the jobs still running when it gave up.
    """
    import time

    from .run_lock import live_holder

    group = os.getpgid(0)

    def running() -> list[str]:
        out = []
        for job in sorted(p for p in Path(sweep_dir).iterdir() if p.is_dir() and p != run_dir):
            holder = live_holder(job)
            try:
                if holder and os.getpgid(holder["pid"]) == group:
                    out.append(job.name)
            except (ProcessLookupError, PermissionError):
                pass
        return out

    deadline = time.monotonic() + timeout
    others = running()
    if others:
        log.warning("waiting up to %.0f s for job(s) %s of this sweep to stop at their step's end", timeout, ", ".join(others))
    while others and time.monotonic() < deadline:
        time.sleep(0.2)
        others = running()
    if others:
        log.warning("job(s) %s still running after %.0f s; exiting (they resume from their last checkpoint)",
                    ", ".join(others), timeout)
    return others


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig):
    _one_log_handler()
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    summary = run(cfg, run_dir)
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    if multirun:  # this process may run another of the sweep's jobs (a joblib worker): see interrupt.py
        from .callbacks.interrupt import hold_signals_between_runs

        hold_signals_between_runs()
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    if rank_zero_only.rank != 0:  # DDP workers: rank 0 reports
        return summary
    status = summary["status"]
    if status == "interrupted":
        # a scheduler or a user wants this process gone: stop a sequential sweep too; rerunning the
        # same command (with the same hydra.sweep.dir) resumes this job and runs the ones after it
        where = f" (sweep dir: {HydraConfig.get().sweep.dir})" if multirun else ""
        print(f"interrupted: {summary['error']}{where}; run dir: {run_dir}", file=sys.stderr)
        if multirun:
            wait_for_stopping_siblings(Path(HydraConfig.get().sweep.dir), run_dir)
        sys.exit(summary.get("exit_code", 130))
    if status in ("failed", "refused"):
        print(f"error: {summary['error']}", file=sys.stderr)
        if not multirun:  # in a sweep, the other jobs go on; the summary records the failure
            sys.exit(EXIT_CODES.get(summary.get("error_kind"), 1))
    elif status == "diverged":
        print(f"diverged: {summary['error']} (summary: {run_dir / 'summary.json'})", file=sys.stderr)
        if not multirun:
            sys.exit(3)
    else:
        metrics = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in summary["metrics"].items()
                            if isinstance(v, (int, float)))
        print(f"done: {summary['steps']} generator steps in {summary['timing']['total_sec']:.1f}s; {metrics}\nrun dir: {run_dir}")
    return summary


if __name__ == "__main__":
    from .preflight import preflight, quote_non_utf8

    # a path with bytes that are not UTF-8 must reach the log and the console as escapes, not a logging error
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(errors="backslashreplace")
    sys.argv[1:] = quote_non_utf8(sys.argv[1:])
    preflight(sys.argv[1:])
    main()
