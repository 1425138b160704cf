"""src.analysis.learning_curves: curves and plateau statistics read back from summaries alone."""
import csv
import json

import numpy as np
import pytest

from src.analysis.learning_curves import main, settled_at


def _summary(root, name, method, setting, seed, values, status="completed", metric="modes_covered"):
    d = root / name
    d.mkdir(parents=True)
    history = [{"step": 10 * (i + 1), metric: v} for i, v in enumerate(values)]
    (d / "summary.json").write_text(json.dumps({"status": status, "method": method, "optim": setting, "seed": seed,
                                                "metrics_history": history}))


def test_settled_at_is_the_start_of_the_final_flat_stretch():
    assert settled_at([10, 20, 30, 40, 50], [0, 5, 2, 7.9, 8], tolerance=0.5) == 40
    assert settled_at([10, 20, 30], [8, 8, 8], tolerance=0.0) == 10
    assert settled_at([10, 20, 30], [1, 2, 8], tolerance=0.5) == 30  # still climbing at the end


def test_curves_csv_and_plateau_from_summaries(tmp_path):
    sweep = tmp_path / "sweep"
    _summary(sweep, "0", "sn", "C", 0, [1, 4, 6, 8])
    _summary(sweep, "1", "sn", "C", 1, [3, 6, 8, 8])
    _summary(sweep, "2", "sn+r1", "C", 0, [0, 0, 1, 1])
    _summary(sweep, "3", "sn", "D", 0, [5, 5, 5, 5])
    _summary(sweep, "4", "sn", "C", 2, [8, 8, 8, 8], status="diverged")  # not a completed run: left out
    out = tmp_path / "out"
    assert main([str(sweep), "--metric", "modes_covered", "--settings", "C", "--tolerance", "1", "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out / "learning_curves_modes_covered.csv")))
    sn = [r for r in rows if r["method"] == "sn"]
    assert [int(r["step"]) for r in sn] == [10, 20, 30, 40] and {r["setting"] for r in rows} == {"C"}
    assert [float(r["mean"]) for r in sn] == [2, 5, 7, 8]
    assert float(sn[0]["std"]) == pytest.approx(np.std([1, 3], ddof=1))
    plateau = {r["method"]: r for r in csv.DictReader(open(out / "plateau_modes_covered.csv"))}
    assert int(plateau["sn"]["settled_at"]) == 30 and int(plateau["sn"]["seeds"]) == 2
    # the last quarter starts at the evaluation nearest 0.75 * 40 = 30: means 7 and 8
    assert float(plateau["sn"]["last_quarter_mean"]) == 7.5 and float(plateau["sn"]["last_quarter_range"]) == 1
    assert float(plateau["sn+r1"]["final_mean"]) == 1 and int(plateau["sn+r1"]["settled_at"]) == 10
    assert (out / "learning_curves_modes_covered.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_metric_is_one_line_naming_the_known_ones(tmp_path, capsys):
    _summary(tmp_path / "s", "0", "sn", "C", 0, [1, 2])
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path / "s"), "--metric", "fid", "--out", str(tmp_path / "o")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "no completed run has a history of 'fid'; metrics in the histories: modes_covered" in err
    assert not (tmp_path / "o").exists()
