"""Values that used to pass validation and then crash or misbehave, and Hydra-level mistakes: one line
naming the value and what is valid, a non-zero exit (2), a failed summary, no traceback."""
import errno
import json

import pytest

from src.preflight import preflight
from tests.helpers import train_in_process

BASE = ["steps=3", "metrics=none", "callbacks=none", "samples.every=0", "checkpoint.every=0"]


@pytest.mark.parametrize("overrides,needles", [
    (["optim.lr=inf"], ["optim.lr=inf", "finite"]),
    (["optim.lr=nan"], ["optim.lr=nan", "finite"]),
    (["regularizer=wgan_gp", "regularizer.lam=inf"], ["regularizer.lam=inf", "finite"]),
    (["regularizer=weight_clip", "regularizer.c=inf"], ["regularizer.c=inf", "finite"]),
    (["steps=20.0"], ["steps=20.0", "write 20"]),
    (["data.batch_size=64.0"], ["data.batch_size=64.0", "write 64"]),
    (["z_dim=16.0"], ["z_dim=16.0", "write 16"]),
    (["regularizer.power_iterations=2.0"], ["regularizer.power_iterations=2.0", "positive integer"]),
    (["log_every=0"], ["log_every=0", "positive integer"]),
    (["log_every=abc"], ["log_every='abc'", "positive integer"]),
    (["seed=-1"], ["seed=-1", "[0, 4294967295]"]),
    (["seed=4294967296"], ["seed=4294967296", "[0, 4294967295]"]),
    (["threads=0"], ["threads=0", "auto"]),
    (["trainer.accelerator=cuda"], ["trainer.accelerator=cuda", "valid here: cpu"]),
    (["trainer.accelerator=tpuu"], ["trainer.accelerator='tpuu'", "valid: cpu, cuda"]),
    (["regularizer=batch_norm", "data.batch_size=1"], ["data.batch_size=1", "at least 2"]),
    (["perf.channels_last=yes"], ["perf.channels_last='yes'", "true or false"]),
])
def test_values_that_used_to_crash_later(tmp_path, overrides, needles):
    summary = train_in_process([*BASE, *overrides], tmp_path / "run")
    assert summary["status"] == "failed" and summary["error_kind"] == "user"
    for needle in needles:
        assert needle in summary["error"], summary["error"]
    assert "\n" not in summary["error"]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "failed"
    assert not (tmp_path / "run" / "checkpoints").exists()


def _preflight_error(capsys, argv):
    with pytest.raises(SystemExit) as exc:
        preflight(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    return err


def test_unknown_option_is_one_line_with_the_valid_ones_and_a_summary(capsys, tmp_path):
    run = tmp_path / "run"
    lines = _preflight_error(capsys, ["regularizer=snn", f"hydra.run.dir={run}"])
    assert lines[-1].startswith("error: ") and "regularizer/snn" in lines[-1] and "sn_conv" in lines[-1] and "wgan_gp" in lines[-1]
    s = json.loads((run / "summary.json").read_text())
    assert s["status"] == "failed" and "regularizer/snn" in s["error"] and s["error_kind"] == "user"


def test_unknown_key_says_it_does_not_exist(capsys, tmp_path):
    lines = _preflight_error(capsys, ["stepz=10", f"hydra.run.dir={tmp_path / 'run'}"])
    assert "'stepz'" in lines[-1] and "no config key" in lines[-1]


def test_typo_in_a_later_sweep_value_fails_before_any_job(capsys, tmp_path):
    sweep = tmp_path / "sweep"
    lines = _preflight_error(capsys, ["-m", "regularizer=sn,snn", f"hydra.sweep.dir={sweep}"])
    assert "regularizer/snn" in lines[-1]
    assert not sweep.exists()


def test_a_typo_never_overwrites_an_earlier_record(capsys, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "summary.json").write_text('{"status": "completed"}')
    _preflight_error(capsys, ["regularizer=snn", f"hydra.run.dir={run}"])
    assert json.loads((run / "summary.json").read_text()) == {"status": "completed"}


def test_valid_command_lines_pass(tmp_path):
    preflight(["regularizer=wgan_gp", "optim=D", f"hydra.run.dir={tmp_path / 'r'}"])
    preflight(["-m", "regularizer=sn,wgan_gp", "seed=range(0,3)", f"hydra.sweep.dir={tmp_path / 's'}"])
    preflight(["--cfg", "job", "regularizer=whatever"])  # Hydra's own flags: left to Hydra


def test_full_disk_is_named_as_such(tmp_path, monkeypatch):
    import src.checkpoint_io as checkpoint_io

    def full(obj, path, *a, **k):
        with open(path, "wb") as f:
            f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint_io.torch, "save", full)
    summary = train_in_process(["steps=4", "metrics=none", "callbacks=none", "checkpoint.every=2"], tmp_path / "run")
    assert summary["status"] == "failed" and summary["error_kind"] == "environment"
    assert "disk full" in summary["error"] and str(tmp_path / "run") in summary["error"]
    assert not list((tmp_path / "run" / "checkpoints").glob(".*tmp*"))  # no half-written checkpoint left


def test_out_of_memory_names_the_batch_size(tmp_path, monkeypatch):
    from src.module import GAN

    def oom(self, batch, batch_idx):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 93458923520 bytes")

    monkeypatch.setattr(GAN, "training_step", oom)
    summary = train_in_process([*BASE, "data.batch_size=4096"], tmp_path / "run")
    assert summary["status"] == "failed"
    assert "out of memory" in summary["error"] and "data.batch_size=4096" in summary["error"]


def test_non_utf8_paths_are_quoted_for_hydra():
    import os

    from hydra.core.override_parser.overrides_parser import OverridesParser

    from src.preflight import quote_non_utf8

    raw = os.fsdecode(b"data.root=/data/imgs\xff")
    quoted = quote_non_utf8([raw, "steps=3", "data.root='/already quoted'"])
    assert quoted[1:] == ["steps=3", "data.root='/already quoted'"]
    with pytest.raises(Exception):
        OverridesParser.create().parse_overrides([raw])  # what Hydra does with the plain value
    (override,) = OverridesParser.create().parse_overrides(quoted[:1])
    assert override.value() == os.fsdecode(b"/data/imgs\xff")  # the bytes survive, as surrogates
