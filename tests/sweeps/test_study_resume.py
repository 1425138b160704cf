"""Relaunching a study runs only what is not done: completed jobs are skipped, the rest resume or run."""
import json
import subprocess

import pytest

from tests.helpers import REPO, train_in_process

ARGS = ["steps=3", "metrics=none", "callbacks=none", "samples.every=0", "checkpoint.every=0"]


def test_skip_completed_leaves_a_finished_job_alone(tmp_path):
    run = tmp_path / "run"
    first = train_in_process(ARGS, run)
    assert first["status"] == "completed"
    before = (run / "summary.json").read_text()
    again = train_in_process([*ARGS, "skip_completed=true"], run)
    assert again["skipped"] and again["status"] == "completed"
    assert (run / "summary.json").read_text() == before  # not rewritten, not retrained
    # a different job in the same dir (longer, another seed) is not "already done"
    longer = train_in_process([*ARGS[1:], "steps=5", "skip_completed=true"], run)
    assert not longer.get("skipped") and longer["steps"] == 5


def test_run_sh_names_valid_grids(tmp_path):
    proc = subprocess.run(["bash", "sweeps/run.sh", "mian"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2
    assert "unknown grid 'mian'" in proc.stderr and "main" in proc.stderr and "ndis" in proc.stderr
    proc = subprocess.run(["bash", "sweeps/run.sh", "--resume", str(tmp_path / "nope"), "main"], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "--resume needs the sweep dir" in proc.stderr


@pytest.mark.slow
def test_run_sh_resume_skips_completed_and_runs_the_rest(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["ndis", "data=toy2d", "arch=mlp", "optim.n_dis=1,2", "regularizer=sn", "seed=0", "steps=3", "metrics=none",
            "callbacks=none", "trainer.enable_progress_bar=false"]
    env_cmd = ["env", f"SWEEP_DIR={sweep}", "bash", "sweeps/run.sh"]
    assert subprocess.run([*env_cmd, *args], cwd=REPO, capture_output=True, text=True).returncode == 0
    done = sweep / "0" / "summary.json"
    stamp = done.read_text()
    (sweep / "1" / "summary.json").unlink()  # as if job 1 had been killed before writing it
    proc = subprocess.run(["bash", "sweeps/run.sh", "--resume", str(sweep), *args], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert done.read_text() == stamp
    assert json.loads((sweep / "1" / "summary.json").read_text())["status"] == "completed"


def _record(job, status, tag):
    (job / ".hydra").mkdir(parents=True)
    (job / "summary.json").write_text(json.dumps({"status": status, "tag": tag}, indent=2) + "\n")
    (job / ".hydra" / "overrides.yaml").write_text(f"- seed={tag}\n")
    (job / ".hydra" / "config.yaml").write_text(f"seed: {tag}\n")


def _study_sh(tmp_path, *args):
    # PYTHON=true: the report and curve steps become no-ops; this is about which records the study root holds
    env = {"PATH": "/usr/bin:/bin", "PYTHON": "true", "STUDY_ROOT": str(tmp_path / "root"),
           "RESULTS_DIR": str(tmp_path / "results")}
    return subprocess.run(["bash", "sweeps/study.sh", "toy", *args], cwd=REPO, env=env, capture_output=True, text=True)


def test_study_sh_restores_published_completed_jobs_into_a_fresh_study_root(tmp_path):
    """A new session's machine holds only the repository: the committed records of completed jobs go back
    into the study root (so skip_completed skips them and --publish keeps them); unfinished ones do not, and
    what the root already holds is left alone."""
    published = tmp_path / "results" / "study_toy"
    single = published / "runs" / "seed0" / "single"
    _record(single / "0", "completed", 0)
    _record(single / "1", "running", 1)      # stopped unfinished: no checkpoint was committed, so it reruns
    _record(single / "2", "completed", 2)
    (single / "multirun.yaml").write_text("hydra: {}\n")
    (published / "wall_time.log").write_text("start study_toy seed=0\n")
    root = tmp_path / "root" / "study_toy" / "seed0" / "single"
    _record(root / "2", "interrupted", 22)   # this machine's own record of job 2

    proc = _study_sh(tmp_path, "--report")
    assert proc.returncode == 0, proc.stderr
    assert "restored 1 completed job(s)" in proc.stdout
    for f in ("summary.json", ".hydra/overrides.yaml", ".hydra/config.yaml"):
        assert (root / "0" / f).read_bytes() == (single / "0" / f).read_bytes()
    assert not (root / "1").exists()
    assert json.loads((root / "2" / "summary.json").read_text())["tag"] == 22
    assert (root / "multirun.yaml").read_text() == "hydra: {}\n"
    assert (tmp_path / "root" / "study_toy" / "wall_time.log").read_text() == "start study_toy seed=0\n"

    again = _study_sh(tmp_path, "--report")   # idempotent: nothing left to restore
    assert again.returncode == 0 and "restored" not in again.stdout


def test_study_sh_no_restore_leaves_the_root_empty_and_bad_options_are_named(tmp_path):
    _record(tmp_path / "results" / "study_toy" / "runs" / "seed0" / "single" / "0", "completed", 0)
    proc = _study_sh(tmp_path, "--report", "--no-restore")
    assert proc.returncode == 2 and "nothing has run under" in proc.stderr
    assert not (tmp_path / "root" / "study_toy" / "seed0").exists()
    bad = _study_sh(tmp_path, "--restor")
    assert bad.returncode == 2 and "unknown option '--restor'" in bad.stderr and "--no-restore" in bad.stderr
