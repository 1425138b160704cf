"""Where a study stands: jobs done per seed, sweep and setting, what is running, and the time left.

    python -m src.report.progress multirun/study_digits --experiment study_digits study_digits_pairs \\
        --seeds 0 1 2 --n-jobs 2

A study (sweeps/study.sh) is one Hydra multirun per experiment and seed, over ``optim`` (the setting) and
the method keys; each job records its overrides (``.hydra/overrides.yaml``) and its ``summary.json``. The
expected jobs are the product of each experiment's ``hydra.sweeper.params`` (the seed set to each of
--seeds), composed from ``conf/`` as the sweep itself is, and a job is matched to them by its overrides,
wherever it lies under the study root. A job counts as done when its summary says completed at the length
its setting asks for now (a setting lengthened later makes its jobs "to extend") or diverged (a relaunch
runs a diverged job again, since skip_completed skips completed ones only; its time is not in the estimate). A job whose
summary says running is running while the process named in its run-dir lock is alive (src/run_lock.py),
else it was killed and counts as interrupted; its step is the last one its train.log scored.

The time left is an estimate: each unfinished job's remaining generator updates times the seconds per
update (evaluations included) of the completed jobs most like it: the same job at another seed, else the
same method at another setting with the same n_dis, else the same setting, else every completed job.
Process start-up (a few seconds a job) is not counted.
"""
import argparse
import itertools
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from ..run_lock import live_holder
from .collect import read_overrides
from .sweep import sweep_values

SETTING_KEY = "optim"
SEED_KEY = "seed"
_SCORED_STEP = re.compile(r"generator step (\d+):")


@dataclass
class Job:
    experiment: str
    seed: str
    setting: str
    overrides: dict            # key -> value of the swept keys (seed included)
    steps_planned: int
    n_dis: int | None
    state: str = "not started"  # done | diverged | to extend | running | interrupted | failed | not started
    steps: int = 0             # generator updates behind it (the checkpointed or last scored step)
    rate: float | None = None  # its own seconds per generator update, when completed
    path: str = ""


def compose_grid(experiment: str, seeds: list[str]) -> list[Job]:
    """The jobs an experiment's multirun asks for, one seed at a time (as sweeps/study.sh runs it)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    import src  # noqa: F401  (registers the OmegaConf resolvers the configs use)
    from ..assemble import CONF

    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={experiment}"], return_hydra_config=True)
        params = OmegaConf.to_container(cfg.hydra.sweeper.params, resolve=False) if cfg.hydra.sweeper.get("params") else {}
        values = sweep_values({k: str(v) for k, v in params.items()}, [])
        if values is None or SETTING_KEY not in values:
            raise ValueError(f"experiment {experiment!r} does not sweep {SETTING_KEY}= with a plain list of values; "
                             "progress reads studies whose sweeper params list the settings")
        values.pop(SEED_KEY, None)
        per_setting = {}  # a setting's length and n_dis (the study's lengths vary by setting only)
        for setting in values[SETTING_KEY]:
            c = compose("config", overrides=[f"experiment={experiment}", f"{SETTING_KEY}={setting}"])
            per_setting[setting] = (int(c.steps), OmegaConf.select(c, "optim.n_dis", default=None))
    GlobalHydra.instance().clear()
    keys = list(values)
    jobs = []
    for seed in seeds:
        for combo in itertools.product(*(values[k] for k in keys)):
            overrides = {SEED_KEY: str(seed), **dict(zip(keys, combo))}
            steps, n_dis = per_setting[overrides[SETTING_KEY]]
            jobs.append(Job(experiment, str(seed), overrides[SETTING_KEY], overrides, steps, n_dis))
    return jobs


def _last_scored_step(run_dir: Path) -> int:
    try:
        text = (run_dir / "train.log").read_text(errors="replace")
    except OSError:
        return 0
    steps = _SCORED_STEP.findall(text)
    return int(steps[-1]) if steps else 0


def find_jobs(root: Path) -> dict:
    """frozenset of 'key=value' overrides -> (run dir, summary or None) of every job dir under root."""
    found = {}
    for overrides_file in sorted(root.rglob(".hydra/overrides.yaml")):
        run_dir = overrides_file.parent.parent
        try:
            summary = json.loads((run_dir / "summary.json").read_text())
        except (OSError, ValueError):
            summary = None
        found[frozenset(o.lstrip("+~") for o in read_overrides(run_dir))] = (run_dir, summary)
    return found


def match(jobs: list[Job], root: Path) -> None:
    """Fill each job's state from the job dirs under root (a job is matched by its overrides)."""
    found = find_jobs(root)
    for job in jobs:
        # the experiment too: a pair's overrides (regularizer=sn penalty=r1) hold the single method's
        wanted = {f"experiment={job.experiment}", *(f"{k}={v}" for k, v in job.overrides.items())}
        hits = [v for key, v in found.items() if wanted <= key]
        if not hits:
            continue
        run_dir, summary = hits[0]
        job.path = str(run_dir.relative_to(root))
        status = (summary or {}).get("status")
        job.steps = int((summary or {}).get("steps") or 0)
        if status == "completed":
            total = ((summary.get("timing") or {}).get("total_sec"))
            job.rate = total / job.steps if total and job.steps else None
            job.state = "done" if job.steps >= job.steps_planned else "to extend"
        elif status == "diverged":
            job.state = "diverged"
        elif status == "interrupted":
            job.state = "interrupted"
        elif status in ("failed", "refused"):
            job.state = "failed"
        else:  # "running", or no summary yet (starting now): running while its lock's holder lives, else killed
            job.steps = max(job.steps, _last_scored_step(run_dir))
            job.state = "running" if live_holder(run_dir) is not None else "interrupted"


