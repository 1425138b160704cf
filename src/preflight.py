"""Checks of ``python -m src.train``'s command line before Hydra takes over.

Hydra reports an unknown option (``regularizer=snn``), a key that does not exist (``stepz=10``) or a
malformed override as several lines with exit status 1, before any of our code runs, and creates
the run directory (or fails with a traceback when it cannot). Users and sweep scripts rely on one
contract for every mistake instead: one line naming the bad value and what is valid, exit status 2,
and, for a single run, a summary.json with status "failed" in its run directory. So the overrides
are composed here first with Hydra's own compose API; a sweep's values (``regularizer=sn,snn``) are
each composed too, so a typo in the last value fails before the first job trains.
"""
import os
import sys
from pathlib import Path

# flags after which Hydra's own handling is wanted (help, config printing, other config sources)
_HANDS_OFF = {"--help", "-h", "--hydra-help", "--version", "--cfg", "-c", "--info", "-i", "--resolve", "--package", "-p",
              "--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd", "--experimental-rerun",
              "--shell-completion", "-sc"}
CONF = Path(__file__).resolve().parents[1] / "conf"


def check_output_dir(overrides) -> None:
    """Hydra creates the run dir before our code runs and reports failures as a traceback: check first."""
    for arg in overrides:
        key, _, value = arg.partition("=")
        if key.lstrip("+") in ("hydra.run.dir", "hydra.sweep.dir") and value and "${" not in value:
            target = Path(value).expanduser().absolute()
            parent = target
            while not parent.exists():
                parent = parent.parent
            if not parent.is_dir() or not os.access(parent, os.W_OK):
                _fail(f"{key}={value} cannot be created ({parent} is not a writable folder); choose a writable output folder")


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def _one_line(exc: Exception) -> str:
    """Hydra's multi-line messages as one line: the first line, plus the valid options it lists."""
    text = str(exc).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    first = lines[0] if lines else type(exc).__name__
    options = []
    if "Available options" in text:
        block = text.split("Available options", 1)[1].splitlines()[1:]
        for line in block:
            if not line.startswith(("\t", " ")) or not line.strip():
                break
            options.append(line.strip())
    if options:
        return f"{first}; valid: {', '.join(options)}"
    if first.startswith("Could not override '") or "is not in struct" in text:
        key = first.split("'")[1] if first.count("'") >= 2 else first
        return (f"{first} There is no config key {key!r}; check its spelling against `python -m src.train --cfg job` "
                "(every key), or prefix a new key with +")
    return first


def _candidate_sets(overrides):
    """Override lists to compose: the first value of every sweep, then each other sweep value in turn."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ValueType

    parsed = OverridesParser.create().parse_overrides(overrides)
    base, sweeps = [], []
    for text, override in zip(overrides, parsed):
        key = override.get_key_element()
        if override.value_type == ValueType.SIMPLE_CHOICE_SWEEP:
            values = [_element(v) for v in override.value().list]
            sweeps.append((len(base), key, values))
            base.append(f"{key}={values[0]}")
        elif override.is_sweep_override():  # range / interval / glob sweeps: Hydra expands them, not checked here
            continue
        else:
            base.append(text)
    yield base
    for index, key, values in sweeps:
        for value in values[1:]:
            yield base[:index] + [f"{key}={value}"] + base[index + 1:]


def _element(value) -> str:
    return value if isinstance(value, str) else str(value)


def _compose(overrides):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(CONF), version_base="1.3"):
            return compose("config", overrides=list(overrides), return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()


def _write_failed_summary(overrides, message: str) -> None:
    """A single run's summary.json with status failed, where the run would have written it; nothing when its
    directory holds another run's record or is in use."""
    from omegaconf import OmegaConf

    from .run_lock import RunDirLock, RunDirLocked
    from .summary import base_summary, write_summary

    good = []
    for override in overrides:
        try:
            _compose(good + [override])
            good.append(override)
        except Exception:
            continue
    try:
        cfg = _compose(good)
        from hydra.core.hydra_config import HydraConfig

        HydraConfig.instance().set_config(cfg)  # for ${hydra:...} in the run dir's pattern
        run_dir = Path(str(OmegaConf.select(cfg, "hydra.run.dir"))).absolute()
    except Exception:
        return
    if (run_dir / "summary.json").exists():
        return
    summary = base_summary(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]))
    summary.update(status="failed", error=message, error_kind="user")
    try:
        with RunDirLock(run_dir):
            write_summary(run_dir, summary)
    except (RunDirLocked, OSError):
        return
    print(f"summary: {run_dir / 'summary.json'}", file=sys.stderr)


def quote_non_utf8(argv):
    """Hydra's override grammar accepts non-UTF-8 bytes of a path (PEP 383 surrogates) only inside quotes:
    quote such plain values, so ``data.root=/data/imgs\xff`` works as it would in any other program."""
    out = []
    for arg in argv:
        key, eq, value = arg.partition("=")
        if (eq and any("\udc80" <= c <= "\udcff" for c in value) and value[:1] not in "'\""
                and not any(c in value for c in "'\",[]{}()")):
            arg = f"{key}='{value}'"
        out.append(arg)
    return out


def preflight(argv) -> None:
    args = list(argv)
    if any(a.split("=", 1)[0] in _HANDS_OFF for a in args):
        return
    multirun = any(a in ("-m", "--multirun") for a in args)
    overrides = [a for a in args if not a.startswith("-")]
    check_output_dir(overrides)
    try:
        sets = list(_candidate_sets(overrides))
    except Exception as exc:  # a malformed override
        _fail(_one_line(exc))
    for candidate in sets:
        try:
            _compose(candidate)
        except Exception as exc:
            message = _one_line(exc)
            if not multirun:
                _write_failed_summary(overrides, message)
            _fail(message)
