"""src.report from hand-made sweeps: best setting per method, mean ± std over seeds, status counts,
partial sweeps (diverged, failed, killed and never-started jobs, an unreadable summary)."""
import csv
import json
import statistics
from pathlib import Path

import pytest
import yaml

from src.report import build_report
from src.report.aggregate import Stat, build_groups, parse_metric
from src.report.collect import Run
from tests.helpers import run_cli

SETTINGS = {"A": (1e-4, 0.5, 0.9, 5), "D": (1e-3, 0.5, 0.9, 5)}
LOSS = {"sn": "ns", "wgan_gp": "wasserstein", "none": "ns"}
PROTOCOL = {"n_real": 1797, "n_fake": 2000, "real_split": "train", "features": "digits classifier"}


def summary(reg, optim, seed, status="completed", fid=None, is_mean=None, sec=None, error=None):
    lr, b1, b2, n_dis = SETTINGS[optim]
    done = status == "completed"
    return {"status": status, "regularizer": reg, "loss": LOSS[reg], "optim": optim, "lr": lr, "beta1": b1, "beta2": b2,
            "n_dis": n_dis, "arch": "standard_cnn", "data": "digits", "seed": seed, "steps": 100 if done else 7,
            "steps_planned": 100, "metrics": {"fid": fid, "is_mean": is_mean, "is_std": 0.1} if done else {},
            "eval_protocol": PROTOCOL if done else {},
            "timing": {"sec_per_step": sec, "total_sec": sec * 100 if sec else None}, "error": error}


def write_job(job_dir: Path, overrides: list[str], summ: dict | None, cfg: dict | None = None):
    (job_dir / ".hydra").mkdir(parents=True)
    (job_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (job_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg or {}))
    if summ is not None:
        (job_dir / "summary.json").write_text(json.dumps(summ))


def write_multirun(sweep: Path, params: dict, task: list[str]):
    sweep.mkdir(parents=True, exist_ok=True)
    cfg = {"hydra": {"sweeper": {"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper",
                                 "max_batch_size": None, "params": params},
                     "overrides": {"task": task, "hydra": []}}}
    (sweep / "multirun.yaml").write_text(yaml.safe_dump(cfg))


# The scores of the fixture sweep (FID; IS).
SCORES = {("sn", "A"): [(30.0, 7.0), (34.0, 7.4)], ("sn", "D"): [(28.0, 7.6), (29.0, 7.2)],
          ("wgan_gp", "A"): [(40.0, 6.5)], ("none", "A"): [(50.0, 5.0)]}


