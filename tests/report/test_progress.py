"""python -m src.report.progress and sweeps/study.sh --status on a hand-made study root: which jobs count as
done, running (a live lock holder) or interrupted (a dead one), the step a running job reached, and the
time-left estimate against hand-computed values."""
import copy
import json
import os
import socket
import subprocess
import sys

import pytest
import yaml

from src.report.progress import compose_grid, estimate_seconds, match, render
from tests.helpers import REPO, run_cli

EXP = "study_digits"


def write_job(job_dir, seed, optim, reg, status, steps, total_sec=None, n_dis=5, lock_pid=None, log_steps=()):
    (job_dir / ".hydra").mkdir(parents=True)
    overrides = [f"seed={seed}", f"optim={optim}", f"regularizer={reg}", f"experiment={EXP}"]
    (job_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    summary = {"status": status, "regularizer": reg, "optim": optim, "n_dis": n_dis, "seed": seed, "steps": steps,
               "timing": {"sec_per_step": None, "total_sec": total_sec}}
    (job_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    if lock_pid is not None:
        (job_dir / ".run.lock").write_text(json.dumps({"host": socket.gethostname(), "pid": lock_pid}) + "\n")
    if log_steps:
        (job_dir / "train.log").write_text("".join(f"[x][src.callbacks.evaluation][INFO] - generator step {s}: fid=3.1\n"
                                                   for s in log_steps))


@pytest.fixture(scope="module")
def grid():
    return compose_grid(EXP, ["0", "1"])


@pytest.fixture
def study(tmp_path, grid):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    single = tmp_path / "seed0" / "single"
    write_job(single / "0", 0, "A", "none", "completed", 2000, total_sec=1000.0)   # 0.5 s per update
    write_job(single / "1", 0, "A", "sn", "completed", 2000, total_sec=1200.0)     # 0.6
    write_job(single / "2", 0, "A", "sn_conv", "running", 0, lock_pid=os.getpid(), log_steps=(250, 500))
    write_job(single / "3", 0, "A", "weight_clip", "running", 0, lock_pid=dead.pid, log_steps=(250,))
    write_job(single / "16", 0, "B", "none", "completed", 2000, total_sec=400.0, n_dis=1)  # 0.2; B asks 5,000 now
    jobs = copy.deepcopy(grid)  # match() fills them in
    match(jobs, tmp_path)
    return {(j.seed, j.setting, j.overrides["regularizer"]): j for j in jobs}, jobs, tmp_path


def test_the_grid_is_the_experiments_sweep_with_its_lengths_per_setting(grid):
    assert len(grid) == 2 * 6 * 16
    steps = {j.setting: j.steps_planned for j in grid}
    assert steps == {"A": 2000, "B": 5000, "C": 5000, "D": 2000, "E": 2000, "F": 4000}  # steps_by_setting
    assert {j.setting: j.n_dis for j in grid} == {"A": 5, "B": 1, "C": 1, "D": 5, "E": 5, "F": 5}


def test_states_come_from_summaries_locks_and_logs(study):
    by, _, _ = study
    assert by["0", "A", "none"].state == "done" and by["0", "A", "sn"].state == "done"
    running = by["0", "A", "sn_conv"]
    assert running.state == "running" and running.steps == 500 and running.path == "seed0/single/2"
    assert by["0", "A", "weight_clip"].state == "interrupted"   # its lock names a process that is gone
    assert by["0", "B", "none"].state == "to extend"            # completed at 2,000, the setting asks 5,000
    assert by["1", "A", "none"].state == "not started"


def test_time_left_uses_the_most_similar_completed_jobs(study):
    by, jobs, _ = study
    est = lambda *key: estimate_seconds(by[key], jobs)  # noqa: E731
    assert est("0", "A", "none") == 0.0
    assert est("1", "A", "none") == pytest.approx(2000 * 0.5)            # the same job, another seed
    assert est("0", "E", "sn") == pytest.approx(2000 * 0.6)              # the same method at A (n_dis 5 too)
    assert est("0", "C", "none") == pytest.approx(5000 * 0.2)            # n_dis 1: B's rate, not A's
    assert est("0", "B", "none") == pytest.approx(3000 * 0.2)            # to extend: 3,000 updates left
    assert est("0", "A", "sn_conv") == pytest.approx(1500 * 0.55)        # running at 500: setting A's mean
    assert est("0", "C", "bjorck") == pytest.approx(5000 * (0.5 + 0.6 + 0.2) / 3)  # nothing alike: every job


def test_render_counts_and_lists_unfinished_jobs(study):
    _, jobs, root = study
    text = render(jobs, root, n_jobs=2)
    row = next(line for line in text.splitlines() if line.startswith("0     study_digits"))
    assert row.split() == ["0", "study_digits", "2/16", "*", "0/16", "0/16", "0/16", "0/16", "0/16"]
    assert "2 of 192 jobs done (2 done, 1 to extend, 1 running, 1 interrupted, 187 not started)" in text
    assert "  interrupted seed0/single/3: seed=0 optim=A regularizer=weight_clip, step 250 of 2000" in text
    left = sum(estimate_seconds(j, jobs) for j in jobs)
    assert f"about {round(left / 60) // 60} h {round(left / 60) % 60:02d} min of job time" in text
    assert f"about {round(left / 120) // 60} h {round(left / 120) % 60:02d} min of wall time at 2" in text


def test_bad_arguments_are_named(tmp_path):
    bad = run_cli("src.report.progress", tmp_path, "--experiment", "study_digit")
    assert bad.returncode == 2 and "unknown experiment 'study_digit'; valid:" in bad.stderr and "study_digits" in bad.stderr
    missing = run_cli("src.report.progress", tmp_path / "nope", "--experiment", EXP)
    assert missing.returncode == 2 and "not a directory" in missing.stderr
    zero = run_cli("src.report.progress", tmp_path, "--experiment", EXP, "--n-jobs", "0")
    assert zero.returncode == 2 and "--n-jobs must be at least 1, got 0" in zero.stderr


def test_study_sh_status_reads_the_study_root(tmp_path):
    write_job(tmp_path / "study_digits" / "seed0" / "single" / "0", 0, "A", "none", "completed", 2000, total_sec=1000.0)
    env = {**os.environ, "STUDY_ROOT": str(tmp_path), "PYTHON": sys.executable, "SEEDS": "0", "N_JOBS": "1"}
    proc = subprocess.run(["bash", "sweeps/study.sh", "digits", "--status"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert f"study root: {tmp_path / 'study_digits'}" in proc.stdout
    assert "1 of 108 jobs done (1 done, 107 not started)" in proc.stdout
    assert "0     study_digits_pairs    0/2" in proc.stdout
