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