@pytest.fixture
def sweeps(tmp_path):
    """sweep1: {sn, wgan_gp} x {A, D} x seeds {0, 1}: 8 jobs; wgan_gp/A/1 diverged, wgan_gp/D/0 failed,
    wgan_gp/D/1 killed before writing its summary. sweep2: none/A x seeds {0, 1}, seed 1 never started,
    plus a truncated summary.json."""
    s1 = tmp_path / "sweep1"
    write_multirun(s1, {"regularizer": "sn,wgan_gp", "optim": "A,D"}, ["seed=0,1", "data=digits"])
    jobs = [("sn", "A", 0, summary("sn", "A", 0, fid=30.0, is_mean=7.0, sec=0.10)),
            ("sn", "A", 1, summary("sn", "A", 1, fid=34.0, is_mean=7.4, sec=0.12)),
            ("sn", "D", 0, summary("sn", "D", 0, fid=28.0, is_mean=7.6, sec=0.11)),
            ("sn", "D", 1, summary("sn", "D", 1, fid=29.0, is_mean=7.2, sec=0.11)),
            ("wgan_gp", "A", 0, summary("wgan_gp", "A", 0, fid=40.0, is_mean=6.5, sec=0.30)),
            ("wgan_gp", "A", 1, summary("wgan_gp", "A", 1, status="diverged", error="non-finite loss at generator step 7")),
            ("wgan_gp", "D", 0, summary("wgan_gp", "D", 0, status="failed", error="RuntimeError: boom")),
            ("wgan_gp", "D", 1, None)]
    for num, (reg, opt, seed, summ) in enumerate(jobs):
        cfg = {"regularizer": {"name": reg}, "optim": {"name": opt, "n_dis": 5}, "loss": {"name": LOSS[reg]},
               "data": {"name": "digits"}, "arch": {"name": "standard_cnn"}, "seed": seed}
        write_job(s1 / str(num), [f"regularizer={reg}", f"optim={opt}", f"seed={seed}", "data=digits"], summ, cfg)
    s2 = tmp_path / "sweep2"
    write_multirun(s2, {}, ["regularizer=none", "optim=A", "seed=0,1"])
    write_job(s2 / "0", ["regularizer=none", "optim=A", "seed=0"], summary("none", "A", 0, fid=50.0, is_mean=5.0, sec=0.09))
    (s2 / "stray").mkdir()
    (s2 / "stray" / "summary.json").write_text('{"status": "compl')
    return s1, s2


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_best_setting_per_method_mean_std_over_seeds(sweeps, tmp_path):
    out = build_report(sweeps, tmp_path / "rep")["out"]
    best = {r["method"]: r for r in read_csv(out / "best.csv")}
    assert list(best) == ["none", "sn", "wgan_gp"]
    # sn: D (mean FID 28.5) beats A (32.0); wgan_gp: A is the only setting with a score
    assert best["sn"]["best_setting"] == "D" and best["wgan_gp"]["best_setting"] == "A" and best["none"]["best_setting"] == "A"
    for method, setting in [("sn", "D"), ("wgan_gp", "A"), ("none", "A")]:
        fids = [f for f, _ in SCORES[(method, setting)]]
        row = best[method]
        assert float(row["fid_mean"]) == pytest.approx(statistics.mean(fids))
        assert int(row["fid_n"]) == len(fids)
        if len(fids) > 1:
            assert float(row["fid_std"]) == pytest.approx(statistics.stdev(fids))
        else:
            assert row["fid_std"] == ""
        ises = [i for _, i in SCORES[(method, setting)]]
        assert float(row["is_mean_mean"]) == pytest.approx(statistics.mean(ises))
    assert best["sn"]["metric"] == "fid" and best["sn"]["direction"] == "min"
    assert (best["wgan_gp"]["runs_completed"], best["wgan_gp"]["runs_diverged"], best["wgan_gp"]["runs_failed"],
            best["wgan_gp"]["runs_missing"]) == ("1", "1", "1", "1")

    md = (out / "report.md").read_text()
    sn_row = next(line for line in md.splitlines() if line.startswith("| sn |"))
    assert f"{statistics.mean([28.0, 29.0]):.4g} ± {statistics.stdev([28.0, 29.0]):.2g}" in sn_row  # "28.5 ± 0.71"
    assert "| sn | ns | D |" in sn_row
    # the protocol the numbers were measured with is stated
    assert "n_real=1797" in md and "features=digits classifier" in md


def test_cells_status_timing_and_partial_sweeps(sweeps, tmp_path):
    out = build_report(sweeps, tmp_path / "rep")["out"]
    cells = {(r["method"], r["setting"], r["metric"]): r for r in read_csv(out / "cells.csv")}
    a = [f for f, _ in SCORES[("sn", "A")]]
    assert float(cells[("sn", "A", "fid")]["mean"]) == pytest.approx(statistics.mean(a))
    assert float(cells[("sn", "A", "fid")]["std"]) == pytest.approx(statistics.stdev(a))
    assert cells[("wgan_gp", "D", "fid")]["n"] == "0" and cells[("wgan_gp", "D", "fid")]["mean"] == ""

    status = {(r["method"], r["setting"]): r for r in read_csv(out / "status.csv")}
    assert (status[("wgan_gp", "A")]["completed"], status[("wgan_gp", "A")]["diverged"]) == ("1", "1")
    assert (status[("wgan_gp", "D")]["failed"], status[("wgan_gp", "D")]["missing"]) == ("1", "1")
    assert status[("sn", "D")]["completed"] == "2"

    timing = {r["method"]: r for r in read_csv(out / "timing.csv")}
    assert float(timing["sn"]["sec_per_step_mean"]) == pytest.approx(statistics.mean([0.10, 0.12, 0.11, 0.11]))
    assert timing["sn"]["n_dis"] == "5"

    runs = read_csv(out / "runs.csv")
    assert len(runs) == 10  # 8 job dirs of sweep1, 1 of sweep2, the unreadable summary
    assert sorted(r["status"] for r in runs).count("unreadable") == 1

    missing = read_csv(out / "missing_jobs.csv")
    assert [(Path(r["sweep_dir"]).name, r["overrides"]) for r in missing] == [("sweep2", "regularizer=none optim=A seed=1")]
    md = (out / "report.md").read_text()
    assert "RuntimeError: boom" in md and "non-finite loss" in md
    assert "sweep1/7" in md  # the killed job is named
    assert "regularizer=none optim=A seed=1" in md
    assert "8 jobs asked for, 8 job dirs found" in md and "2 jobs asked for, 1 job dirs found" in md

    for name in ("scores_digits_fid.png", "scores_digits_is_mean.png", "time_per_step_digits.png"):
        path = out / "figures" / name
        assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"figures/{name}" in md


