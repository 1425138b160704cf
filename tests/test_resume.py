"""Exact resume after SIGKILL, atomic checkpoints, safe loading."""
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from src.checkpoint_io import AtomicCheckpointIO, load_checkpoint_file
from src.errors import UserError
from tests.conftest import REPO

ARGS = ["steps=300", "checkpoint.every=100", "samples.every=0", "log_every=5", "trainer.deterministic=true",
        "trainer.enable_progress_bar=false", "metrics=none", "regularizer=sn"]


def cmd(run_dir, *extra):
    return [sys.executable, "-m", "src.train", *ARGS, *extra, f"hydra.run.dir={run_dir}"]


def final_state(run_dir):
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    return ckpt


@pytest.mark.parametrize("extra", [[], ["optim=A", "data.variant=grid25"]])
def test_sigkill_then_resume_matches_uninterrupted_run_bit_for_bit(tmp_path, extra):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    subprocess.run(cmd(straight, *extra), cwd=REPO, env=env, check=True, capture_output=True, timeout=600)

    proc = subprocess.Popen(cmd(killed, *extra), cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = killed / "checkpoints" / "gstep_0000100.ckpt"
    last = killed / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while not (first.exists() and last.exists()) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert first.exists(), "the run never reached its first checkpoint"
    assert not (killed / "summary.json").exists(), "the run finished before it could be killed"
    done_before = torch.load(killed / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["global_step"]
    assert done_before < final_state(straight)["global_step"]

    # rerun into the same directory: it resumes from checkpoints/last.ckpt by itself
    subprocess.run(cmd(killed, *extra), cwd=REPO, env=env, check=True, capture_output=True, timeout=600)
    a, b = final_state(straight), final_state(killed)
    assert a["global_step"] == b["global_step"]
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    for opt_a, opt_b in zip(a["optimizer_states"], b["optimizer_states"]):
        for pid, st in opt_a["state"].items():
            assert torch.equal(st["exp_avg_sq"], opt_b["state"][pid]["exp_avg_sq"])
    assert torch.equal(a["gan_rng_state"], b["gan_rng_state"])
    assert a["lr_schedulers"] == b["lr_schedulers"]


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


def test_checkpoints_refuse_pickled_code(tmp_path):
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": os.getcwd.__class__}, path)  # a non-tensor object
    with pytest.raises(UserError, match="cannot be read"):
        load_checkpoint_file(path)