def _method_key(job: Job) -> frozenset:
    return frozenset((k, v) for k, v in job.overrides.items() if k not in (SEED_KEY, SETTING_KEY))


def estimate_seconds(job: Job, jobs: list[Job]) -> float | None:
    """Seconds this job still needs: its remaining updates times the rate of the completed jobs most like it."""
    left = max(job.steps_planned - job.steps, 0)
    if job.state in ("done", "diverged") or left == 0:
        return 0.0
    timed = [j for j in jobs if j.rate is not None]
    same_method = [j for j in timed if _method_key(j) == _method_key(job)]
    for pool in ([j for j in same_method if j.setting == job.setting],
                 [j for j in same_method if job.n_dis is not None and j.n_dis == job.n_dis],
                 [j for j in timed if j.setting == job.setting],
                 timed):
        if pool:
            return left * sum(j.rate for j in pool) / len(pool)
    return None


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def render(jobs: list[Job], root: Path, n_jobs: int) -> str:
    settings = list(dict.fromkeys(j.setting for j in jobs))
    seeds = list(dict.fromkeys(j.seed for j in jobs))
    rows = sorted(dict.fromkeys((j.seed, j.experiment) for j in jobs), key=lambda r: seeds.index(r[0]))  # run order
    width = max(len(e) for _, e in rows)
    lines = [f"study root: {root}", "",
             f"{'seed':<5} {'experiment':<{width}}  " + "  ".join(f"{s:^8}" for s in settings)]
    for seed, exp in rows:
        cells = []
        for s in settings:
            mine = [j for j in jobs if j.seed == seed and j.experiment == exp and j.setting == s]
            done = sum(j.state in ("done", "diverged") for j in mine)
            mark = "*" if any(j.state == "running" for j in mine) else " "
            cells.append(f"{done:>3}/{len(mine):<3}{mark}")
        lines.append(f"{seed:<5} {exp:<{width}}  " + "  ".join(cells))
    lines.append("(done/asked per setting; * running now)")
    counts = {state: sum(j.state == state for j in jobs) for state in
              ("done", "diverged", "to extend", "running", "interrupted", "failed", "not started")}
    lines += ["", f"{counts['done'] + counts['diverged']} of {len(jobs)} jobs done ("
              + ", ".join(f"{n} {state}" for state, n in counts.items() if n) + ")"]
    for j in jobs:
        if j.state in ("running", "interrupted", "failed", "to extend"):
            what = " ".join(f"{k}={v}" for k, v in j.overrides.items())
            lines.append(f"  {j.state:<11} {j.path}: {what}, step {j.steps} of {j.steps_planned}")
    spent = sum(j.rate * j.steps for j in jobs if j.rate is not None)
    estimates = [estimate_seconds(j, jobs) for j in jobs]
    unknown = sum(e is None for e in estimates)
    left = sum(e for e in estimates if e)
    lines += ["", f"job time so far (completed jobs): {_duration(spent)}"]
    if not unknown and left == 0:
        lines.append("time left: none (every job is done)")
    elif unknown:
        lines.append(f"time left: unknown for {unknown} job(s) (no completed job to time them by)")
    else:
        lines.append(f"time left: about {_duration(left)} of job time, about {_duration(left / n_jobs)} "
                     f"of wall time at {n_jobs} job(s) at a time (start-up not counted)")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m src.report.progress",
                                description="Jobs done, running and left in a study, and an estimate of the time left.")
    p.add_argument("root", type=Path, help="the study root (sweeps/study.sh: multirun/study_<task>)")
    p.add_argument("--experiment", nargs="+", required=True, help="the study's experiments (conf/experiment/<name>.yaml)")
    p.add_argument("--seeds", nargs="+", default=["0", "1", "2"], help="the seeds the study runs (default: 0 1 2)")
    p.add_argument("--n-jobs", type=int, default=2, help="jobs run at a time, for the wall-time estimate (default: 2)")
    args = p.parse_args(argv)
    if args.n_jobs < 1:
        p.error(f"--n-jobs must be at least 1, got {args.n_jobs}")
    available = sorted(f.stem for f in (Path(__file__).resolve().parents[2] / "conf" / "experiment").glob("*.yaml"))
    unknown = [e for e in args.experiment if e not in available]
    if unknown:
        p.error(f"unknown experiment {unknown[0]!r}; valid: {', '.join(available)}")
    if not args.root.is_dir():
        p.error(f"not a directory: {args.root} (nothing has run there yet)")
    jobs = []
    try:
        for exp in args.experiment:
            jobs += compose_grid(exp, args.seeds)
    except ValueError as exc:
        p.error(str(exc))
    match(jobs, args.root)
    print(render(jobs, args.root, args.n_jobs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
