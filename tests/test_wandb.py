"""W&B: one offline run per multirun job with the flattened config, tags, group, name, losses and the
final summary; online/offline chosen from the credentials; the API key never lands in a run dir."""
import json
import struct
from pathlib import Path

import pytest

from tests.helpers import run_cli

FAKE_KEY = "0123456789fakewandbkey0123456789abcdefX"  # 40 characters, like a real key


def wandb_records(path: Path):
    """The records of an offline run's .wandb file (W&B's LevelDB-style log of protobuf Records:
    a 7-byte file header, 32 KiB blocks, each chunk a 7-byte header: crc32, length, type)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, buf = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # block trailer padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 and length == 0:
            pos += left
            continue
        buf += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST chunk: a whole record
            rec = pb.Record()
            rec.ParseFromString(buf)
            buf = b""
            yield rec


def read_offline_run(run_dir: Path) -> dict:
    """{'run': Run record, 'config': {k: v}, 'summary': {k: v}, 'history_keys': set} of the one offline run in run_dir."""
    (wandb_file,) = list(run_dir.glob("wandb/offline-run-*/run-*.wandb"))
    out = {"config": {}, "summary": {}, "history_keys": set(), "run": None}
    for rec in wandb_records(wandb_file):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            out["run"] = rec.run
            for item in rec.run.config.update:
                out["config"][item.key] = json.loads(item.value_json)
        elif kind == "config":
            for item in rec.config.update:
                out["config"][item.key] = json.loads(item.value_json)
        elif kind == "summary":
            for item in rec.summary.update:
                key = item.key or "/".join(item.nested_key)
                out["summary"][key] = json.loads(item.value_json)
        elif kind == "history":
            out["history_keys"] |= {item.key or "/".join(item.nested_key) for item in rec.history.item}
    return out


@pytest.fixture
def no_credentials(tmp_path, monkeypatch):
    for var in ("WANDB_MODE", "WANDB_API_KEY", "NETRC", "WANDB_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def test_mode_follows_credentials(no_credentials, monkeypatch):
    from src.loggers import wandb_mode

    assert wandb_mode("auto") == "offline"
    (no_credentials / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password abc\n")
    (no_credentials / ".netrc").chmod(0o600)
    assert wandb_mode("auto") == "online"
    (no_credentials / ".netrc").unlink()
    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    assert wandb_mode("auto") == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_mode("auto") == "disabled"
    assert wandb_mode("offline") == "offline"  # an explicit logger.mode wins over the environment
    with pytest.raises(ValueError):
        wandb_mode("cloud")


def test_logger_outside_hydra_is_offline_without_credentials(no_credentials, tmp_path):
    from src.loggers import GANWandbLogger, flatten

    logger = GANWandbLogger(save_dir=str(tmp_path), tags=["regularizer:sn", None, "x" * 80])
    assert logger.wandb_mode == "offline" and logger._wandb_init["mode"] == "offline"
    assert logger._wandb_init["tags"] == ["regularizer:sn", "x" * 64]
    assert flatten({"optim": {"lr": 1e-3, "betas": [0.5, 0.9]}, "seed": 0}) == {"optim/lr": 1e-3, "optim/betas": [0.5, 0.9], "seed": 0}


def test_one_offline_run_per_job_with_config_tags_and_summary_and_no_key(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli("src.train", "-m", "logger=wandb", "logger.mode=offline", "steps=5", "log_every=1", "regularizer=sn,wgan_gp",
                   "callbacks=none", "trainer.enable_progress_bar=false", f"hydra.sweep.dir={sweep}",
                   run_dir=sweep,  # unused by a multirun; run_cli needs one
                   env={"WANDB_API_KEY": FAKE_KEY, "OMP_NUM_THREADS": "1"}, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = {}
    for job in ("0", "1"):
        assert len(list((sweep / job).glob("wandb/offline-run-*/run-*.wandb"))) == 1  # one W&B run per job
        runs[job] = read_offline_run(sweep / job)
    for job, reg, loss in (("0", "sn", "ns"), ("1", "wgan_gp", "wasserstein")):
        r = runs[job]
        summary = json.loads((sweep / job / "summary.json").read_text())
        assert r["run"].run_group == "sweep"  # grouped by the sweep dir
        assert r["run"].display_name == f"regularizer={reg}"  # named after what the sweep varies
        assert {f"regularizer:{reg}", f"loss:{loss}", "setting:toy", "data:toy2d"} <= set(r["run"].tags)
        cfg = r["config"]
        assert cfg["regularizer/name"] == reg and cfg["loss/name"] == loss and cfg["steps"] == 5
        assert cfg["optim/lr"] == summary["lr"] and cfg["hydra/job_num"] == int(job)
        assert {"loss/d", "loss/g"} <= r["history_keys"]
        assert "final/sliced_wasserstein" in r["history_keys"]
        assert "samples/final/_type" in r["history_keys"]  # the final sample plot, logged as an image
        assert r["summary"]["status"] == "completed"
        assert r["summary"]["metrics/sliced_wasserstein"] == pytest.approx(summary["metrics"]["sliced_wasserstein"])
    assert "loss/penalty" in runs["1"]["history_keys"]
    assert runs["0"]["run"].run_id != runs["1"]["run"].run_id
    # the key was in the environment of both jobs; no file of the sweep may hold it
    leaks = [p for p in sweep.rglob("*") if p.is_file() and FAKE_KEY.encode() in p.read_bytes()]
    assert leaks == []


def test_a_resumed_run_continues_its_wandb_run(no_credentials, tmp_path):
    from src.loggers import GANWandbLogger

    first = GANWandbLogger(save_dir=str(tmp_path), mode="offline")
    assert "id" not in first._wandb_init or first._wandb_init["id"] is None
    (tmp_path / "wandb").mkdir()
    (tmp_path / "wandb" / "run_id").write_text("abc123\n")  # what the first segment's run left
    again = GANWandbLogger(save_dir=str(tmp_path), mode="offline")
    assert again._wandb_init["id"] == "abc123" and again._wandb_init["resume"] == "allow"
