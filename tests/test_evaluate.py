"""python -m src.evaluate: a run dir / checkpoint, or folders of images; one-line errors."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers import run_cli, train_in_process
from src.evaluate import main
from src.metrics.inception import make_random_inception_weights

KEYS = {"is_mean", "is_std", "fid", "kid_mean", "kid_std"}


@pytest.fixture(scope="session")
def inception_weights(tmp_path_factory):
    path = tmp_path_factory.getbasetemp() / "inception-random.pth"
    return path if path.is_file() else make_random_inception_weights(path, seed=0)


def evaluate_cli(*args, timeout=600):
    """``python -m src.evaluate ARGS`` from the repository root."""
    return run_cli("src.evaluate", *args, timeout=timeout)


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("digits") / "run"
    # module scope runs before conftest's per-test cache isolation: point the cache at the session's temp dir
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GANLAB_CACHE", str(tmp_path_factory.getbasetemp() / "ganlab-cache"))
        summary = train_in_process(["data=digits", "steps=2", "metrics=fast", "metrics.n_real=120", "metrics.n_fake=100",
                                    "callbacks=none", "logger=none"], run_dir)
    assert summary["status"] == "completed", summary["error"]
    return run_dir, summary


def save_pngs(root: Path, arrays) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i, a in enumerate(arrays):
        Image.fromarray(a).save(root / f"{i:04d}.png")
    return root


def test_run_dir_scores_reproduce_the_training_summary(digits_run, tmp_path):
    run_dir, summary = digits_run
    out = tmp_path / "scores.json"
    res = evaluate_cli(run_dir, "--json", out)
    assert res.returncode == 0, res.stderr
    assert "FID" in res.stdout and "protocol fast" in res.stdout
    scores = json.loads(out.read_text())
    for key in KEYS:  # same generator, same noise seed, same real images: the same numbers
        assert scores[key] == pytest.approx(summary["metrics"][key], rel=1e-9), key
    p = scores["eval_protocol"]
    assert (p["n_real"], p["n_fake"], p["features"]) == (120, 100, "digits-mlp")
    assert scores["source"]["checkpoint"].endswith("last.ckpt") and scores["source"]["generator_steps"] == 2


def test_checkpoint_file_under_another_protocol(digits_run, tmp_path, capsys):
    run_dir, summary = digits_run
    out = tmp_path / "s.json"
    assert main([str(run_dir / "checkpoints" / "last.ckpt"), "--protocol", "paper", "--n-fake", "60", "--json", str(out)]) == 0
    scores = json.loads(out.read_text())
    p = scores["eval_protocol"]
    assert (p["name"], p["n_fake"], p["n_real"], p["kid_subset_size"]) == ("paper", 60, 1797, 60)  # all 1,797 digits
    assert scores["fid"] != pytest.approx(summary["metrics"]["fid"], rel=1e-6)
    assert "IS" in capsys.readouterr().out


def test_folders_with_inception(inception_weights, tmp_path):
    rng = np.random.default_rng(0)
    fake = save_pngs(tmp_path / "fake", rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8))
    ramps = (np.linspace(0, 255, 40)[None, :, None, None] * rng.random((4, 1, 1, 3))).repeat(40, 2).astype(np.uint8)
    real = save_pngs(tmp_path / "real", ramps)
    out = tmp_path / "s.json"
    res = evaluate_cli("--fake", fake, "--real", real, "--inception-weights", inception_weights,
                       "--json", out, "--protocol", "fast")
    assert res.returncode == 0, res.stderr
    scores = json.loads(out.read_text())
    assert KEYS <= set(scores) and all(np.isfinite(scores[k]) for k in KEYS)
    p = scores["eval_protocol"]
    assert (p["n_fake"], p["n_real"], p["kid_subset_size"], p["features"]) == (3, 4, 3, "inception-v3-compat")
    assert scores["fid"] > 1.0 and scores["is_mean"] >= 1.0


def test_folder_of_digits_against_the_digits_dataset(tmp_path, capsys):
    from src.data.digits import load_digits_images

    digits, _ = load_digits_images(8)
    fake = save_pngs(tmp_path / "digits", [d[0].numpy() for d in digits[:150]])
    noise = save_pngs(tmp_path / "noise", np.random.default_rng(1).integers(0, 256, (150, 8, 8), dtype=np.uint8))
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    assert main(["--fake", str(fake), "--real", "digits", "--json", str(good)]) == 0
    assert main(["--fake", str(noise), "--real", "digits", "--json", str(bad)]) == 0
    good, bad = json.loads(good.read_text()), json.loads(bad.read_text())
    assert good["eval_protocol"]["features"] == "digits-mlp"
    assert good["is_mean"] > 6 and good["fid"] < bad["fid"] / 5 and good["kid_mean"] < bad["kid_mean"]


def test_errors_are_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def error_of(argv, code=2):
        if code == "exit":
            with pytest.raises(SystemExit) as exc:
                main(argv)
            rc = exc.value.code
        else:
            rc = main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and err[0].startswith("error: "), (rc, err)
        return err[0]

    assert "neither a run directory nor a checkpoint" in error_of([str(tmp_path / "missing")])
    (tmp_path / "empty").mkdir()
    assert "holds no checkpoint" in error_of([str(tmp_path / "empty")])
    bad = tmp_path / "bad.ckpt"
    torch.save({"state_dict": {}, "payload": Path("x")}, bad)  # a pickled object weights_only refuses
    assert "weights_only=True" in error_of([str(bad)])
    assert "--fake needs --real" in error_of(["--fake", str(tmp_path)], code="exit")
    assert "give a run directory" in error_of([], code="exit")
    assert "--n-fake=1 is too small" in error_of(["--fake", str(tmp_path), "--real", "digits", "--n-fake", "1"], code="exit")
    assert "--real nowhere is neither a folder" in error_of(["--fake", str(tmp_path), "--real", "nowhere"])
    msg = error_of(["--fake", str(tmp_path), "--real", str(tmp_path)])  # no Inception weights anywhere, offline
    assert "Inception weights not found" in msg and "--inception-weights PATH" in msg


def test_cli_error_exit_status_without_traceback(tmp_path):
    res = evaluate_cli(tmp_path / "nothing-here")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines() == [f"error: {tmp_path / 'nothing-here'} is neither a run directory nor a checkpoint file"]


def test_checkpoint_without_run_config_uses_the_run_dirs_hydra_config(digits_run, tmp_path, capsys):
    from omegaconf import OmegaConf

    from tests.helpers import compose_config

    run_dir, summary = digits_run
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    del ckpt["run_config"]  # as written before the module stored it
    (tmp_path / "checkpoints").mkdir()
    torch.save(ckpt, tmp_path / "checkpoints" / "last.ckpt")
    assert main([str(tmp_path)]) == 2
    assert ".hydra/config.yaml does not exist" in capsys.readouterr().err
    # logger=csv: its save_dir interpolates ${hydra:...}, which only resolves inside Hydra
    cfg = compose_config(["data=digits", "steps=2", "metrics=fast", "metrics.n_real=120", "metrics.n_fake=100",
                          "callbacks=none", "logger=csv"], run_dir=tmp_path)
    (tmp_path / ".hydra").mkdir()
    OmegaConf.save(cfg, tmp_path / ".hydra" / "config.yaml")
    out = tmp_path / "s.json"
    assert main([str(tmp_path), "--json", str(out)]) == 0
    assert json.loads(out.read_text())["fid"] == pytest.approx(summary["metrics"]["fid"], rel=1e-9)


def test_a_runs_sample_grids_are_refused(digits_run, tmp_path, capsys):
    run_dir, _ = digits_run
    assert (run_dir / "samples" / "final.png").is_file()
    assert main(["--fake", str(run_dir / "samples"), "--real", "digits"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "final.png is a sample grid" in err[0]
    assert "python -m src.export RUN_DIR --n 5000 --out DIR" in err[0]
    # a grid copied among individual images is recognised by the marker it carries
    from src.data.digits import load_digits_images

    digits, _ = load_digits_images(8)
    folder = save_pngs(tmp_path / "mixed", [d[0].numpy() for d in digits[:20]])
    (folder / "zz.png").write_bytes((run_dir / "samples" / "final.png").read_bytes())
    assert main(["--fake", str(folder), "--real", "digits"]) == 2
    assert "zz.png is a sample grid" in capsys.readouterr().err
    # the whole run dir given as --fake holds the grids too
    assert main(["--fake", str(run_dir), "--real", "digits"]) == 2
    assert "is a sample grid" in capsys.readouterr().err


def test_few_generated_images_warn(tmp_path, capsys):
    from src.data.digits import load_digits_images

    digits, _ = load_digits_images(8)
    fake = save_pngs(tmp_path / "digits", [d[0].numpy() for d in digits[:150]])
    out = tmp_path / "s.json"
    assert main(["--fake", str(fake), "--real", "digits", "--json", str(out)]) == 0
    # the real set's features on a cold cache show a progress bar (on stderr too): not part of the message
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line.strip() and "img/s" not in line]
    assert err == ["warning: only 150 generated images were scored (protocol paper expects 5000): FID and KID are "
                   "biased upward with fewer images, so these numbers are not comparable to published ones"]
    assert json.loads(out.read_text())["warnings"] == [err[0].removeprefix("warning: ")]
    assert main(["--fake", str(fake), "--real", "digits", "--protocol", "fast", "--json", str(out)]) == 0
    assert "(protocol paper expects 5000, protocol fast 1000)" in capsys.readouterr().err
