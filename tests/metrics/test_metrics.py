"""IS / FID / KID: agreement with torch-fidelity, weights resolution, the statistics cache, digits.

No real Inception weights exist on test machines: a RANDOM-weights file in torch-fidelity's format
(its own architecture, state_dict saved with torch.save) goes through the real loading path.
Inception costs ~0.1-0.5 s per image on a shared CPU, so image counts here are tiny.
"""
import hashlib
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers import run_cli, train_in_process
from src.errors import ConfigError, UserError
from src.metrics.evaluator import ImageEvaluator
from src.metrics.features import real_statistics
from src.metrics.image_sets import ImageSet, folder_set, to_uint8
from src.metrics.inception import (InceptionFeatures, hub_weights_path, make_random_inception_weights,
                                   resolve_inception_weights, weights_file_name)
from src.metrics.scores import FeatureStats, frechet_distance, kernel_distance


@pytest.fixture(scope="session")
def inception_weights(tmp_path_factory):
    path = tmp_path_factory.getbasetemp() / "inception-random.pth"
    return path if path.is_file() else make_random_inception_weights(path, seed=0)


def images(n, seed, size=32, smooth=False):
    """uint8 test images: noise, or smooth colour ramps (two clearly different distributions)."""
    g = torch.Generator().manual_seed(seed)
    if not smooth:
        return torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
    ramp = torch.linspace(0, 1, size).view(1, 1, size, 1) * torch.linspace(0.3, 1, size).view(1, 1, 1, size)
    return (255 * ramp * torch.rand(n, 3, 1, 1, generator=g)).to(torch.uint8)


def save_folder(root: Path, imgs: torch.Tensor) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i, im in enumerate(imgs):
        Image.fromarray(im.permute(1, 2, 0).numpy()).save(root / f"{i:04d}.png")
    return root


def stats_of(features, logits, splits=10, batch=16):
    s = FeatureStats(len(features), features.shape[1], splits)
    for a in range(0, len(features), batch):
        s.update(features[a:a + batch], logits[a:a + batch])
    return s


# ---- the formulas against torch-fidelity's and torchmetrics' own functions --------------------------------
@pytest.mark.parametrize("n_fake,n_real,splits,kid_size", [(37, 53, 10, 30), (150, 90, 4, 90), (300, 260, 10, 1000)])
def test_streaming_scores_equal_torch_fidelity_on_features(n_fake, n_real, splits, kid_size):
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
    from torch_fidelity.metric_isc import isc_features_to_metric
    from torch_fidelity.metric_kid import kid_features_to_metric
    from torchmetrics.image.fid import _compute_fid

    g = torch.Generator().manual_seed(n_fake)
    d = 64
    ff = torch.randn(n_fake, d, generator=g).abs()
    fr = (1.3 * torch.randn(n_real, d, generator=g) + 0.2).abs()
    logits = 3 * torch.randn(n_fake, 1008, generator=g)
    fake = stats_of(ff, logits, splits)
    real = stats_of(fr, torch.randn(n_real, 1008, generator=g), splits)

    ref_is = isc_features_to_metric(logits, splits)
    assert fake.inception_score() == pytest.approx((ref_is["inception_score_mean"], ref_is["inception_score_std"]), rel=1e-9)
    ref_fid = fid_statistics_to_metric(fid_features_to_statistics(ff), fid_features_to_statistics(fr), False)
    ours = frechet_distance(fake, real)
    assert ours == pytest.approx(ref_fid["frechet_inception_distance"], rel=1e-6)
    assert ours == pytest.approx(float(_compute_fid(fake.mean, fake.cov, real.mean, real.cov)), rel=1e-6)
    size = min(kid_size, n_fake, n_real)  # torch-fidelity refuses a subset larger than a set; we shrink it
    ref_kid = kid_features_to_metric(ff, fr, kid_subsets=50, kid_subset_size=size, kid_degree=3, kid_gamma=None,
                                     kid_coef0=1, rng_seed=2020, verbose=False)
    kid = kernel_distance(fake, real, subsets=50, subset_size=kid_size)
    assert kid == pytest.approx((ref_kid["kernel_inception_distance_mean"], ref_kid["kernel_inception_distance_std"]), rel=1e-4)


