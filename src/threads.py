"""How many CPU threads torch may use in one job, chosen so that jobs cannot oversubscribe the CPU.

torch's default is one thread per core. Two jobs of a parallel sweep, or one job on a machine that
is already busy, then fight for the same cores, and small GANs slow down by an order of magnitude
(measured on a busy 2-core machine: 0.38 s per update with the default, 0.035 s with one thread).
``threads: auto`` takes this job's share of the cores it may run on: the cores divided by the
launcher's concurrent jobs, and no more than the cores not already busy (1-minute load average).
"""
import os


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def concurrent_jobs(launcher: dict | None) -> int:
    """Jobs a Hydra launcher runs at once on this machine (1 outside a multirun or for the sequential one)."""
    if not launcher:
        return 1
    target = str(launcher.get("_target_", ""))
    if "joblib" in target.lower():
        n_jobs = launcher.get("n_jobs") or 1
        return usable_cores() if n_jobs in (-1, None) else max(1, int(n_jobs))
    if "submitit" in target.lower() and "local" in target.lower():
        return max(1, int(launcher.get("array_parallelism") or 1))
    return 1


def auto_threads(launcher: dict | None = None, load: float | None = None) -> int:
    cores = usable_cores()
    share = max(1, cores // concurrent_jobs(launcher))
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):
            load = 0.0
    free = max(1, cores - int(round(load)))
    return max(1, min(share, free))


def resolve_threads(value, launcher: dict | None = None) -> int | None:
    """``threads`` as configured: an integer, ``auto`` (see module doc), or null (torch's default)."""
    if value is None:
        return None
    if value == "auto":
        return auto_threads(launcher)
    return int(value)
