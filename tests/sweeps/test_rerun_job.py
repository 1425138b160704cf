"""sweeps/rerun_job.py: a job rerun from its recorded overrides reproduces its scores; a difference is named."""
import importlib.util
import json
import pytest

from tests.helpers import REPO, run_cli

spec = importlib.util.spec_from_file_location("rerun_job", REPO / "sweeps" / "rerun_job.py")
rerun_job = importlib.util.module_from_spec(spec)
spec.loader.exec_module(rerun_job)

TINY = ["steps=12", "metrics.every=4", "data.n_points=2000", "data.batch_size=32", "arch.hidden=16", "z_dim=4",
        "optim=C", "callbacks=none", "samples.every=0", "checkpoint.every=6", "logger=none", "threads=1"]


@pytest.mark.slow  # two training processes
def test_a_recorded_job_is_reproduced(tmp_path, capsys):
    first = run_cli("src.train", *TINY, run_dir=tmp_path / "job")
    assert first.returncode == 0, first.stderr
    assert rerun_job.main([str(tmp_path / "job"), "--out", str(tmp_path / "again")]) == 0
    out = capsys.readouterr().out
    assert "reproduced: metrics and the 3-point learning curve are identical" in out
    assert json.loads((tmp_path / "again" / "summary.json").read_text())["metrics"] == first.summary["metrics"]


def test_differences_name_the_key_and_both_values():
    old = {"status": "completed", "steps": 12, "metrics": {"fid": 1.0}, "metrics_history": [{"step": 12, "fid": 1.0}]}
    new = {**old, "metrics": {"fid": 1.5}}
    (line,) = rerun_job.differences(old, new)
    assert line == 'metrics: recorded {"fid": 1.0} vs rerun {"fid": 1.5}'
    assert rerun_job.differences(old, dict(old)) == []


def test_an_incomplete_record_is_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "job").mkdir()
    (tmp_path / "job" / "summary.json").write_text(json.dumps({"status": "completed"}))
    assert rerun_job.main([str(tmp_path / "job")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "overrides.yaml is missing" in err and "\n" not in err
