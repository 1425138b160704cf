"""summary.json: the machine-readable record of a run (its schema: docs/design.md), written atomically."""
import json
import math
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError

SCHEMA_VERSION = 1


def base_summary(cfg: DictConfig) -> dict:
    """The summary of a run that has not finished yet (status "failed" until proven otherwise)."""
    def get(path, default=None):
        try:
            return OmegaConf.select(cfg, path, default=default, throw_on_missing=False)
        except InterpolationResolutionError:  # validation reports it (src/validation.py: check_resolves)
            return default

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
        **method_fields(cfg),
        "steps": 0,
        "steps_planned": get("steps"),
        "metrics": {},
        "eval_protocol": {},
        "timing": {"sec_per_step": None, "total_sec": None},
        "error": None,
        "schema_version": SCHEMA_VERSION,
    }


_METADATA = ("name", "default_loss", "_target_")


def _params(node) -> dict:
    """A regularizer / penalty config's hyperparameters as the run used them (metadata keys dropped)."""
    if node is None:
        return {}
    try:
        values = OmegaConf.to_container(node, resolve=True)
    except Exception:  # an unresolvable value: the run fails on it anyway; record what can be read
        values = OmegaConf.to_container(node, resolve=False)
    return {k: v for k, v in values.items() if k not in _METADATA}


def method_fields(cfg: DictConfig) -> dict:
    """"penalty", "method" and "regularizer_params" of the summary.

    - penalty: the penalty option's name, or None when penalty=none (or absent).
    - method: what the run compares: the regularizer's name alone without a penalty ("sn", "wgan_gp"),
      "<regularizer>+<penalty>" with one ("sn+r1"), the penalty's name next to regularizer=none ("r1").
    - regularizer_params: without a penalty, the regularizer's hyperparameters flat ({"lam": 10.0}), so a
      sweep over regularizer.lam reads back as summary["regularizer_params"]["lam"]; with a penalty, one
      dict per part keyed by its name ({"sn": {"power_iterations": 1, ...}, "r1": {"gamma": 1.0, "every": 1}}).
      ``hyperparameter(summary, "penalty.gamma")`` reads either shape by config key.
    """
    reg = OmegaConf.select(cfg, "regularizer", default=None)
    pen = OmegaConf.select(cfg, "penalty", default=None)
    reg_name = reg.get("name") if reg is not None else None
    pen_name = pen.get("name") if pen is not None else None
    if pen_name in (None, "none"):
        return {"penalty": None, "method": reg_name, "regularizer_params": _params(reg)}
    from . import method_name

    method = method_name(reg_name, pen_name)
    return {"penalty": pen_name, "method": method,
            "regularizer_params": {reg_name: _params(reg), pen_name: _params(pen)}}


def hyperparameter(summary: dict, key: str, default=None):
    """A regularizer / penalty hyperparameter of a run from its summary, by its config key:
    ``regularizer.lam``, ``penalty.gamma`` (either shape of regularizer_params)."""
    group, _, name = key.partition(".")
    params = summary.get("regularizer_params") or {}
    if summary.get("penalty") is None:
        return params.get(name, default) if group == "regularizer" else default
    part = params.get(summary.get("regularizer") if group == "regularizer" else summary.get("penalty")) or {}
    return part.get(name, default)


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
    from .atomic_write import write_atomic  # whole or absent, even on a full disk or a kill mid-write

    return write_atomic(Path(run_dir) / "summary.json", json.dumps(_clean(summary), indent=2, default=str) + "\n")


def read_summary(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "summary.json").read_text())
