"""User mistakes: one line naming the bad value and what is valid, non-zero exit, nothing looking complete."""
import pytest

from tests.helpers import BASE, assert_user_error, make_image_folder


@pytest.mark.parametrize("override,needles", [
    ("steps=0", ["steps=0", "positive integer"]),
    ("steps=-5", ["steps=-5", "positive integer"]),
    ("steps=abc", ["steps='abc'", "positive integer"]),
    ("data.batch_size=0", ["data.batch_size=0", "positive integer"]),
    ("optim.lr=0", ["optim.lr=0", "positive number"]),
    ("optim.lr=-1e-4", ["optim.lr=-0.0001", "positive number"]),
    ("optim.n_dis=0", ["optim.n_dis=0", "positive integer"]),
    ("optim.n_dis=1.5", ["optim.n_dis=1.5", "positive integer"]),
    ("optim.beta2=1.5", ["optim.beta2=1.5", "[0, 1)"]),
    ("data.variant=moon", ["data.variant='moon'", "ring8, grid25, swiss_roll"]),
])
def test_invalid_values(cli, tmp_path, override, needles):
    assert_user_error(cli("src.train", *BASE, override, run_dir=tmp_path / "run"), *needles)


def test_unknown_option_names_the_option_and_the_valid_ones(cli, tmp_path):
    result = cli("src.train", *BASE, "regularizer=spectral", run_dir=tmp_path / "run")
    assert result.returncode != 0
    assert "regularizer/spectral" in result.stderr and "sn" in result.stderr
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) <= 2  # the error (and where its summary is)
    assert result.summary["status"] == "failed" and "regularizer/spectral" in result.summary["error"]


def test_missing_data_root(cli, tmp_path):
    missing = tmp_path / "nowhere"
    assert_user_error(cli("src.train", *BASE, "data=image_folder", f"data.root={missing}", run_dir=tmp_path / "run"),
                      str(missing), "does not exist")


def test_folder_without_images(cli, tmp_path):
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "notes.txt").write_text("no images here")
    assert_user_error(cli("src.train", *BASE, "data=image_folder", f"data.root={empty}", run_dir=tmp_path / "run"),
                      str(empty), "holds no images")


def test_undecodable_image(cli, tmp_path):
    root = make_image_folder(tmp_path / "imgs", n=3)
    (root / "broken.png").write_bytes(b"not a png at all")
    assert_user_error(cli("src.train", *BASE, "data=image_folder", f"data.root={root}", "data.cache=false", run_dir=tmp_path / "run"),
                      "broken.png", "cannot decode")


def test_cifar10_missing_offline_says_where_and_how(cli, tmp_path):
    root = tmp_path / "cifar"
    assert_user_error(cli("src.train", *BASE, "data=cifar10", f"data.root={root}", "data.download=false", run_dir=tmp_path / "run"),
                      str(root / "cifar-10-batches-py"), "cifar-10-python.tar.gz")


def test_resolution_the_arch_cannot_take(cli, tmp_path):
    root = make_image_folder(tmp_path / "imgs", n=3)
    assert_user_error(cli("src.train", *BASE, "data=image_folder", f"data.root={root}", "data.resolution=30", run_dir=tmp_path / "run"),
                      "resolution 30", "multiple of 8")


def test_ckpt_path_that_does_not_exist(cli, tmp_path):
    assert_user_error(cli("src.train", *BASE, f"ckpt_path={tmp_path / 'x.ckpt'}", run_dir=tmp_path / "run"), "x.ckpt", "does not exist")


def test_unwritable_output_dir(cli, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    result = cli("src.train", *BASE, run_dir=blocker / "run")
    assert_user_error(result, str(blocker / "run"), "writable")


def _trained_run(cli, run_dir, *extra):
    result = cli("src.train", *BASE, "checkpoint.every=1", *extra, run_dir=run_dir)
    assert result.returncode == 0, result.stderr[-2000:]
    return run_dir / "checkpoints" / "last.ckpt"


def test_truncated_and_mismatched_checkpoints(cli, tmp_path):
    ckpt = _trained_run(cli, tmp_path / "first")
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(ckpt.read_bytes()[:1000])
    assert_user_error(cli("src.train", *BASE, f"ckpt_path={truncated}", run_dir=tmp_path / "r1"),
                      "truncated.ckpt", "cannot be read")
    assert_user_error(cli("src.train", *BASE, "regularizer=none", f"ckpt_path={ckpt}", run_dir=tmp_path / "r2"),
                      "regularizer.name=sn", "regularizer.name=none")


def test_corrupt_cifar_batch(cli, tmp_path, cifar_root):
    (cifar_root / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"garbage")
    assert_user_error(cli("src.train", *BASE, "data=cifar10", f"data.root={cifar_root}", "data.download=false", run_dir=tmp_path / "run"),
                      "data_batch_3", "corrupt")


def test_truncated_stl10_file(cli, tmp_path, stl_root):
    path = stl_root / "stl10_binary" / "unlabeled_X.bin"
    path.write_bytes(path.read_bytes()[:1000])
    assert_user_error(cli("src.train", *BASE, "data=stl10", f"data.root={stl_root}", "data.download=false", "data.cache=false",
                          run_dir=tmp_path / "run"), "unlabeled_X.bin", "truncated")


def test_invalid_value_in_a_sweep_fails_only_that_job(cli, tmp_path):
    sweep = tmp_path / "sweep"
    result = cli("src.train", "-m", *BASE, "optim.lr=1e-3,-1", f"hydra.sweep.dir={sweep}")
    assert result.returncode == 0
    import json

    first, second = (json.loads((sweep / str(i) / "summary.json").read_text()) for i in (0, 1))
    assert first["status"] == "completed"
    assert second["status"] == "failed" and "optim.lr=-1" in second["error"]


def test_a_preset_interpolation_the_options_do_not_fit_is_a_one_line_error(cli, tmp_path):
    # experiment=study_digits looks its length up by the optim setting's name: A-F only
    result = cli("src.train", "experiment=study_digits", "optim=toy", run_dir=tmp_path / "run")
    assert_user_error(result, "steps=${steps_by_setting.${optim.name}}", "steps_by_setting.toy", "steps=")
    assert result.returncode == 2


def test_the_study_preset_gives_each_setting_its_length(tmp_path):
    from tests.helpers import compose_config

    steps = {o: compose_config(["experiment=study_digits", f"optim={o}"], tmp_path / o).steps for o in "ABCDEF"}
    assert steps == {"A": 2000, "B": 5000, "C": 5000, "D": 2000, "E": 2000, "F": 4000}
    assert compose_config(["experiment=study_digits", "optim=C", "steps=300"], tmp_path / "x").steps == 300
