"""SIGTERM / SIGINT: a checkpoint at the current generator step, status "interrupted", a non-zero exit,
and a rerun that continues as if nothing had happened (weights, logs, timing); sweeps stop and resume."""
import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from tests.helpers import REPO
from tests.helpers import KILLER

ARGS = ["steps=30", "checkpoint.every=10", "samples.every=0", "log_every=5", "trainer.deterministic=true",
        "trainer.enable_progress_bar=false", "metrics=none", "callbacks.spectral.every=10",
        "arch.hidden=64", "data.batch_size=64", "data.n_points=4000"]

def train(args, signal_at=None, signal_name="SIGTERM", hook="training_step"):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    if signal_at is None:
        cmd = [sys.executable, "-m", "src.train", *args]
    else:
        cmd = [sys.executable, "-c", KILLER, *args]  # signals itself inside that step, as a scheduler's would arrive
        env.update(KILL_AT_STEP=str(signal_at), KILL_SIGNAL=signal_name, KILL_HOOK=hook)
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def summary(run_dir):
    return json.loads((run_dir / "summary.json").read_text())


def last(run_dir):
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)


def csv_steps(run_dir, column):
    with open(run_dir / "logs" / "metrics.csv", newline="") as f:
        return [int(float(r["step"])) for r in csv.DictReader(f) if r.get(column) not in (None, "")]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The uninterrupted run both signals are compared with."""
    run = tmp_path_factory.mktemp("straight") / "run"
    assert train([*ARGS, f"hydra.run.dir={run}"]).returncode == 0
    return run


@pytest.mark.parametrize("name,code", [("SIGTERM", 143), ("SIGINT", 130)])
def test_signal_checkpoints_the_current_step_and_the_rerun_continues_exactly(tmp_path, straight, name, code):
    stopped = tmp_path / "stopped"

    proc = train([*ARGS, f"hydra.run.dir={stopped}"], signal_at=13, signal_name=name)
    assert proc.returncode == code, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    message = proc.stderr.strip().splitlines()[-1]
    assert f"interrupted by {name} at generator step 14" in message and "resume" in message
    s = summary(stopped)
    assert s["status"] == "interrupted" and s["steps"] == 14 and s["exit_code"] == code
    n_dis = s["n_dis"]
    # the checkpoint holds the step the signal arrived in, finished: not the step-10 periodic one
    assert last(stopped)["global_step"] == 14 * (n_dis + 1)
    assert s["timing"]["total_sec"] > 0

    proc = train([*ARGS, f"hydra.run.dir={stopped}"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    a, b = last(straight), last(stopped)
    assert a["global_step"] == b["global_step"] == 30 * (n_dis + 1)
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    resumed, whole = summary(stopped), summary(straight)
    assert resumed["status"] == "completed" and resumed["steps"] == 30
    assert resumed["metrics"] == whole["metrics"]
    assert resumed["timing"]["segments"] == 2 and whole["timing"]["segments"] == 1
    assert resumed["timing"]["total_sec"] > s["timing"]["total_sec"]
    # the logs read as one run's: every logged step once, in order, on the generator-step axis
    assert csv_steps(stopped, "loss/d") == csv_steps(straight, "loss/d") == [1, 5, 10, 15, 20, 25, 30]


def test_sigterm_after_the_callbacks_end_of_step_still_stops_at_the_next_step_with_a_checkpoint(tmp_path, straight):
    """A SIGTERM landing after the callbacks' on_train_batch_end (here: in the module's own hook) used to reach
    Lightning's end-of-batch check first: fit ended with a bare SystemExit, exit status 0, the summary left
    "running" and no checkpoint at that step. It must be the next step's end, as for any other moment."""
    stopped = tmp_path / "stopped"
    proc = train([*ARGS, f"hydra.run.dir={stopped}"], signal_at=14, hook="on_train_batch_end")
    assert proc.returncode == 143, proc.stderr[-2000:]
    s = summary(stopped)
    assert s["status"] == "interrupted" and s["exit_code"] == 143
    assert s["steps"] == 15  # g_step is 14 in the hook that ends step 14: the guard stops at step 15's end
    assert last(stopped)["global_step"] == 15 * (s["n_dis"] + 1)

    assert train([*ARGS, f"hydra.run.dir={stopped}"]).returncode == 0
    a, b = last(straight), last(stopped)
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    assert summary(stopped)["metrics"] == summary(straight)["metrics"]


