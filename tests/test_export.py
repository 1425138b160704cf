"""python -m src.export: N individual images from a run's checkpoint, pixel-exact, scored as the run is."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers import train_in_process
from src.evaluate import main as evaluate_main
from src.export import main


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("digits-export") / "run"
    with pytest.MonkeyPatch.context() as mp:  # module scope: conftest's per-test cache isolation is not active yet
        mp.setenv("GANLAB_CACHE", str(tmp_path_factory.getbasetemp() / "ganlab-cache"))
        summary = train_in_process(["data=digits", "steps=2", "metrics=fast", "metrics.n_real=120", "metrics.n_fake=100",
                                    "callbacks=none", "logger=none", "threads=1"], run_dir)
    assert summary["status"] == "completed", summary["error"]
    return run_dir, summary


def reference_images(ckpt_path: Path, n: int, seed: int, batch_size: int) -> np.ndarray:
    """Rebuild G straight from the checkpoint (hydra instantiate of the stored arch, its G.* weights) and map
    its outputs to uint8 the way PNG writers round: floor((x + 1) / 2 * 255 + 0.5)."""
    from hydra.utils import instantiate

    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    cfg = ckpt["run_config"]
    arch = {k: v for k, v in cfg["arch"].items() if k != "name"}
    G, _ = instantiate(arch, z_dim=cfg["z_dim"], resolution=cfg["data"]["resolution"], channels=cfg["data"]["channels"])
    G.load_state_dict({k[2:]: v for k, v in ckpt["state_dict"].items() if k.startswith("G.")})
    G.eval()
    out = []
    with torch.no_grad():
        torch.manual_seed(seed)
        for start in range(0, n, batch_size):
            out.append(G(torch.randn(min(batch_size, n - start), cfg["z_dim"])).numpy())
    x = np.concatenate(out).astype(np.float64)
    return np.floor((np.clip(x, -1, 1) + 1) / 2 * 255 + 0.5).clip(0, 255).astype(np.uint8)


def test_export_writes_n_images_equal_to_the_generator_output(digits_run, tmp_path, capsys):
    run_dir, _ = digits_run
    out = tmp_path / "export"
    assert main([str(run_dir), "--n", "70", "--out", str(out), "--seed", "3", "--batch-size", "32", "--device", "cpu"]) == 0
    assert "wrote 70 images (8x8, grayscale PNG)" in capsys.readouterr().out
    files = sorted(out.iterdir())
    assert [f.name for f in files] == [f"{i:06d}.png" for i in range(70)]  # nothing else in the folder
    expected = reference_images(run_dir / "checkpoints" / "last.ckpt", 70, seed=3, batch_size=32)
    for f, ref in zip(files, expected):
        with Image.open(f) as im:
            assert im.mode == "L" and im.size == (8, 8)
            np.testing.assert_array_equal(np.asarray(im), ref[0])
    assert len({np.asarray(Image.open(f)).tobytes() for f in files}) > 60  # distinct noise per image
    assert not list(tmp_path.glob(".export.partial-*"))


def test_scoring_the_export_equals_scoring_the_run(digits_run, tmp_path):
    run_dir, summary = digits_run
    out = tmp_path / "fake"
    # the run's evaluation noise: its metrics.seed and metrics.batch_size (the defaults), on the same device
    assert main([str(run_dir), "--n", "100", "--out", str(out), "--device", "cpu"]) == 0
    run_json, folder_json = tmp_path / "run.json", tmp_path / "folder.json"
    assert evaluate_main([str(run_dir), "--device", "cpu", "--json", str(run_json)]) == 0
    assert evaluate_main(["--fake", str(out), "--real", "digits", "--protocol", "fast", "--n-real", "120",
                          "--device", "cpu", "--json", str(folder_json)]) == 0
    by_run, by_folder = json.loads(run_json.read_text()), json.loads(folder_json.read_text())
    assert by_folder["eval_protocol"]["n_fake"] == by_run["eval_protocol"]["n_fake"] == 100
    for key in ("is_mean", "is_std", "fid", "kid_mean", "kid_std"):
        assert by_folder[key] == pytest.approx(by_run[key], rel=1e-6, abs=1e-9), key
        assert by_run[key] == pytest.approx(summary["metrics"][key], rel=1e-9), key


def test_a_failure_leaves_no_half_written_folder(digits_run, tmp_path, capsys, monkeypatch):
    run_dir, _ = digits_run
    out = tmp_path / "partial"
    saved = []
    real_save = Image.Image.save

    def save_then_fill_the_disk(self, fp, *args, **kwargs):
        if len(saved) == 5:
            raise OSError(28, "No space left on device")
        saved.append(fp)
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save_then_fill_the_disk)
    assert main([str(run_dir), "--n", "20", "--out", str(out), "--device", "cpu"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: cannot write the images to {out}: No space left on device"]
    assert len(saved) == 5 and not out.exists() and list(tmp_path.iterdir()) == []


def test_bad_arguments_are_one_line(digits_run, tmp_path, capsys):
    run_dir, _ = digits_run

    def error_of(argv, code=2):
        try:
            rc = main(argv)
        except SystemExit as exc:
            rc = exc.code
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == code and len(err) == 1 and err[0].startswith("error: "), (rc, err)
        return err[0]

    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("x")
    assert "already exists and is not an empty folder" in error_of([str(run_dir), "--n", "3", "--out", str(full)])
    assert (full / "keep.txt").read_text() == "x" and len(list(full.iterdir())) == 1
    assert "--n=0" in error_of([str(run_dir), "--n", "0", "--out", str(tmp_path / "o")])
    assert "neither a run directory nor a checkpoint" in error_of([str(tmp_path / "nope"), "--n", "3", "--out", str(tmp_path / "o")])
    assert "invalid choice: 'jpg'" in error_of([str(run_dir), "--n", "3", "--out", str(tmp_path / "o"), "--format", "jpg"])
    assert not (tmp_path / "o").exists()
    # an empty folder is accepted (and filled)
    (tmp_path / "empty").mkdir()
    assert main([str(run_dir), "--n", "3", "--out", str(tmp_path / "empty"), "--device", "cpu"]) == 0
    assert len(list((tmp_path / "empty").iterdir())) == 3


def test_a_2d_run_is_refused(tmp_path, capsys):
    """A toy run's checkpoint (built here rather than trained: same run_config and G.* weights) holds no images."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from tests.helpers import compose_config

    cfg = OmegaConf.to_container(compose_config(["data=toy2d"], run_dir=tmp_path), resolve=True)
    config = {k: cfg[k] for k in ("arch", "data", "z_dim", "metrics", "optim")}
    G, _ = instantiate({k: v for k, v in config["arch"].items() if k != "name"}, z_dim=config["z_dim"], data_shape=(2,))
    (tmp_path / "toy" / "checkpoints").mkdir(parents=True)
    torch.save({"state_dict": {f"G.{k}": v for k, v in G.state_dict().items()}, "run_config": config},
               tmp_path / "toy" / "checkpoints" / "last.ckpt")
    assert main([str(tmp_path / "toy"), "--n", "5", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a run on 2-D points (data=toy2d), not images" in err[0]
    assert not (tmp_path / "o").exists() and not list(tmp_path.glob(".o.partial-*"))


def test_a_diverged_generator_and_a_missing_gpu_are_refused(digits_run, tmp_path, capsys):
    run_dir, _ = digits_run
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    bias = next(k for k in ckpt["state_dict"] if k.startswith("G.") and k.endswith("bias"))
    ckpt["state_dict"][bias] = torch.full_like(ckpt["state_dict"][bias], float("nan"))
    torch.save(ckpt, tmp_path / "nan.ckpt")
    assert main([str(tmp_path / "nan.ckpt"), "--n", "5", "--out", str(tmp_path / "o"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "outputs non-finite values" in err[0]
    assert not (tmp_path / "o").exists() and [p.name for p in tmp_path.iterdir()] == ["nan.ckpt"]
    if not torch.cuda.is_available():
        assert main([str(run_dir), "--n", "5", "--out", str(tmp_path / "o"), "--device", "cuda"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: --device cuda: ") and "valid: cpu" in err[0]


@pytest.mark.slow
def test_scoring_the_export_with_inception_equals_scoring_the_run(tmp_path, cifar_root):
    """The Inception pipeline (CIFAR-10 layout, 32x32 RGB, random Inception weights): the exported PNGs, scored
    with --fake, give the run's own scores."""
    from src.metrics.inception import make_random_inception_weights

    weights = make_random_inception_weights(tmp_path / "inception.pth", seed=0)
    run_dir = tmp_path / "run"
    summary = train_in_process(["data=cifar10", f"data.root={cifar_root}", "data.download=false", "data.batch_size=8",
                                "steps=1", "metrics=fast", "metrics.n_real=24", "metrics.n_fake=20",
                                "metrics.batch_size=8",
                                f"metrics.inception_weights={weights}", "callbacks=none", "logger=none", "threads=1"],
                               run_dir)
    assert summary["status"] == "completed", summary["error"]
    out = tmp_path / "fake"
    assert main([str(run_dir), "--n", "20", "--out", str(out), "--device", "cpu"]) == 0
    with Image.open(out / "000000.png") as im:
        assert im.mode == "RGB" and im.size == (32, 32)
    by_folder = tmp_path / "folder.json"
    assert evaluate_main(["--fake", str(out), "--real", "cifar10", "--data-root", str(cifar_root), "--protocol", "fast",
                          "--n-real", "24", "--batch-size", "8", "--inception-weights", str(weights), "--device", "cpu",
                          "--json", str(by_folder)]) == 0
    scores = json.loads(by_folder.read_text())
    assert scores["eval_protocol"]["n_fake"] == 20
    for key in ("is_mean", "is_std", "fid", "kid_mean", "kid_std"):
        assert scores[key] == pytest.approx(summary["metrics"][key], rel=1e-5, abs=1e-9), key
