"""Reading a sweep back: every summary.json below the given dirs, plus the jobs that left none.

A job dir is any dir Hydra wrote a ``.hydra/`` into; one without summary.json is reported as
"missing" (killed, still running, or crashed before writing it). A sweep dir's multirun.yaml says
which jobs were asked for, so jobs that never started are found too.
"""
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from ..summary import method_fields
from .sweep import read_multirun

# Overrides the summary already records, or that do not change what is being compared.
_COVERED = {"regularizer", "penalty", "loss", "optim", "optim.name", "optim.lr", "optim.beta1", "optim.beta2", "optim.n_dis",
            "seed", "data", "arch", "steps"}
_IGNORED_PREFIXES = ("logger", "trainer", "hydra", "metrics", "experiment", "ckpt_path", "samples", "checkpoint",
                     "log_every", "callbacks", "data.root", "data.download")


@dataclass
class Run:
    path: str                      # run dir, relative to the input dir it was found under
    status: str                    # completed | diverged | failed | interrupted | running | missing | unreadable
    regularizer: str | None = None
    penalty: str | None = None     # a penalty added to a weight-side regularizer (summary "penalty"), e.g. r1
    base_method: str | None = None  # summary "method" (e.g. "sn+r1"); None in summaries written before it
    loss: str | None = None
    optim: str | None = None
    lr: float | None = None
    beta1: float | None = None
    beta2: float | None = None
    n_dis: int | None = None
    arch: str | None = None
    data: str | None = None
    seed: int | None = None
    steps: int | None = None
    steps_planned: int | None = None
    metrics: dict = field(default_factory=dict)
    eval_protocol: dict = field(default_factory=dict)
    sec_per_step: float | None = None
    total_sec: float | None = None
    error: str | None = None
    extra: dict = field(default_factory=dict)  # other overrides of the job (e.g. regularizer.lam=1)
    method: str = ""               # labels given by aggregate (what is compared, under which setting)
    setting: str = ""


@dataclass
class Collection:
    runs: list[Run]
    sweeps: list[dict]             # one per multirun.yaml: dir, expected_jobs, job_dirs, missing_jobs (override lists)
    problems: list[str]            # one line each, e.g. an unreadable summary


def _number(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value if math.isfinite(value) else None


def read_overrides(run_dir: Path) -> list[str]:
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return []
    try:
        return [str(x) for x in (OmegaConf.load(path) or [])]
    except Exception:
        return []


def _extra(overrides: list[str]) -> dict:
    out = {}
    for item in overrides:
        key, _, value = item.partition("=")
        key = key.lstrip("+~")
        if key in _COVERED or key.startswith(_IGNORED_PREFIXES):
            continue
        out[key] = value
    return out


def _from_summary(s: dict, path: str, run_dir: Path) -> Run:
    timing = s.get("timing") or {}
    metrics = {k: _number(v) for k, v in (s.get("metrics") or {}).items()}
    return Run(
        path=path, status=str(s.get("status") or "unreadable"),
        regularizer=s.get("regularizer"), penalty=s.get("penalty"), base_method=s.get("method"),
        loss=s.get("loss"), optim=s.get("optim"),
        lr=_number(s.get("lr")), beta1=_number(s.get("beta1")), beta2=_number(s.get("beta2")), n_dis=_number(s.get("n_dis")),
        arch=s.get("arch"), data=s.get("data"), seed=s.get("seed"), steps=s.get("steps"),
        steps_planned=s.get("steps_planned"),
        metrics={k: v for k, v in metrics.items() if v is not None},
        eval_protocol=s.get("eval_protocol") or {},
        sec_per_step=_number(timing.get("sec_per_step")), total_sec=_number(timing.get("total_sec")),
        error=s.get("error"), extra=_extra(read_overrides(run_dir)))


def _from_job_config(run_dir: Path, path: str) -> Run:
    """A job without summary.json: what it was meant to run, from the config Hydra saved."""
    run = Run(path=path, status="missing", extra=_extra(read_overrides(run_dir)))
    try:
        cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    except Exception:
        return run
    for attr, key in (("regularizer", "regularizer.name"), ("loss", "loss.name"), ("optim", "optim.name"),
                      ("lr", "optim.lr"), ("beta1", "optim.beta1"), ("beta2", "optim.beta2"), ("n_dis", "optim.n_dis"),
                      ("arch", "arch.name"), ("data", "data.name"), ("seed", "seed"), ("steps_planned", "steps")):
        try:
            setattr(run, attr, OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False))
        except Exception:
            pass
    try:  # the "penalty" and "method" the job's summary would have carried, by the summary writer's own rule
        fields = method_fields(cfg)
        run.penalty, run.base_method = fields["penalty"], fields["method"]
    except Exception:
        pass
    return run


def _job_key(overrides: list[str]) -> frozenset:
    return frozenset(o.lstrip("+~") for o in overrides)


def collect(dirs: list[Path]) -> Collection:
    runs, sweeps, problems = [], [], []
    seen = set()
    for root in map(Path, dirs):
        if not root.exists():
            problems.append(f"{root}: does not exist")
            continue
        job_dirs = {p.parent.parent for p in root.rglob(".hydra/config.yaml")}
        summary_dirs = {p.parent for p in root.rglob("summary.json")}
        for run_dir in sorted(job_dirs | summary_dirs):
            real = run_dir.resolve()
            if real in seen:  # the same dir given twice (or nested inputs)
                continue
            seen.add(real)
            rel = str(run_dir.relative_to(root)) if run_dir != root else "."
            label = f"{root.name}/{rel}" if rel != "." else root.name
            if run_dir in summary_dirs:
                try:
                    runs.append(_from_summary(json.loads((run_dir / "summary.json").read_text()), label, run_dir))
                except (OSError, ValueError, AttributeError) as exc:
                    problems.append(f"{label}/summary.json is unreadable ({type(exc).__name__}); counted as 'unreadable'")
                    run = _from_job_config(run_dir, label)
                    run.status = "unreadable"
                    runs.append(run)
            else:
                runs.append(_from_job_config(run_dir, label))
        for multirun in sorted(root.rglob("multirun.yaml")):
            sweeps.append(_sweep_status(multirun.parent, job_dirs))
    return Collection(runs, sweeps, problems)


def _sweep_status(sweep_dir: Path, job_dirs: set) -> dict:
    info = read_multirun(sweep_dir) or {}
    mine = [d for d in job_dirs if sweep_dir in d.parents]
    found = {_job_key(read_overrides(d)) for d in mine}
    missing = []
    values = info.get("values")
    if values and info.get("expected_jobs") is not None:
        for combo in itertools.product(*[[f"{k}={v}" for v in vals] for k, vals in values.items()]):
            if _job_key(list(combo)) not in found:
                missing.append(list(combo))
    return {"dir": str(sweep_dir), "expected_jobs": info.get("expected_jobs"), "job_dirs": len(mine),
            "missing_jobs": missing, "values": values}