def test_sweep_stops_on_sigterm_and_its_relaunch_resumes_it(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", *ARGS, "steps=12", "seed=0,1", f"hydra.sweep.dir={sweep}"]
    proc = train(args, signal_at=5)
    assert proc.returncode == 143, proc.stderr[-2000:]
    assert str(sweep) in proc.stderr.strip().splitlines()[-1]  # says where to relaunch
    assert summary(sweep / "0")["status"] == "interrupted"
    assert not (sweep / "1" / "summary.json").exists()  # the sweep stopped: no later job ran

    proc = train(args)  # the same command: job 0 resumes, job 1 runs
    assert proc.returncode == 0, proc.stderr[-2000:]
    first, second = summary(sweep / "0"), summary(sweep / "1")
    assert first["status"] == second["status"] == "completed"
    assert first["steps"] == second["steps"] == 12
    assert first["timing"]["segments"] == 2 and second["timing"]["segments"] == 1


@pytest.mark.slow
def test_sigterm_from_outside_as_a_scheduler_sends_it(tmp_path):
    """The issue's reproduction: `python -m src.train steps=400 ... & kill -TERM $!`."""
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "src.train", "steps=5000", "metrics=none", "trainer.enable_progress_bar=false",
                             f"hydra.run.dir={run}"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and not (run / "summary.json").exists():  # "running" once training starts
        time.sleep(0.5)
    time.sleep(2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err[-2000:]
    s = summary(run)
    assert s["status"] == "interrupted" and 0 < s["steps"] < 5000
    assert last(run)["global_step"] == s["steps"] * (s["n_dis"] + 1)


def test_a_parallel_sweep_stopped_by_sigterm_checkpoints_every_running_job(tmp_path):
    """Two jobs at a time (joblib): both get SIGTERM. The first to stop used to end the pool, which killed the
    other before its step's end (left "running", its checkpoint older or missing); now each job records
    "interrupted" with a checkpoint at the step it stopped at."""
    from src.run_lock import live_holder

    sweep = tmp_path / "sweep"
    args = ["-m", *ARGS, "steps=100000", "checkpoint.every=100000", "seed=0,1", "threads=1", "hydra/launcher=parallel",
            f"hydra.sweep.dir={sweep}"]
    proc = subprocess.Popen([sys.executable, "-m", "src.train", *args], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    jobs = [sweep / "0", sweep / "1"]
    deadline = time.time() + 300
    while time.time() < deadline and not all((j / "summary.json").exists() and summary(j)["status"] == "running" for j in jobs):
        time.sleep(0.2)
    time.sleep(3)  # both are training
    holders = [live_holder(j) for j in jobs]
    assert all(holders), "both jobs should be running in their own worker"
    os.kill(holders[0]["pid"], signal.SIGTERM)
    time.sleep(2)  # the other one is slower to reach its step's end (as a step of a larger model is)
    os.kill(holders[1]["pid"], signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err[-2000:]
    while time.time() < deadline and any(live_holder(j) for j in jobs):  # the pool's workers end on their own
        time.sleep(0.2)
    for job in jobs:
        s = summary(job)
        assert s["status"] == "interrupted" and 0 < s["steps"] < 100000, (job, s["status"])
        assert last(job)["global_step"] == s["steps"] * (s["n_dis"] + 1)


def _loky_workers(parent: int) -> list[int]:
    """The joblib (loky) worker processes of a sweep's parent process, from /proc."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = open(f"/proc/{entry}/stat").read()
            cmdline = open(f"/proc/{entry}/cmdline", "rb").read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and b"popen_loky_posix" in cmdline:
            out.append(int(entry))
    return out


def test_sigterm_to_an_idle_worker_of_a_parallel_sweep_leaves_the_busy_one_to_checkpoint(tmp_path):
    """A stop sends SIGTERM to every worker. One whose job had finished used to die of it, and joblib then shut
    the pool down, killing the busy worker before its step's end (the study lost updates this way). The idle
    worker now records the signal; the busy job checkpoints at its step's end and the sweep exits 143."""
    from src.run_lock import live_holder

    sweep = tmp_path / "sweep"
    args = ["-m", *ARGS, "steps=5,100000", "checkpoint.every=100000", "threads=1", "hydra/launcher=parallel",
            f"hydra.sweep.dir={sweep}"]
    proc = subprocess.Popen([sys.executable, "-m", "src.train", *args], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    short, long = sweep / "0", sweep / "1"
    deadline = time.time() + 300
    while time.time() < deadline and not ((short / "summary.json").exists() and summary(short)["status"] == "completed"
                                          and live_holder(long)):
        time.sleep(0.2)
    time.sleep(1)
    busy = live_holder(long)["pid"]
    idle = [pid for pid in _loky_workers(proc.pid) if pid != busy]
    assert len(idle) == 1, (busy, _loky_workers(proc.pid))
    os.kill(idle[0], signal.SIGTERM)
    time.sleep(3)
    assert proc.poll() is None and live_holder(long), "the idle worker's signal ended the sweep"
    os.kill(busy, signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err[-2000:]
    s = summary(long)
    assert s["status"] == "interrupted" and 0 < s["steps"] < 100000
    assert last(long)["global_step"] == s["steps"] * (s["n_dis"] + 1)
    assert summary(short)["status"] == "completed"


BETWEEN_RUNS = textwrap.dedent("""
    import os, signal, sys, time
    from src.callbacks.interrupt import InterruptGuard, RunInterrupted, hold_signals_between_runs
    hold_signals_between_runs()
    os.kill(os.getpid(), signal.SIGTERM)
    try:
        with InterruptGuard():
            print("the run started", flush=True)
    except RunInterrupted as exc:
        print("stopped before it started:", exc, flush=True)
    with InterruptGuard():
        print("the next run started", flush=True)
    hold_signals_between_runs()
    os.kill(os.getpid(), signal.SIGTERM)
    os.kill(os.getpid(), signal.SIGTERM)
    print("still alive", flush=True)
""")


def test_a_process_between_runs_records_a_signal_for_its_next_run_and_ends_at_a_second():
    proc = subprocess.run([sys.executable, "-c", BETWEEN_RUNS], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.stdout.splitlines() == ["stopped before it started: interrupted by SIGTERM", "the next run started"]
    assert proc.returncode == 143, proc.stderr[-2000:]


ORPHAN = textwrap.dedent("""
    import os, time
    from joblib import Parallel, delayed
    def job():
        from src.callbacks.interrupt import hold_signals_between_runs
        time.sleep(1)  # both workers take a job
        hold_signals_between_runs()  # as src.train's main does after each job of a multirun
        return os.getpid()
    print(*Parallel(n_jobs=2, backend="loky")(delayed(job)() for _ in range(2)), flush=True)
    os._exit(0)  # the launcher dies without shutting its pool down, as one killed by a signal does
""")


def test_a_sweep_worker_whose_launcher_died_ends_on_its_own(tmp_path):
    """Idle loky workers outlived a launcher killed alone for minutes (one sat blocked, unkillable by SIGTERM
    once it held signals); between jobs, a worker now ends within seconds of its launcher's death."""
    out = tmp_path / "out"
    with open(out, "w") as f:  # a file, not a pipe: workers that outlive the launcher would hold a pipe open
        proc = subprocess.run([sys.executable, "-c", ORPHAN], cwd=REPO, stdout=f, stderr=subprocess.STDOUT, timeout=120)
    workers = {int(word) for word in out.read_text().split() if word.isdigit()}
    assert proc.returncode == 0 and workers, out.read_text()[-2000:]
    try:
        deadline = time.time() + 30
        while time.time() < deadline and any(_alive(pid) for pid in workers):
            time.sleep(0.2)
        assert not any(_alive(pid) for pid in workers)
    finally:
        for pid in workers:  # a failing run's orphans
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    """Running or sleeping: not gone and not a zombie waiting for a reaper."""
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
