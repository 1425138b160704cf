"""Lightning DDP with 2 CPU processes (gloo): trains, and only rank 0 writes the run's outputs."""
import json

from tests.conftest import run_cli


def test_two_process_ddp_on_cpu(tmp_path):
    run = tmp_path / "run"
    result = run_cli("src.train", "steps=6", "trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu",
                     "callbacks=none", "samples.every=3", "trainer.enable_progress_bar=false", run_dir=run)
    assert result.returncode == 0, result.stderr[-3000:]
    s = json.loads((run / "summary.json").read_text())
    assert s["status"] == "completed" and s["steps"] == 6
    assert "modes_covered" in s["metrics"]  # evaluated once, on rank 0
    assert (run / "train_ddp_process_1.log").exists()  # a second process really ran
    assert result.stdout.count("done:") == 1  # one report, from rank 0
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["final.png", "step_0000003.png", "step_0000006.png"]
