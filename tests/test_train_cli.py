"""Few-step training runs through the real CLI, for each data option and arch, on fixtures."""
import json

import pytest
import torch

FAST = ["steps=2", "log_every=1", "metrics=none", "samples.every=1", "checkpoint.every=1", "data.batch_size=8",
        "trainer.enable_progress_bar=false", "callbacks=none"]


def assert_complete_run(result, steps):
    assert result.returncode == 0, result.stderr[-2000:]
    s = result.summary
    assert s["status"] == "completed" and s["error"] is None
    assert s["steps"] == steps
    run = result.run_dir
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert (run / "samples" / "final.png").is_file()
    assert (run / "loss_curves.png").is_file()
    assert (run / ".hydra" / "config.yaml").is_file()
    assert s["timing"]["sec_per_step"] > 0
    return s


@pytest.mark.parametrize("data,arch", [("digits", "standard_cnn"), pytest.param("digits", "resnet", marks=pytest.mark.slow),
                                       ("cifar10", "standard_cnn"), ("cifar10", "resnet"), ("stl10", "standard_cnn"),
                                       pytest.param("stl10", "resnet", marks=pytest.mark.slow), ("image_folder", "standard_cnn")])
def test_image_data_and_archs_train_through_the_cli(cli, tmp_path, cifar_root, stl_root, image_root, data, arch):
    roots = {"cifar10": cifar_root, "stl10": stl_root, "image_folder": image_root}
    extra = [f"data.root={roots[data]}"] if data in roots else []
    extra += ["data.download=false"] if data in ("cifar10", "stl10") else []
    extra += ["arch.width=0.25"]  # the same networks, a quarter of the channels: what is tested is the path, not the size
    result = cli("src.train", f"data={data}", f"arch={arch}", "regularizer=sn", *FAST, *extra, run_dir=tmp_path / "run")
    s = assert_complete_run(result, 2)
    assert (s["data"], s["arch"], s["regularizer"]) == (data, arch, "sn")
    ckpt = torch.load(result.run_dir / "checkpoints" / "last.ckpt", weights_only=False, map_location="cpu")
    expected_res = {"stl10": 48, "digits": 8}.get(data, 32)
    assert ckpt["run_config"]["data"]["resolution"] == expected_res
    assert any(k.startswith("D.") and "parametrizations" in k for k in ckpt["state_dict"])  # SN wrapped D


@pytest.mark.parametrize("variant", ["ring8", "grid25", "swiss_roll"])
def test_toy_variants_train_and_are_scored(cli, tmp_path, variant):
    result = cli("src.train", f"data.variant={variant}", *FAST, "metrics=toy", run_dir=tmp_path / "run")
    s = assert_complete_run(result, 2)
    assert s["metrics"]["sliced_wasserstein"] > 0
    if variant == "swiss_roll":
        assert "modes_covered" not in s["metrics"]
    else:
        assert s["metrics"]["modes_total"] == {"ring8": 8, "grid25": 25}[variant]
    assert (result.run_dir / "samples" / "step_0000001.png").is_file()


def test_summary_follows_the_design_contract(cli, tmp_path):
    result = cli("src.train", *FAST, "optim=C", "loss=hinge", "seed=3", run_dir=tmp_path / "run")
    s = assert_complete_run(result, 2)
    for key in ("status", "regularizer", "loss", "optim", "lr", "beta1", "beta2", "n_dis", "arch", "data", "seed",
                "steps", "metrics", "eval_protocol", "timing", "error"):
        assert key in s
    assert (s["optim"], s["lr"], s["beta1"], s["beta2"], s["n_dis"], s["loss"], s["seed"]) == ("C", 2e-4, 0.5, 0.999, 1, "hinge", 3)
    assert set(s["timing"]) >= {"sec_per_step", "total_sec"}
    assert 100 < s["resources"]["peak_host_mib"] < 24 * 1024  # torch + lightning alone take a few hundred MiB
    logged = (result.run_dir / "logs" / "metrics.csv").read_text().splitlines()[0]
    assert "loss/d" in logged and "loss/g" in logged
    # Lightning's messages once each (they used to print through its own handler and Hydra's both)
    output = result.stdout + result.stderr
    assert output.count("`Trainer.fit` stopped") == 1, output[-3000:]
    assert set(s["lipschitz"]) >= {"certified_upper", "empirical_lower"}
    assert s["lipschitz"]["certified_upper"] >= s["lipschitz"]["empirical_lower"] > 0


def test_resume_continues_from_last_checkpoint(cli, tmp_path):
    run = tmp_path / "run"
    first = cli("src.train", *FAST, run_dir=run)
    assert_complete_run(first, 2)
    second = cli("src.train", *[a for a in FAST if not a.startswith("steps")], "steps=4", "ckpt_path=last", run_dir=run)
    assert_complete_run(second, 4)
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False, map_location="cpu")
    assert ckpt["global_step"] == 4 * 3  # the toy setting: n_dis=2 D steps and one G step per generator update
    assert [h["step"] for h in ckpt["gan_history"]][-1] == 4


def test_n_dis_counts_generator_updates(cli, tmp_path):
    result = cli("src.train", *FAST, "optim=A", run_dir=tmp_path / "run")  # n_dis 5
    assert_complete_run(result, 2)
    ckpt = torch.load(result.run_dir / "checkpoints" / "last.ckpt", weights_only=False, map_location="cpu")
    assert ckpt["global_step"] == 2 * 6


@pytest.mark.slow
def test_default_command_learns_the_ring(cli, tmp_path):
    """`python -m src.train` with no arguments: at least 7 of 8 modes, and every promised file."""
    result = cli("src.train", "trainer.enable_progress_bar=false", run_dir=tmp_path / "run")
    s = assert_complete_run(result, result.summary["steps_planned"])
    assert s["metrics"]["modes_covered"] >= 7, s["metrics"]
    assert s["timing"]["total_sec"] < 180
    assert json.loads((result.run_dir / "summary.json").read_text())["status"] == "completed"
