"""threads=auto: a job's share of the cores that cannot oversubscribe the machine."""
import pytest

from src import threads
from tests.helpers import compose_config

JOBLIB = {"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": 2}
SUBMITIT_LOCAL = {"_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher", "array_parallelism": 4}


@pytest.mark.parametrize("cores,launcher,load,expected", [
    (2, None, 0.0, 2),            # idle machine, one job: both cores
    (2, None, 1.2, 1),            # one core busy: the free one only (11x faster than fighting for two)
    (2, None, 7.0, 1),            # overloaded: never below one
    (2, JOBLIB, 0.0, 1),          # two joblib jobs on two cores: one each
    (16, JOBLIB, 0.0, 8),
    (16, SUBMITIT_LOCAL, 0.0, 4),  # submitit_local jobs share the machine too
    (16, {"_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"}, 0.0, 16),  # own node share
])
def test_auto_threads(monkeypatch, cores, launcher, load, expected):
    monkeypatch.setattr(threads, "usable_cores", lambda: cores)
    assert threads.auto_threads(launcher, load=load) == expected


def test_default_is_auto_and_explicit_values_win(monkeypatch):
    assert compose_config([]).threads == "auto"
    assert threads.resolve_threads(3) == 3
    assert threads.resolve_threads(None) is None
    monkeypatch.setattr(threads, "usable_cores", lambda: 4)
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert threads.resolve_threads("auto", JOBLIB) == 2
