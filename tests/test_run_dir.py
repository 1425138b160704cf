"""One run per run directory (lock), and what a run directory holds across reruns and resumes: the final
weights, honest summaries and timing, refused mismatched or foreign checkpoints, no leftovers."""
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from src.run_lock import RunDirLock, RunDirLocked
from tests.helpers import REPO, run_cli
from tests.helpers import KILLER

BASE = ["metrics=none", "trainer.enable_progress_bar=false", "callbacks=none", "samples.every=0"]


def cli(run_dir, *args):
    return run_cli("src.train", *BASE, *args, run_dir=run_dir)


def summary(run_dir):
    return json.loads((run_dir / "summary.json").read_text())


def last(run_dir):
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)


# ---- the lock -----------------------------------------------------------------------------------------
def test_lock_is_exclusive_and_released(tmp_path):
    with RunDirLock(tmp_path):
        with pytest.raises(RunDirLocked, match=f"pid {os.getpid()}"):
            RunDirLock(tmp_path).acquire()
    with RunDirLock(tmp_path):  # released: free again
        pass


HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from src.run_lock import RunDirLock
    lock = RunDirLock(Path(sys.argv[1])).acquire()
    print("locked", flush=True)
    time.sleep(600)
""")


def test_second_run_in_a_busy_directory_is_refused_and_writes_nothing(tmp_path):
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        proc = cli(run, "steps=2")
        assert proc.returncode == 2
        line = proc.stderr.strip().splitlines()[-1]
        assert str(run) in line and f"pid {holder.pid}" in line and "in use" in line
        assert "Traceback" not in proc.stderr
        # the holder's directory is untouched: no summary, no config, no checkpoints of the refused run
        assert not (run / "summary.json").exists() and not (run / ".hydra").exists() and not (run / "checkpoints").exists()
    finally:
        holder.kill()
        holder.wait()
    # a lock left by a dead process is taken over
    assert json.loads((run / ".run.lock").read_text())["pid"] == holder.pid
    proc = cli(run, "steps=2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert summary(run)["status"] == "completed"


# ---- final weights, records across reruns ---------------------------------------------------------------
def test_last_checkpoint_holds_the_scored_generator_and_a_rerun_keeps_the_record(tmp_path):
    run = tmp_path / "run"
    proc = cli(run, "steps=23", "checkpoint.every=5", "log_every=1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    first = summary(run)
    ckpt = last(run)
    assert first["steps"] == 23
    assert ckpt["global_step"] == 23 * (first["n_dis"] + 1)  # not the step-20 periodic checkpoint
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "gstep_0000005.ckpt", "gstep_0000010.ckpt", "gstep_0000015.ckpt", "gstep_0000020.ckpt", "last.ckpt"]

    # leftovers of a save a SIGKILL cut short are cleared by the next run in the directory
    (run / "checkpoints" / ".last.ckpt.tmp4242").write_bytes(b"partial")
    proc = cli(run, "steps=23", "checkpoint.every=5", "log_every=1")  # a fully trained rerun
    assert proc.returncode == 0, proc.stderr[-2000:]
    again = summary(run)
    assert not (run / "checkpoints" / ".last.ckpt.tmp4242").exists()
    assert again["steps"] == 23 and again["metrics"] == first["metrics"]
    # its timing is the run's, not the 0 s of a rerun that trained nothing
    assert again["timing"]["total_sec"] == pytest.approx(first["timing"]["total_sec"])
    assert again["timing"]["sec_per_step"] == pytest.approx(first["timing"]["sec_per_step"])


def test_killed_extension_of_a_completed_run_does_not_keep_the_old_completed_summary(tmp_path):
    run = tmp_path / "run"
    assert cli(run, "steps=4").returncode == 0
    assert summary(run)["status"] == "completed"
    proc = subprocess.run([sys.executable, "-c", KILLER, *BASE, "steps=40", f"hydra.run.dir={run}"], cwd=REPO,
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONWARNINGS": "ignore", "KILL_AT_STEP": "10"})
    assert proc.returncode == -9
    s = summary(run)
    assert s["status"] == "running" and s["steps_planned"] == 40  # not "completed" at 4 steps


def test_resume_refuses_a_changed_n_dis(tmp_path):
    run = tmp_path / "run"
    assert cli(run, "steps=4", "optim.n_dis=2").returncode == 0
    proc = cli(run, "steps=8", "optim.n_dis=3")
    assert proc.returncode == 2
    line = proc.stderr.strip().splitlines()[-1]
    assert "optim.n_dis=2" in line and "optim.n_dis=3" in line
    assert summary(run)["status"] == "completed" and summary(run)["steps"] == 4  # the finished run's record stays


def test_foreign_checkpoint_is_refused_as_such(tmp_path):
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "epoch": 3}, foreign)
    proc = cli(tmp_path / "run", "steps=2", f"ckpt_path={foreign}")
    assert proc.returncode == 2
    line = proc.stderr.strip().splitlines()[-1]
    assert "foreign.ckpt" in line and "not written by this lab" in line and "None" not in line
