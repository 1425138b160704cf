"""The committed studies (docs/results/study_*/): src.report rebuilds each report from the committed
summaries alone, and every job's record is complete (overrides to rerun it, its resolved config)."""
import json
from pathlib import Path

import pytest

from src.report import build_report
from tests.helpers import REPO

RESULTS = REPO / "docs" / "results"
STUDIES = sorted(p for p in RESULTS.glob("study_*") if (p / "runs").is_dir())


def _metric(report_md: str) -> str:
    line = next(l for l in report_md.splitlines() if l.startswith("Primary metric:"))
    return line.split("**")[1]


@pytest.mark.skipif(not STUDIES, reason="no study committed under docs/results/")
@pytest.mark.parametrize("study", STUDIES, ids=lambda p: p.name)
def test_the_report_is_rebuilt_from_the_committed_summaries_alone(study, tmp_path, monkeypatch):
    committed = (study / "report" / "report.md").read_text()
    dirs = [p for p in sorted((study / "runs").iterdir()) if p.is_dir()]
    monkeypatch.chdir(study.parents[2])  # the repo root: the report names its inputs relative to it
    rel = [d.relative_to(study.parents[2]) for d in dirs]
    metric = _metric(committed)
    result = build_report(rel, tmp_path / "report", metric)
    rebuilt = Path(result["markdown"]).read_text()
    # the first lines name the command and output dir; everything from the run counts on must match
    strip = lambda text: text.split("\n", 3)[3]
    assert strip(rebuilt) == strip(committed)


@pytest.mark.skipif(not STUDIES, reason="no study committed under docs/results/")
@pytest.mark.parametrize("study", STUDIES, ids=lambda p: p.name)
def test_every_job_has_its_summary_overrides_and_config(study):
    jobs = [p.parent for p in (study / "runs").rglob("summary.json")]
    sweeps = [p.parent for p in (study / "runs").rglob("multirun.yaml")]
    assert jobs and sweeps and all(job.parent in sweeps for job in jobs)
    for job in jobs:
        assert (job / ".hydra" / "overrides.yaml").is_file(), job
        assert (job / ".hydra" / "config.yaml").is_file(), job
        s = json.loads((job / "summary.json").read_text())
        assert s["status"] in {"completed", "diverged", "failed", "interrupted", "running"}, job
        if s["status"] == "completed":
            assert s["metrics_history"] and s["metrics_history"][-1]["step"] == s["steps"], job
    assert not list(study.rglob("*.ckpt"))  # no checkpoints committed
