"""summary.json: the machine-readable record of a run (DESIGN.md's contract), written atomically."""
import json
import math
import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

SCHEMA_VERSION = 1


def base_summary(cfg: DictConfig) -> dict:
    """The summary of a run that has not finished yet (status "failed" until proven otherwise)."""
    def get(path, default=None):
        value = OmegaConf.select(cfg, path, default=default, throw_on_missing=False)
        return value

    return {
        "status": "failed",
        "regularizer": get("regularizer.name"),
        "loss": get("loss.name"),
        "optim": get("optim.name"),
        "lr": get("optim.lr"),
        "beta1": get("optim.beta1"),
        "beta2": get("optim.beta2"),
        "n_dis": get("optim.n_dis"),
        "arch": get("arch.name"),
        "data": get("data.name"),
        "seed": get("seed"),
        "steps": 0,
        "steps_planned": get("steps"),
        "metrics": {},
        "eval_protocol": {},
        "timing": {"sec_per_step": None, "total_sec": None},
        "error": None,
        "schema_version": SCHEMA_VERSION,
    }


def _clean(value):
    """JSON has no NaN/inf: write them as null so every reader can parse the file."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def write_summary(run_dir: Path, summary: dict) -> Path:
    path = Path(run_dir) / "summary.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".summary.json.tmp{os.getpid()}")
    tmp.write_text(json.dumps(_clean(summary), indent=2, default=str) + "\n")
    os.replace(tmp, path)
    return path


def read_summary(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "summary.json").read_text())