def test_fid_low_rank_and_full_covariance_paths_agree():
    g = torch.Generator().manual_seed(3)
    a = stats_of(torch.randn(40, 96, generator=g).exp(), torch.randn(40, 10, generator=g))
    b = stats_of(torch.randn(70, 96, generator=g).exp() * 1.1, torch.randn(70, 10, generator=g))
    low_rank = frechet_distance(a, b)  # n < dim: nuclear norm of A^T B
    a.features = None  # forces the covariance (eigh) path
    assert frechet_distance(a, b) == pytest.approx(low_rank, rel=1e-7)
    assert low_rank > 1.0


def test_streaming_is_does_not_depend_on_batching_and_needs_all_samples():
    g = torch.Generator().manual_seed(5)
    f, logits = torch.randn(50, 8, generator=g), 4 * torch.randn(50, 20, generator=g)
    assert stats_of(f, logits, 5, batch=7).inception_score() == pytest.approx(stats_of(f, logits, 5, batch=50).inception_score(), rel=1e-12)
    partial = FeatureStats(50, 8, 5)
    partial.update(f[:20], logits[:20])
    with pytest.raises(RuntimeError):
        partial.inception_score()  # the split assignment was made for 50 samples


def test_kid_subset_size_adapts_to_small_sets():
    g = torch.Generator().manual_seed(9)
    a = stats_of(torch.randn(6, 16, generator=g), torch.randn(6, 5, generator=g), 3)
    b = stats_of(torch.randn(9, 16, generator=g) + 1, torch.randn(9, 5, generator=g), 3)
    from torch_fidelity.metric_kid import kid_features_to_metric

    ours = kernel_distance(a, b, subsets=10, subset_size=1000)  # torch-fidelity would refuse 1000 > 6
    ref = kid_features_to_metric(a.features, b.features, kid_subsets=10, kid_subset_size=6, kid_degree=3,
                                 kid_gamma=None, kid_coef0=1, rng_seed=2020, verbose=False)
    assert ours == pytest.approx((ref["kernel_inception_distance_mean"], ref["kernel_inception_distance_std"]), rel=1e-4)


def test_generated_floats_become_the_bytes_save_image_writes(tmp_path):
    from torchvision.utils import save_image

    x = torch.rand(1, 3, 8, 8) * 2.2 - 1.1
    save_image(x, tmp_path / "x.png", normalize=True, value_range=(-1, 1))
    png = torch.from_numpy(np.asarray(Image.open(tmp_path / "x.png"))).permute(2, 0, 1)
    assert torch.equal(to_uint8(x)[0], png)


