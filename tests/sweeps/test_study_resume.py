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
