"""Scoring during training (src/callbacks/evaluation.py): the end-of-training score is taken once and is
the one summary.json records; periodic scores land in the history at their generator steps."""
import csv

from tests.helpers import train_in_process

DIGITS = ["data=digits", "arch.width=0.25", "data.batch_size=16", "metrics=fast", "metrics.n_real=64", "metrics.n_fake=64",
          "samples.every=0", "checkpoint.every=0", "callbacks=none"]


def _count_scores(monkeypatch) -> list:
    from src.metrics.evaluator import ImageEvaluator

    calls, score = [], ImageEvaluator.score

    def counting(self, *args, **kwargs):
        metrics = score(self, *args, **kwargs)
        calls.append(metrics)
        return metrics

    monkeypatch.setattr(ImageEvaluator, "score", counting)
    return calls


def test_the_final_evaluation_runs_once(tmp_path, monkeypatch):
    calls = _count_scores(monkeypatch)
    summary = train_in_process([*DIGITS, "steps=2"], tmp_path / "run")
    assert summary["status"] == "completed", summary["error"]
    assert len(calls) == 1  # the callback's end-of-training score, which src.train then records
    assert summary["metrics"] == calls[0]
    with open(tmp_path / "run" / "logs" / "metrics.csv") as f:
        logged = [r for r in csv.DictReader(f) if r.get("eval/fid")]
    assert [int(float(r["step"])) for r in logged] == [2]
    assert float(logged[0]["eval/fid"]) == summary["metrics"]["fid"]


def test_periodic_scores_and_the_final_one_each_once(tmp_path, monkeypatch):
    calls = _count_scores(monkeypatch)
    summary = train_in_process([*DIGITS, "steps=3", "metrics.every=1"], tmp_path / "run")
    assert summary["status"] == "completed", summary["error"]
    assert len(calls) == 3
    assert [h["step"] for h in summary["metrics_history"]] == [1, 2, 3]
    assert {k: summary["metrics_history"][-1][k] for k in summary["metrics"]} == summary["metrics"]


def test_a_run_stopped_at_a_scoring_step_resumes_with_its_whole_learning_curve(tmp_path):
    """SIGTERM inside step 4 with scores every 2 steps: the checkpoint taken at the end of step 4 holds the
    scores of steps 2 and 4, and the resumed run's curve, final scores and weights are the uninterrupted
    run's (WGAN-GP: its interpolation points come from the global RNG, which the checkpoint carries)."""
    import json
    import os
    import subprocess
    import sys

    import torch

    from tests.helpers import KILLER, REPO, assert_same_checkpoint

    args = [*DIGITS, "steps=6", "metrics.every=2", "regularizer=wgan_gp", "optim=A", "trainer.enable_progress_bar=false"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}

    def train(run_dir, signal_at=None):
        cmd = [sys.executable, "-m", "src.train"] if signal_at is None else [sys.executable, "-c", KILLER]
        extra = {} if signal_at is None else {"KILL_AT_STEP": str(signal_at), "KILL_SIGNAL": "SIGTERM"}
        return subprocess.run([*cmd, *args, f"hydra.run.dir={run_dir}"], cwd=REPO, env={**env, **extra},
                              capture_output=True, text=True, timeout=600)

    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    assert train(straight).returncode == 0
    proc = train(stopped, signal_at=3)  # arrives inside step 4: the run stops at its end
    assert proc.returncode == 143, proc.stderr[-2000:]
    first = json.loads((stopped / "summary.json").read_text())
    assert first["status"] == "interrupted" and first["steps"] == 4
    assert train(stopped).returncode == 0

    whole, resumed = (json.loads((d / "summary.json").read_text()) for d in (straight, stopped))
    assert resumed["timing"]["segments"] == 2
    assert [h["step"] for h in resumed["metrics_history"]] == [2, 4, 6]
    assert resumed["metrics_history"] == whole["metrics_history"]
    assert resumed["metrics"] == whole["metrics"]
    # the scoring time of the first segment travels too (the second has no periodic scoring: step 6 is the end)
    assert resumed["eval_protocol"]["periodic_eval_sec"] > 0
    a, b = (torch.load(d / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True) for d in (straight, stopped))
    assert_same_checkpoint(a, b)


def test_a_finished_run_continued_with_more_steps_matches_a_longer_run(tmp_path):
    """steps=4 then the same run dir with steps=6: the continuation resumes from step 4's checkpoint (saved
    before step 4's final score), scores step 4 again from the restored generator, and ends with the
    curve, scores and weights of one 6-step run."""
    import torch

    from tests.helpers import assert_same_checkpoint

    args = [*DIGITS, "metrics.every=2", "regularizer=sn", "checkpoint.every=2"]
    short = train_in_process([*args, "steps=4"], tmp_path / "continued")
    assert short["status"] == "completed", short["error"]
    continued = train_in_process([*args, "steps=6"], tmp_path / "continued")
    straight = train_in_process([*args, "steps=6"], tmp_path / "straight")
    assert continued["status"] == straight["status"] == "completed"
    assert [h["step"] for h in continued["metrics_history"]] == [2, 4, 6]
    assert continued["metrics_history"] == straight["metrics_history"]
    assert continued["metrics_history"][1] == {"step": 4, **short["metrics"]}  # step 4 scored twice, alike
    assert continued["metrics"] == straight["metrics"]
    a, b = (torch.load(d / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
            for d in (tmp_path / "straight", tmp_path / "continued"))
    assert_same_checkpoint(a, b)