# ---- the Inception network: torch-fidelity's, loaded from the weights file ---------------------------------
def test_one_pass_gives_torch_fidelity_features_and_logits(inception_weights):
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    x = torch.cat([images(2, 1), images(2, 2, smooth=True)])
    pool, logits = InceptionFeatures(inception_weights)(x)
    ref = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"],
                                      feature_extractor_weights_path=str(inception_weights)).eval()
    with torch.no_grad():
        ref_pool, ref_logits = ref(x)
    assert pool.shape == (4, 2048) and logits.shape == (4, 1008)
    torch.testing.assert_close(pool, ref_pool, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(logits, ref_logits, rtol=1e-5, atol=1e-5)
    assert logits.std(0).mean() > 0.5  # the random head separates images: IS tests are not vacuous


def test_weights_from_config_path_hub_cache_or_a_one_line_error(inception_weights, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert resolve_inception_weights(str(inception_weights)) == Path(inception_weights)
    with pytest.raises(UserError, match="metrics.inception_weights=/nope/w.pth does not exist") as err:
        resolve_inception_weights("/nope/w.pth")
    assert "\n" not in str(err.value)
    start = time.perf_counter()
    with pytest.raises(UserError) as err:  # no file anywhere, no internet here: fails fast, says where it looked
        resolve_inception_weights(None)
    assert time.perf_counter() - start < 10
    msg = str(err.value)
    assert "\n" not in msg and str(hub_weights_path()) in msg
    assert "metrics.inception_weights=PATH" in msg and "metrics=none" in msg
    hub = hub_weights_path()
    assert hub.name == weights_file_name() == "weights-inception-2015-12-05-6726825d.pth"
    hub.parent.mkdir(parents=True)
    shutil.copy(inception_weights, hub)
    assert resolve_inception_weights(None) == hub


def test_a_damaged_weights_file_is_a_user_error(tmp_path):
    bad = tmp_path / "w.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="cannot load Inception weights"):
        InceptionFeatures(bad)


def test_train_without_weights_fails_before_training(cifar_root, tmp_path):
    start = time.perf_counter()
    res = run_cli("src.train", "data=cifar10", f"data.root={cifar_root}", "metrics=paper", run_dir=tmp_path / "run",
                  env={"TORCH_HOME": str(tmp_path / "torch")})
    elapsed = time.perf_counter() - start
    assert res.returncode != 0
    assert elapsed < 90  # interpreter start + imports on a busy shared CPU; no training, no download wait
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Inception weights not found" in errors[0]
    assert "metrics.inception_weights=PATH" in errors[0] and "metrics=none" in errors[0]
    assert "Traceback" not in res.stderr
    summary = res.summary
    assert summary["status"] == "failed" and summary["steps"] == 0
    assert summary["error"] == errors[0][len("error: "):]
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_bad_protocol_values_are_config_errors():
    with pytest.raises(ConfigError, match="metrics.n_fake=1"):
        ImageEvaluator({"name": "x", "n_real": 10, "n_fake": 1, "is_splits": 10})
    with pytest.raises(ConfigError, match="metrics.is_splits"):
        ImageEvaluator({"name": "x", "n_real": 10, "n_fake": 10, "is_splits": 0})


def test_protocol_presets():
    from tests.helpers import compose_config

    expect = {"paper": (10000, 5000, 10), "full": (50000, 50000, 10), "fast": (1000, 1000, 10)}
    for name, (n_real, n_fake, splits) in expect.items():
        m = compose_config([f"metrics={name}"]).metrics
        assert (m.n_real, m.n_fake, m.is_splits, m.kid_subset_size) == (n_real, n_fake, splits, 1000)
        assert m.inception_weights is None and m.every == 0
    m = compose_config(["metrics=paper", "metrics.n_real=123", "metrics.n_fake=45"]).metrics
    assert (m.n_real, m.n_fake) == (123, 45)


# ---- end to end on images -------------------------------------------------------------------------------
def test_statistics_cache_is_reused_and_invalidated(inception_weights, tmp_path, monkeypatch):
    """Cache logic with a cheap stand-in network; its key carries the real weights file's sha256."""
    from src.metrics.inception import sha256_file

    monkeypatch.setenv("GANLAB_CACHE", str(tmp_path / "cache"))
    seen = []

    class Cheap:  # the extractor interface: name, feature_dim, cache_subdir, weights_sha256, __call__
        name, feature_dim, cache_subdir = "inception-v3-compat", 12, "inception"
        weights_sha256 = sha256_file(inception_weights)

        def __call__(self, batch):
            seen.append(len(batch))
            x = batch.float().flatten(1)
            return x[:, :12], x[:, 12:22]

    data = images(6, 7)
    first, path, hit = real_statistics(Cheap(), ImageSet("cifar10", "train", images=data), 3, batch_size=4)
    assert not hit and sum(seen) == 6 and path.is_file() and path.parent == tmp_path / "cache" / "inception"
    assert "cifar10-train-n6" in path.name
    again, path2, hit = real_statistics(Cheap(), ImageSet("cifar10", "train", images=data), 3, batch_size=4)
    assert hit and path2 == path and sum(seen) == 6  # no network pass the second time
    torch.testing.assert_close(again.outer_sum, first.outer_sum)
    torch.testing.assert_close(again.features, first.features)
    assert again.inception_score() == first.inception_score()
    _, path3, hit = real_statistics(Cheap(), ImageSet("cifar10", "train", images=data[:5]), 3, batch_size=4)
    assert not hit and path3 != path and sum(seen) == 11  # another count: recomputed
    _, _, hit = real_statistics(Cheap(), ImageSet("cifar10", "train", images=data.flip(0)), 3, batch_size=4)
    assert not hit and sum(seen) == 17  # other images (same dataset name, split and count): recomputed
    # other weights (one changed tensor): another sha256, so the old statistics are not reused
    state = torch.load(inception_weights, weights_only=True)
    state["fc.bias"] = state["fc.bias"] + 1
    torch.save(state, tmp_path / "other.pth")
    Cheap.weights_sha256 = sha256_file(tmp_path / "other.pth")
    _, path4, hit = real_statistics(Cheap(), ImageSet("cifar10", "train", images=data), 3, batch_size=4)
    assert not hit and path4 not in (path, path3) and sum(seen) == 23
    path4.write_bytes(b"truncated")  # a damaged entry is recomputed, not fatal
    _, _, hit = real_statistics(Cheap(), ImageSet("cifar10", "train", images=data), 3, batch_size=4)
    assert not hit and sum(seen) == 29


def test_fid_of_a_set_against_itself_is_zero_and_against_another_is_not(inception_weights, tmp_path):
    ev = ImageEvaluator({"name": "t", "n_real": 3, "n_fake": 3, "is_splits": 2, "inception_weights": str(inception_weights),
                         "kid_subsets": 20}, device="cpu")
    same = ImageSet("set", "a", images=images(3, 11))
    m = ev.score(ImageSet("fake", "a", images=same.images), same)
    assert set(m) == {"is_mean", "is_std", "fid", "kid_mean", "kid_std"}
    assert abs(m["fid"]) < 1e-6 * ev._real[1].cov.trace().item()
    other = ev.score(ImageSet("fake", "b", images=images(3, 12, smooth=True)), same)
    assert other["fid"] > 1.0 and other["kid_mean"] > abs(m["kid_mean"])
    p = ev.protocol()
    assert (p["n_real"], p["n_fake"], p["is_splits"], p["kid_subset_size"], p["features"]) == (3, 3, 2, 3, "inception-v3-compat")
    assert p["weights_sha256"] == hashlib.sha256(Path(inception_weights).read_bytes()).hexdigest()


@pytest.mark.slow
def test_is_fid_kid_equal_torch_fidelity_calculate_metrics(inception_weights, tmp_path):
    """The whole pipeline (folders -> one Inception pass -> scores) against torch-fidelity's own."""
    import torch_fidelity

    fake_dir = save_folder(tmp_path / "fake", torch.cat([images(60, 21), images(60, 22, smooth=True)]))
    real_dir = save_folder(tmp_path / "real", torch.cat([images(40, 23), images(100, 24, smooth=True)]))
    ev = ImageEvaluator({"name": "t", "n_real": 1000, "n_fake": 1000, "is_splits": 5, "kid_subset_size": 50,
                         "inception_weights": str(inception_weights), "cache": False}, device="cpu")
    ours = ev.score(folder_set(str(fake_dir)), folder_set(str(real_dir)))
    ref = torch_fidelity.calculate_metrics(
        input1=str(fake_dir), input2=str(real_dir), isc=True, fid=True, kid=True, cuda=False, verbose=False,
        cache=False, save_cpu_ram=True, isc_splits=5, kid_subset_size=50,
        feature_extractor_weights_path=str(inception_weights))
    pairs = {"is_mean": "inception_score_mean", "is_std": "inception_score_std", "fid": "frechet_inception_distance",
             "kid_mean": "kernel_inception_distance_mean", "kid_std": "kernel_inception_distance_std"}
    for ours_key, ref_key in pairs.items():
        assert ours[ours_key] == pytest.approx(ref[ref_key], rel=1e-3), ours_key
    assert ours["is_mean"] > 1.5 and ours["fid"] > 1.0


# ---- digits: the small classifier -----------------------------------------------------------------------
def test_digits_classifier_ships_pinned_and_matches_its_recorded_accuracy(tmp_path, capsys):
    import hashlib

    from sklearn.model_selection import train_test_split

    from src.data.digits import load_digits_images
    from src.metrics.digits import SHIPPED, SHIPPED_SHA256, DigitsFeatures, train_digits_classifier

    assert hashlib.sha256(SHIPPED.read_bytes()).hexdigest() == SHIPPED_SHA256
    features = DigitsFeatures()
    assert "digits classifier: test accuracy 96.9% on 450 held-out digits" in capsys.readouterr().out
    assert features.describe()["weights_sha256"] == SHIPPED_SHA256 and features.weights_path == SHIPPED
    # the recorded held-out accuracy, recomputed from the shipped weights on the split it was trained against
    images, labels = load_digits_images(8)
    _, idx_test = train_test_split(torch.arange(len(labels)).numpy(), test_size=0.25, random_state=0,
                                   stratify=labels.numpy())
    feats, logits = features(images[idx_test])
    assert feats.shape == (450, 64)
    assert float((logits.argmax(1) == labels[idx_test]).float().mean()) == pytest.approx(features.info["test_accuracy"])
    # training is deterministic on one machine (other machines' kernels may round differently: why it ships)
    a, acc_a, _ = train_digits_classifier(epochs=30)
    b, acc_b, _ = train_digits_classifier(epochs=30)
    assert all(torch.equal(a[k], b[k]) for k in a) and acc_a == acc_b


def test_a_changed_or_missing_shipped_classifier_is_refused(tmp_path, monkeypatch):
    import src.metrics.digits as digits

    altered = tmp_path / digits.SHIPPED.name
    altered.write_bytes(digits.SHIPPED.read_bytes() + b"x")
    monkeypatch.setattr(digits, "SHIPPED", altered)
    with pytest.raises(RuntimeError, match=r"sha256 [0-9a-f]{12}, not the pinned 443eda8bff3f"):
        digits.DigitsFeatures()
    altered.unlink()
    with pytest.raises(FileNotFoundError, match="is missing from the package"):
        digits.DigitsFeatures()
    # a classifier of one's own, saved in the same layout, is taken from an explicit path
    state, acc, n_test = digits.train_digits_classifier(epochs=30)
    own = tmp_path / "own.pt"
    digits.save_classifier(state, acc, n_test, own)
    features = digits.DigitsFeatures(path=own)
    assert features.info == {"test_accuracy": acc, "n_test": n_test} and features.weights_path == own


def test_digits_run_scores_periodically_and_logs_history(tmp_path):
    run_dir = tmp_path / "run"
    summary = train_in_process(["data=digits", "steps=2", "metrics=fast", "metrics.n_real=120", "metrics.n_fake=100",
                                "metrics.every=1", "callbacks=none", "logger=csv"], run_dir)
    assert summary["status"] == "completed", summary["error"]
    m, p = summary["metrics"], summary["eval_protocol"]
    assert 1.0 <= m["is_mean"] <= 10.0 and m["fid"] > 0 and np.isfinite(m["kid_mean"])
    history = summary["metrics_history"]  # periodic scores live beside the final ones
    assert "history" not in m
    assert [h["step"] for h in history] == [1, 2]
    assert history[-1]["fid"] == m["fid"]  # the final entry is the summary's score, computed once
    assert p["features"] == "digits-mlp" and p["classifier_test_accuracy"] > 0.93
    assert (p["n_real"], p["n_fake"], p["kid_subset_size"], p["real_split"]) == (120, 100, 100, "all")
    assert p["every"] == 1 and p["periodic_eval_sec"] > 0
    assert p["real_is_mean"] > 5  # real digits, ~97% classifier: well above 1 (12 per split caps it below 10)
    on_disk = json.loads((run_dir / "summary.json").read_text())
    assert on_disk["metrics_history"] == history
    logged = (run_dir / "logs" / "metrics.csv").read_text().splitlines()
    col = logged[0].split(",").index("eval/fid")
    fids = [float(row.split(",")[col]) for row in logged[1:] if row.split(",")[col]]
    assert fids == pytest.approx([h["fid"] for h in history])
