"""The toy evaluator: metrics= presets honoured, periodic scoring (the learning curve) that leaves
training untouched and survives a resume, and one-line errors for bad values."""
import csv

import numpy as np
import pytest
import torch

from tests.helpers import compose_config, train_in_process
from src.errors import ConfigError
from src.metrics import NullEvaluator, ToyEvaluator, build_evaluator
from src.metrics.toy import mode_statistics, sliced_wasserstein

FAST = ["steps=12", "log_every=2", "samples.every=0", "checkpoint.every=6", "callbacks.spectral=null",
        "data.n_points=2000", "data.batch_size=64", "arch.hidden=32", "z_dim=8", "optim=C"]  # C: no lr decay, so a run can be extended


class _Data:
    name, variant, std = "toy2d", "ring8", 0.02


def test_presets_are_honoured_and_none_means_no_scoring():
    cfg = compose_config([])  # data=toy2d picks metrics=toy
    assert cfg.metrics.name == "toy"
    toy = build_evaluator(cfg.metrics, _Data())
    assert isinstance(toy, ToyEvaluator) and toy.n_samples == 2500 and toy.every == 0
    fast = build_evaluator(compose_config(["metrics=fast", "metrics.every=7"]).metrics, _Data())
    assert (fast.n_samples, fast.every) == (1000, 7)
    assert isinstance(build_evaluator(compose_config(["metrics=none"]).metrics, _Data()), NullEvaluator)


@pytest.mark.parametrize("override, bad", [("metrics.every=-1", "metrics.every=-1"),
                                           ("metrics.n_fake=1", "metrics.n_fake=1"),
                                           ("metrics.n_fake=2.5", "metrics.n_fake=2.5")])
def test_bad_values_are_one_line_config_errors(override, bad):
    with pytest.raises(ConfigError, match=rf"^{bad} is invalid; it must be an integer >= \d$"):
        build_evaluator(compose_config([override]).metrics, _Data())


def test_score_is_the_measures_of_its_fixed_noise_samples():
    torch.manual_seed(0)
    G = torch.nn.Linear(8, 2)

    class Module:  # what the evaluator needs of a GANModule: z_dim, g_step, generate(n, z=...)
        z_dim, g_step = 8, 3

        def generate(self, n, z=None):
            return G(z).detach()

    ev = ToyEvaluator(n_samples=300, every=0, seed=5)
    fake = G(torch.randn(300, 8, generator=torch.Generator().manual_seed(5))).detach().numpy()
    got = ev.evaluate(Module())
    from src.data.toy2d import mode_centers, sample_toy2d
    real = sample_toy2d("ring8", 300, 12345, 0.02).numpy()
    assert got["sliced_wasserstein"] == pytest.approx(sliced_wasserstein(fake, real), rel=1e-6)
    assert got["modes_covered"] == mode_statistics(fake, mode_centers("ring8"), 0.02)["modes_covered"]
    state = torch.get_rng_state()
    ev.evaluate(Module())
    assert torch.equal(state, torch.get_rng_state())  # the global RNG (training's) is never drawn from


def _eval_rows(run_dir):
    with open(run_dir / "logs" / "metrics.csv") as f:
        return [r for r in csv.DictReader(f) if r.get("eval/sliced_wasserstein")]


def test_periodic_scoring_is_logged_and_leaves_training_untouched(tmp_path):
    plain = train_in_process(FAST, tmp_path / "plain")
    curve = train_in_process([*FAST, "metrics.every=4"], tmp_path / "curve")
    assert plain["status"] == curve["status"] == "completed"
    assert curve["metrics"] == plain["metrics"]  # the same G at the end: training was not disturbed
    history = curve["metrics_history"]
    assert [h["step"] for h in history] == [4, 8, 12]
    assert {k: history[-1][k] for k in plain["metrics"]} == plain["metrics"]
    rows = _eval_rows(tmp_path / "curve")
    assert [int(float(r["step"])) for r in rows] == [4, 8]  # the final score is logged once, as final/*
    assert [float(r["eval/sliced_wasserstein"]) for r in rows] == pytest.approx(
        [h["sliced_wasserstein"] for h in history[:2]], rel=1e-6)
    assert "metrics_history" not in plain


def test_the_curve_survives_a_resume(tmp_path):
    whole = train_in_process([*FAST, "metrics.every=4"], tmp_path / "whole")
    run = tmp_path / "extended"
    first = train_in_process([*FAST, "metrics.every=4", "steps=8"], run)
    assert [h["step"] for h in first["metrics_history"]] == [4, 8]
    second = train_in_process([*FAST, "metrics.every=4"], run)  # steps=12: resumes from last.ckpt at 8
    assert [h["step"] for h in second["metrics_history"]] == [4, 8, 12]
    np.testing.assert_allclose([h["sliced_wasserstein"] for h in second["metrics_history"]],
                               [h["sliced_wasserstein"] for h in whole["metrics_history"]], rtol=1e-6)
