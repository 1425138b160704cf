"""Sweeps: the paper's grids as Hydra sweep configs, a multirun that records every job (a failing job
does not stop the sweep), the joblib launcher, and a grid run end to end into the report."""
import csv
import json
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from src.report.sweep import read_multirun, sweep_values
from tests.helpers import REPO, run_cli

CONF = REPO / "conf"
REGULARIZERS = {"none", "sn", "sn_conv", "weight_clip", "wgan_gp", "dragan", "weight_norm", "orthonormal",
                "batch_norm", "layer_norm"}
FAST = ["callbacks=none", "trainer.enable_progress_bar=false", "logger=csv"]
ENV = {"OMP_NUM_THREADS": "1"}  # tiny jobs: thread start-up costs more than it gives


def compose_grid(name, overrides=(), hydra=True):
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("config", overrides=[f"experiment={name}", *overrides], return_hydra_config=hydra)


def grid_values(cfg):
    return sweep_values(OmegaConf.to_container(cfg.hydra.sweeper.params), [])


@pytest.mark.parametrize("name,expected", [
    ("grid_main", {"regularizer": REGULARIZERS, "optim": set("ABCDEF"), "seed": {"0", "1", "2"}}),
    ("grid_loss", {"loss": {"ns", "wasserstein"}, "regularizer": {"wgan_gp", "weight_clip", "sn"},
                   "optim": set("ABCDEF"), "seed": {"0", "1", "2"}}),
    ("grid_ndis", {"optim.n_dis": {"1", "2", "5", "10", "20"}, "regularizer": {"sn", "wgan_gp"}, "seed": {"0", "1", "2"}}),
    ("grid_resnet", {"regularizer": {"sn", "sn_conv", "orthonormal", "wgan_gp"}, "loss": {"hinge", "auto"},
                     "seed": {"0", "1", "2"}}),
])
def test_grid_configs_sweep_the_papers_grids(name, expected):
    cfg = compose_grid(name)
    values = grid_values(cfg)
    assert {k: set(v) for k, v in values.items()} == expected
    assert cfg.hydra.sweep.dir.startswith(f"multirun/{name}/")
    assert cfg.data.name == "cifar10" and cfg.metrics.name == "paper"
    if name == "grid_ndis":
        assert cfg.optim.name == "D"
    if name == "grid_resnet":
        assert (cfg.arch.name, cfg.optim.name, cfg.optim.lr_decay) == ("resnet", "resnet", "linear")


@pytest.mark.parametrize("name", ["grid_main", "grid_loss", "grid_ndis", "grid_resnet"])
def test_every_grid_value_composes_and_validates(name):
    """Each swept value names a real option/key (Hydra only finds a bad one when the sweep starts)."""
    from src.validation import validate

    values = grid_values(compose_grid(name))
    for key, vals in values.items():
        for v in vals:
            cfg = compose_grid(name, [f"{key}={v}"], hydra=False)
            if key in ("regularizer", "loss", "optim"):
                got = cfg[key].name
                assert got == (cfg.regularizer.default_loss if v == "auto" else v)
            else:
                assert str(OmegaConf.select(cfg, key)) == v
            validate(cfg)


def test_the_grids_cover_every_regularizer_option():
    """grid_main: the SN paper's ten; grid_family: the newer methods; together every option."""
    options = {p.stem for p in (CONF / "regularizer").glob("*.yaml")}
    main = set(grid_values(compose_grid("grid_main"))["regularizer"])
    family = set(grid_values(compose_grid("grid_family"))["regularizer"])
    assert len(main) == 10 and not main & family
    assert main | family == options


def test_a_failing_job_is_recorded_and_the_sweep_goes_on(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli("src.train", "-m", "steps=5", "optim.lr=-1,0.001", *FAST, f"hydra.sweep.dir={sweep}",
                   run_dir=sweep, env=ENV)  # run_dir: unused by a multirun; run_cli needs one
    assert proc.returncode == 0, proc.stderr[-3000:]
    failed = json.loads((sweep / "0" / "summary.json").read_text())
    done = json.loads((sweep / "1" / "summary.json").read_text())
    assert failed["status"] == "failed" and "optim.lr=-1" in failed["error"]
    assert done["status"] == "completed" and done["steps"] == 5 and done["lr"] == 0.001
    assert read_multirun(sweep)["expected_jobs"] == 2

    from src.report import build_report

    out = build_report([sweep])["out"]
    status = list(csv.DictReader(open(out / "status.csv")))
    assert sum(int(r["failed"]) for r in status) == 1 and sum(int(r["completed"]) for r in status) == 1
    assert "optim.lr=-1 is invalid" in (out / "report.md").read_text()


@pytest.mark.slow
def test_joblib_launcher_runs_jobs_in_parallel_processes(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli("src.train", "-m", "hydra/launcher=parallel", "steps=5", "regularizer=sn,none", *FAST,
                   f"hydra.sweep.dir={sweep}", run_dir=sweep, env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in proc.stdout + proc.stderr
    summaries = [json.loads((sweep / j / "summary.json").read_text()) for j in ("0", "1")]
    assert [(s["regularizer"], s["status"]) for s in summaries] == [("sn", "completed"), ("none", "completed")]


@pytest.mark.slow
def test_grid_ndis_scaled_down_end_to_end(tmp_path):
    """The n_dis grid on the toy data, one seed: 5 jobs at setting D, then the report's 5 settings."""
    sweep = tmp_path / "ndis"
    proc = run_cli("src.train", "-m", "experiment=grid_ndis", "data=toy2d", "steps=3", "seed=0", "regularizer=sn",
                   *FAST, f"hydra.sweep.dir={sweep}", run_dir=sweep, env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summaries = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/summary.json"))]
    assert sorted(s["n_dis"] for s in summaries) == [1, 2, 5, 10, 20]
    assert {(s["optim"], s["lr"], s["beta2"], s["status"]) for s in summaries} == {("D", 1e-3, 0.9, "completed")}
    assert read_multirun(sweep)["expected_jobs"] == 5
    report = subprocess.run([sys.executable, "-m", "src.report", str(sweep)], cwd=REPO, capture_output=True, text=True,
                            timeout=300)
    assert report.returncode == 0, report.stderr
    settings = {r["setting"] for r in csv.DictReader(open(sweep / "report" / "status.csv"))}
    assert settings == {f"D (n_dis={n})" for n in (1, 2, 5, 10, 20)}


def test_launcher_configs_extend_the_plugins():
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        par = compose("config", overrides=["hydra/launcher=parallel"], return_hydra_config=True).hydra.launcher
        slurm = compose("config", overrides=["hydra/launcher=slurm"], return_hydra_config=True).hydra.launcher
    assert par._target_.endswith("JoblibLauncher") and par.n_jobs == 2
    assert slurm._target_.endswith("SlurmLauncher") and slurm.gpus_per_node == 1 and slurm.timeout_min >= 24 * 60


@pytest.mark.slow
def test_submitit_local_launcher_runs_the_jobs(tmp_path):
    """The submitit plugin's local executor: the same pickling and job dirs as on SLURM, without a cluster."""
    sweep = tmp_path / "sweep"
    proc = run_cli("src.train", "-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10", "steps=3",
                   "regularizer=sn,none", *FAST, f"hydra.sweep.dir={sweep}", run_dir=sweep, env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    statuses = [json.loads((sweep / j / "summary.json").read_text())["status"] for j in ("0", "1")]
    assert statuses == ["completed", "completed"]
    assert (sweep / ".submitit").is_dir()
