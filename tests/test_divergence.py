"""Non-finite losses stop a run at once (status diverged, last good checkpoint kept); sweeps go on."""
import json

import torch

from tests.helpers import run_cli

BLOW_UP = ["regularizer=none", "loss=wasserstein", "optim.lr=1e6", "optim.n_dis=1", "steps=200"]
FAST = ["metrics=none", "samples.every=0", "trainer.enable_progress_bar=false", "callbacks=none", "checkpoint.every=1"]


def test_divergence_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    result = run_cli("src.train", *BLOW_UP, *FAST, run_dir=tmp_path / "run")
    assert result.returncode == 3
    s = result.summary
    assert s["status"] == "diverged"
    assert 1 <= s["steps"] < 200
    assert "non-finite" in s["error"] and f"step {s['steps']}" in s["error"]
    assert "diverged" in result.stderr.strip().splitlines()[-1]
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] // 2 < s["steps"]
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())


def test_a_diverging_job_does_not_stop_the_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli("src.train", "-m", "regularizer=none", "loss=wasserstein", "optim.n_dis=1", "steps=30",
                     "optim.lr=1e-4,1e6,1e-4", "seed=0", *FAST, f"hydra.sweep.dir={sweep}")
    assert result.returncode == 0, result.stderr[-2000:]
    statuses = [json.loads((sweep / str(i) / "summary.json").read_text())["status"] for i in range(3)]
    assert statuses == ["completed", "diverged", "completed"]
