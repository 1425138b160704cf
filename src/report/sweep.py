"""What a Hydra multirun asked for, read back from the multirun.yaml Hydra saves in its sweep dir.

The report uses it to count jobs that never left a summary; the W&B logger uses it to name a job's
run after the keys the sweep varies.
"""
from pathlib import Path

from omegaconf import OmegaConf


def sweep_values(params: dict | None, arguments: list[str]) -> dict[str, list[str]] | None:
    """key -> the values the basic sweeper gives it (command-line arguments win over ``params``).

    None when the sweep cannot be expanded without the config loader (e.g. ``glob(...)``).
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    items = [f"{k}={v}" for k, v in (params or {}).items()] + list(arguments)
    try:
        overrides = OverridesParser.create().parse_overrides(items)
        values: dict[str, list[str]] = {}
        for o in overrides:
            key = o.get_key_element()
            if o.is_sweep_override():
                if not o.is_discrete_sweep():
                    return None
                values[key] = list(o.sweep_string_iterator())
            else:
                values[key] = [o.get_value_element_as_str()]
        return values
    except Exception:  # a sweep the plain parser cannot expand: no expectation rather than a wrong one
        return None


def read_multirun(sweep_dir: Path) -> dict | None:
    """{'values': key -> values or None, 'expected_jobs': int or None, 'sweeper': target} of a sweep dir."""
    path = Path(sweep_dir) / "multirun.yaml"
    if not path.is_file():
        return None
    try:
        cfg = OmegaConf.load(path)
        hydra = cfg.get("hydra") or {}
        sweeper = OmegaConf.select(cfg, "hydra.sweeper._target_", default="") or ""
        params = OmegaConf.to_container(hydra.sweeper.params, resolve=False) if hydra.get("sweeper") and hydra.sweeper.get("params") else {}
        task = list(OmegaConf.select(cfg, "hydra.overrides.task", default=[]) or [])
    except Exception:
        return {"values": None, "expected_jobs": None, "sweeper": None}
    values = sweep_values({k: str(v) for k, v in params.items()}, [str(t) for t in task])
    expected = None
    if values is not None and sweeper.endswith("BasicSweeper"):  # other sweepers (optuna, ...) choose their own jobs
        expected = 1
        for v in values.values():
            expected *= len(v)
    return {"values": values, "expected_jobs": expected, "sweeper": sweeper}


def swept_keys(sweep_dir: Path) -> list[str]:
    """The keys that take more than one value in the sweep (in the sweep's order)."""
    info = read_multirun(sweep_dir)
    if not info or not info["values"]:
        return []
    return [k for k, v in info["values"].items() if len(v) > 1]