def test_cli_default_out_and_metric_choice(sweeps):
    s1, s2 = sweeps
    proc = run_cli("src.report", s1, s2, "--metric", "is_mean")
    assert proc.returncode == 0, proc.stderr
    best = {r["method"]: r for r in read_csv(s1 / "report" / "best.csv")}
    # by IS (higher is better) sn's best setting is still D (7.4 vs 7.2), and the primary column is IS
    assert best["sn"]["metric"] == "is_mean" and best["sn"]["direction"] == "max"
    assert float(best["sn"]["is_mean_mean"]) == pytest.approx(7.4)
    bad = run_cli("src.report", s1, "--metric", "mystery")
    assert bad.returncode == 2 and "mystery:min" in bad.stderr


def toy_run(reg, optim, seed, modes, sw, loss="ns", n_dis=1, status="completed"):
    r = Run(path=f"{reg}/{optim}/{n_dis}/{seed}", status=status, regularizer=reg, loss=loss, optim=optim, lr=1e-3,
            beta1=0.5, beta2=0.9, n_dis=n_dis, arch="mlp", data="toy2d", seed=seed, steps_planned=300)
    if status == "completed":
        r.metrics = {"modes_covered": modes, "sliced_wasserstein": sw, "high_quality_fraction": 0.5}
    return r


def test_toy_metric_auto_ties_broken_and_labels_for_loss_and_n_dis_grids():
    runs = [toy_run("sn", "D", 0, 8, 0.30, n_dis=1), toy_run("sn", "D", 0, 8, 0.10, n_dis=5),
            toy_run("sn", "D", 0, 6, 0.01, n_dis=20),
            toy_run("wgan_gp", "D", 0, 3, 0.5, loss="wasserstein"), toy_run("wgan_gp", "D", 0, 5, 0.4, loss="ns")]
    (g,) = build_groups(runs)
    assert g.metric == "modes_covered" and g.direction == "max"
    # the n_dis grid at setting D: one setting per n_dis; GAN-GP vs WGAN-GP: one method per loss
    assert g.settings == ["D (n_dis=1)", "D (n_dis=5)", "D (n_dis=20)"]
    assert g.methods == ["sn", "wgan_gp + ns", "wgan_gp + wasserstein"]
    best = {b["method"]: b["best_setting"] for b in g.best}
    assert best["sn"] == "D (n_dis=5)"  # 8 modes at n_dis 1 and 5; the lower sliced W1 decides
    (g2,) = build_groups(runs, "sliced_wasserstein")
    assert {b["method"]: b["best_setting"] for b in g2.best}["sn"] == "D (n_dis=20)"


def test_metric_parsing_and_stats():
    assert parse_metric("fid") == ("fid", "min") and parse_metric("x:max") == ("x", "max")
    with pytest.raises(ValueError):
        parse_metric("x")
    assert Stat.of([]).n == 0 and Stat.of([1.0]).std is None and Stat.of([1.0, 3.0]).std == pytest.approx(2 ** 0.5)


def test_no_scores_at_all_still_reports(tmp_path):
    write_job(tmp_path / "s" / "0", ["regularizer=sn"], summary("sn", "A", 0, status="failed", error="ConfigError: x"))
    out = build_report([tmp_path / "s"])["out"]
    md = (out / "report.md").read_text()
    assert "no run has a score" in md and "1 failed" in md


