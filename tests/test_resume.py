"""Exact resume after SIGKILL, atomic checkpoints, safe loading."""
import os
import subprocess
import sys

import pytest
import torch

from src.checkpoint_io import AtomicCheckpointIO, load_checkpoint_file
from src.errors import UserError
from tests.helpers import KILLER, REPO, assert_same_checkpoint

ARGS = ["steps=80", "checkpoint.every=20", "samples.every=0", "log_every=5", "trainer.deterministic=true",
        "trainer.enable_progress_bar=false", "metrics=none", "callbacks.spectral.every=10",
        "arch.hidden=64", "data.batch_size=64", "data.n_points=4000"]  # a small MLP: resuming is what is tested

# The child process sends itself a signal (SIGKILL unless $KILL_SIGNAL names another) at the start of a
# given generator step: a real signal at a known point (polling from outside races a fast toy run).
# Nothing in src/ knows about it.


def train(run_dir, extra, kill_at=None):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    args = [*ARGS, *extra, f"hydra.run.dir={run_dir}"]
    if kill_at is None:
        cmd = [sys.executable, "-m", "src.train", *args]
    else:
        cmd = [sys.executable, "-c", KILLER, *args]
        env["KILL_AT_STEP"] = str(kill_at)
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def last(run_dir):
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)


@pytest.mark.parametrize("extra", [["regularizer=sn"],
                                   pytest.param(["regularizer=wgan_gp", "optim=A", "data.variant=grid25"], marks=pytest.mark.slow)])
def test_sigkill_then_resume_matches_uninterrupted_run_bit_for_bit(tmp_path, extra):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert train(straight, extra).returncode == 0

    proc = train(killed, extra, kill_at=50)
    assert proc.returncode == -9  # SIGKILL
    import json

    assert json.loads((killed / "summary.json").read_text())["status"] == "running"  # never "completed"
    assert last(killed)["global_step"] < last(straight)["global_step"]  # stopped at the step-40 checkpoint

    # rerun into the same directory: it resumes from checkpoints/last.ckpt by itself
    assert train(killed, extra).returncode == 0
    a, b = last(straight), last(killed)
    assert_same_checkpoint(a, b)
    assert a["lr_schedulers"] == b["lr_schedulers"]

    # the record says what each segment ran on: the straight run one segment, the resumed one two
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    one = json.loads((straight / "summary.json").read_text())["provenance"]
    two = json.loads((killed / "summary.json").read_text())["provenance"]
    assert [p["from_step"] for p in one] == [0] and [p["from_step"] for p in two] == [0, 40]
    assert {p["commit"] for p in one + two} == {head or None}
    assert {p["torch"] for p in one + two} == {torch.__version__}
    assert {p["cpu_capability"] for p in one + two} == {torch.backends.cpu.get_cpu_capability()}


def test_interrupted_save_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}}, path)

    def dying_save(obj, f, *a, **k):
        with open(f, "wb") as fh:
            fh.write(b"\x80\x02partial")
        raise KeyboardInterrupt("killed mid-save")

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}}, path)
    monkeypatch.undo()
    assert torch.equal(load_checkpoint_file(path)["state_dict"]["w"], torch.ones(3))
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_truncated_checkpoint_is_a_one_line_error(tmp_path):
    path = tmp_path / "bad.ckpt"
    torch.save({"state_dict": {"w": torch.ones(100)}}, path)
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(UserError, match="bad.ckpt cannot be read"):
        load_checkpoint_file(path)


class Payload:
    """An arbitrary class: unpickling it would mean importing and running code named by the file."""


def test_checkpoints_refuse_pickled_code(tmp_path):
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": Payload()}, path)
    with pytest.raises(UserError, match="cannot be read"):
        load_checkpoint_file(path)
