"""Every logger on one x-axis (generator updates) with the run's hyperparameters in its config."""
import csv

import yaml

from tests.helpers import train_in_process

ARGS = ["steps=20", "optim.n_dis=2", "log_every=5", "metrics=toy", "samples.every=0", "checkpoint.every=0",
        "callbacks.spectral.every=10", "callbacks.spectral.spectrum_every=0", "regularizer=wgan_gp", "regularizer.lam=7.5"]


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def steps_with(table, prefix):
    return sorted({int(float(r["step"])) for r in table if any(k.startswith(prefix) and r[k] not in ("", None) for k in r)})


def test_csv_steps_are_generator_steps_and_config_has_the_regularizer(tmp_path):
    run = tmp_path / "run"
    summary = train_in_process(ARGS, run)
    assert summary["status"] == "completed"
    table = rows(run / "logs" / "metrics.csv")
    # n_dis=2 makes Lightning's counter 3x the generator step (60 at the end): nothing may be logged there
    assert steps_with(table, "loss/") == [1, 5, 10, 15, 20]
    assert steps_with(table, "spectral/") == [0, 10, 20]
    assert steps_with(table, "final/") == [20]
    hparams = yaml.safe_load((run / "logs" / "hparams.yaml").read_text())
    assert hparams["regularizer/lam"] == 7.5 and hparams["regularizer/name"] == "wgan_gp"
    assert hparams["optim/n_dis"] == 2 and hparams["steps"] == 20


def test_tensorboard_gets_the_same_axis_and_the_hyperparameters(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    assert train_in_process([*ARGS, "logger=tensorboard"], run)["status"] == "completed"
    acc = EventAccumulator(str(run / "tb"), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    assert [e.step for e in acc.Scalars("loss/d")] == [1, 5, 10, 15, 20]
    assert [e.step for e in acc.Scalars("spectral/lip_upper")] == [0, 10, 20]
    assert max(e.step for tag in acc.Tags()["scalars"] for e in acc.Scalars(tag)) == 20
    hparams = yaml.safe_load((run / "tb" / "hparams.yaml").read_text())
    assert hparams["regularizer/lam"] == 7.5