def test_figure_titles_and_legends_fit_with_two_settings(tmp_path):
    """A two-setting sweep with long method labels: nothing is cut at the image's edges (a clipped title or
    legend leaves dark text pixels in the outermost columns)."""
    import numpy as np
    from PIL import Image

    from src.report.figures import write_figures

    runs = []
    for lam in ("1", "10"):
        for optim in ("A", "B"):
            r = Run(path=f"{lam}/{optim}", status="completed", regularizer="wgan_gp", loss="wasserstein", optim=optim,
                    lr=1e-4, beta1=0.5, beta2=0.9, n_dis=5, arch="standard_cnn", data="cifar10", seed=0,
                    steps_planned=100, sec_per_step=0.2, extra={"regularizer.lam": lam})
            r.metrics = {"fid": 30.0 + float(lam), "is_mean": 6.0}
            runs.append(r)
    paths = write_figures(tmp_path, build_groups(runs))["cifar10"]
    assert len(paths) == 3
    for path in paths:
        a = np.asarray(Image.open(path).convert("L"))
        frame = np.concatenate([a[:, :4].ravel(), a[:, -4:].ravel(), a[:4].ravel(), a[-4:].ravel()])
        assert (frame < 200).sum() == 0, path.name


def test_auto_metric_passes_over_a_column_that_is_the_same_everywhere(tmp_path):
    runs = [toy_run("sn", "D", 0, 0, 0.30), toy_run("sn", "D", 1, 0, 0.20),
            toy_run("wgan_gp", "D", 0, 0, 0.50, loss="wasserstein")]
    (g,) = build_groups(runs)
    # no run covers a mode yet: modes_covered ranks nothing, the sliced Wasserstein distance does
    assert g.metric == "sliced_wasserstein" and g.direction == "min"
    assert g.shown[:2] == ["sliced_wasserstein", "modes_covered"]
    assert any("every completed run has modes_covered = 0" in n for n in g.notes)
    # high_quality_fraction is 0.5 in every toy_run: it is passed over too when it is the only other choice
    same = [toy_run("sn", "D", 0, 3, 0.2), toy_run("none", "D", 0, 3, 0.2)]
    (g2,) = build_groups(same)
    assert g2.metric == "modes_covered" and any("no metric separates the runs" in n for n in g2.notes)
    # the note reaches report.md
    for i, r in enumerate(runs):
        write_job(tmp_path / "s" / str(i), [f"regularizer={r.regularizer}", f"seed={r.seed}"],
                  {"status": "completed", "regularizer": r.regularizer, "loss": r.loss, "optim": "D", "data": "toy2d",
                   "arch": "mlp", "seed": r.seed, "metrics": r.metrics, "n_dis": 1})
    md = (build_report([tmp_path / "s"])["markdown"]).read_text()
    assert "Primary metric: **sliced_wasserstein**" in md and "modes_covered = 0" in md


def test_methods_are_grouped_by_the_summarys_method(tmp_path):
    """sn alone and sn + the R1 penalty are two methods; summaries without "method" fall back to the regularizer."""
    s = tmp_path / "sweep"
    jobs = [("sn", None, "A", 0, 30.0), ("sn", None, "A", 1, 32.0), ("sn", "r1", "A", 0, 20.0), ("sn", "r1", "A", 1, 22.0),
            ("sn", "r1", "D", 0, 25.0), ("none", None, "A", 0, 50.0)]
    for i, (reg, pen, optim, seed, fid) in enumerate(jobs):
        summ = summary(reg, optim, seed, fid=fid, is_mean=6.0, sec=0.1)
        if reg != "none":  # the none run is a summary written before "method" and "penalty" existed
            summ.update(penalty=pen, method=f"{reg}+{pen}" if pen else reg)
        overrides = [f"regularizer={reg}", f"optim={optim}", f"seed={seed}"] + ([f"penalty={pen}"] if pen else [])
        write_job(s / str(i), overrides, summ)
    # a job of sn + r1 killed before writing its summary: placed by its saved config
    write_job(s / "9", ["regularizer=sn", "penalty=r1", "optim=D", "seed=1"], None,
              {"regularizer": {"name": "sn"}, "penalty": {"name": "r1"}, "optim": {"name": "D", "n_dis": 5},
               "loss": {"name": "ns"}, "data": {"name": "digits"}, "arch": {"name": "standard_cnn"}, "seed": 1})
    out = build_report([s], tmp_path / "rep")["out"]
    best = {r["method"]: r for r in read_csv(out / "best.csv")}
    assert list(best) == ["none", "sn", "sn+r1"]
    assert (best["sn"]["penalty"], best["sn+r1"]["penalty"], best["sn+r1"]["regularizer"]) == ("", "r1", "sn")
    assert float(best["sn"]["fid_mean"]) == pytest.approx(31.0) and best["sn"]["fid_n"] == "2"
    assert best["sn+r1"]["best_setting"] == "A" and float(best["sn+r1"]["fid_mean"]) == pytest.approx(21.0)
    assert best["sn+r1"]["runs_missing"] == "1" and best["sn"]["runs_missing"] == "0"
    md = (out / "report.md").read_text()
    assert "| sn+r1 | ns | A |" in md


def test_interrupted_and_running_runs_are_counted_as_such_not_as_results(tmp_path):
    s = tmp_path / "s"
    write_multirun(s, {"seed": "0,1,2"}, ["regularizer=sn", "optim=A"])
    write_job(s / "0", ["seed=0"], summary("sn", "A", 0, fid=30.0, is_mean=7.0, sec=0.1))
    write_job(s / "1", ["seed=1"], summary("sn", "A", 1, status="interrupted", sec=0.1,
                                           error="interrupted by SIGTERM at generator step 7 (checkpoint saved)"))
    write_job(s / "2", ["seed=2"], summary("sn", "A", 2, status="running", sec=0.1))
    out = build_report([s], tmp_path / "rep")["out"]
    status = {(r["method"], r["setting"]): r for r in read_csv(out / "status.csv")}[("sn", "A")]
    assert (status["completed"], status["interrupted"], status["running"]) == ("1", "1", "1")
    cells = {(r["method"], r["setting"], r["metric"]): r for r in read_csv(out / "cells.csv")}
    assert cells[("sn", "A", "fid")]["n"] == "1"  # only the completed run scores
    assert "1 interrupted" in (out / "report.md").read_text()


def test_runs_scored_alike_but_timed_and_stored_differently_share_one_protocol(tmp_path):
    """How long scoring took and where the classifier file sat are not the protocol; its weights' hash is."""
    base = {**PROTOCOL, "weights_sha256": "443e"}
    jobs = [("sn", "A", 0, {**base, "periodic_eval_sec": 38.6, "weights_path": "/root/.cache/a.pt", "real_stats_cache": "/x"}),
            ("sn", "A", 1, {**base, "periodic_eval_sec": 44.1, "weights_path": "/repo/src/b.pt", "real_stats_cache": "/y"})]
    for i, (reg, optim, seed, protocol) in enumerate(jobs):
        write_job(tmp_path / "s" / str(i), [f"regularizer={reg}", f"seed={seed}"],
                  {**summary(reg, optim, seed, fid=30.0 + i, is_mean=7.0, sec=0.1), "eval_protocol": protocol})
    md = build_report([tmp_path / "s"], tmp_path / "r1")["markdown"].read_text()
    assert "different evaluation protocols" not in md and "— 2 run(s)" in md and "periodic_eval_sec" not in md
    # another feature network is another protocol
    summ = json.loads((tmp_path / "s" / "1" / "summary.json").read_text())
    summ["eval_protocol"]["weights_sha256"] = "c7f6"
    (tmp_path / "s" / "1" / "summary.json").write_text(json.dumps(summ))
    md = build_report([tmp_path / "s"], tmp_path / "r2")["markdown"].read_text()
    assert "runs were scored under different evaluation protocols" in md and "weights_sha256=c7f6" in md


def test_a_length_per_setting_labels_the_settings_and_mixed_lengths_split_the_methods():
    def run(reg, optim, steps, fid):
        r = toy_run(reg, optim, 0, 8, 0.1)
        r.steps_planned, r.metrics = steps, {"fid": fid}
        return r

    runs = [run("sn", "A", 2000, 5.0), run("wgan_gp", "A", 2000, 4.0), run("sn", "B", 5000, 9.0), run("wgan_gp", "B", 5000, 600.0)]
    (g,) = build_groups(runs, "fid")
    assert g.methods == ["sn", "wgan_gp"]  # one row per method across settings of different lengths
    assert g.settings == ["A (steps=2000)", "B (steps=5000)"]
    assert {b["method"]: b["best_setting"] for b in g.best} == {"sn": "A (steps=2000)", "wgan_gp": "A (steps=2000)"}
    # a setting caught halfway through a lengthening (some of B's jobs at 2,000 still): never one cell
    (g,) = build_groups([*runs, run("r1", "B", 2000, 30.0), run("r1", "A", 2000, 3.0)], "fid")
    assert g.settings == ["A", "B"]
    assert "r1 (steps=2000)" in g.methods and "sn (steps=5000)" in g.methods and "sn (steps=2000)" in g.methods
