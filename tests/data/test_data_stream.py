"""Streaming real data from an image folder (data.in_memory=false): same images, fresh batches, exact resume."""
import itertools
import os
import subprocess
import sys

import pytest
import torch
from torch.utils.data import DataLoader
from tests.helpers import REPO, assert_same_checkpoint, capture_modules, compose_config, make_image_folder, run_cli, train_in_process

from src.data import GANDataModule
from src.data.stream import RealBatches, ShuffledStream
from src.errors import ConfigError
from src.validation import validate

N_IMAGES = 24
TRAIN = ["data=image_folder", "data.resolution=16", "data.batch_size=4", "optim.n_dis=2", "metrics=none",
         "samples.every=0", "logger=none", "callbacks=none", "trainer.deterministic=true"]
STREAM = ["data.in_memory=false", "data.num_workers=2"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("stream") / "images", n=N_IMAGES)


def datamodules(folder, resolution, **kw):
    common = dict(name="image_folder", root=str(folder), resolution=resolution, channels=kw.pop("channels", 3), batch_size=4)
    return GANDataModule(**common, **kw).load(), GANDataModule(**common, in_memory=False, **kw).load()


# ---- the images ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("resolution,channels", [(16, 3), (48, 3), (16, 1)])  # box down-, bicubic up-sampling, grey
def test_streamed_images_equal_the_in_memory_ones(folder, resolution, channels):
    memory, stream = datamodules(folder, resolution, channels=channels, cache=False)
    assert stream.data.shape == memory.data.shape == (N_IMAGES, channels, resolution, resolution)
    for i in range(N_IMAGES):
        assert torch.equal(stream.data[i], memory.data[i]), i
    idx = torch.tensor([5, 0, 5, 23])
    assert torch.equal(stream.data[idx], memory.data[idx])  # what the evaluators' real subset uses


def test_streamed_batches_are_the_sampled_files_whatever_the_workers(folder):
    memory, stream = datamodules(folder, 16)  # the in-memory side through its on-disk cache, as training loads it
    per_step, start = 10, 7  # batches straddle passes over the 24 files
    sampler = ShuffledStream(N_IMAGES, seed=3, start=start)
    expected = [memory.data[sampler.take(start + k * per_step, per_step)] for k in range(5)]
    for workers in (0, 2):
        loader = DataLoader(RealBatches(stream.data, ShuffledStream(N_IMAGES, 3, start), per_step), batch_size=None,
                            num_workers=workers, persistent_workers=workers > 0, prefetch_factor=2 if workers else None)
        batches = list(itertools.islice(loader, 5))
        for k, (batch, want) in enumerate(zip(batches, expected)):
            assert batch["real"].dtype == torch.uint8 and torch.equal(batch["real"], want), (workers, k)
            assert batch["end"] == start + (k + 1) * per_step


def test_sampler_draws_without_replacement_a_fresh_permutation_per_pass():
    n = 10
    seq = list(itertools.islice(iter(ShuffledStream(n, seed=1)), 3 * n))
    passes = [seq[i * n:(i + 1) * n] for i in range(3)]
    assert all(sorted(p) == list(range(n)) for p in passes)  # every file once per pass
    assert passes[0] != passes[1] != passes[2]  # reshuffled each pass
    assert list(itertools.islice(iter(ShuffledStream(n, seed=1, start=13)), 12)) == seq[13:25]  # restartable anywhere
    assert ShuffledStream(n, seed=1).take(7, 9) == seq[7:16]
    assert list(itertools.islice(iter(ShuffledStream(n, seed=2)), n)) != passes[0]  # the seed matters


# ---- training -------------------------------------------------------------------------------------------

def test_streamed_training_run_feeds_every_d_update_a_fresh_streamed_batch(folder, tmp_path, monkeypatch):
    seen = []

    def record(module):
        original = module.real_batches

        def recording(batch):
            for real in original(batch):
                seen.append(real.detach().clone())
                yield real
        module.real_batches = recording

    capture_modules(monkeypatch, record)
    steps, n_dis, bs = 4, 2, 4
    summary = train_in_process([*TRAIN, *STREAM, f"data.root={folder}", f"steps={steps}", "checkpoint.every=0"], tmp_path / "run")
    assert summary["status"] == "completed", summary["error"]
    assert summary["steps"] == steps
    memory, _ = datamodules(folder, 16)
    sampler = ShuffledStream(N_IMAGES, seed=0)  # the run's seed, rank 0
    assert len(seen) == steps * n_dis
    for i, real in enumerate(seen):
        want = memory.to_float(memory.data[sampler.take(i * bs, bs)])
        assert torch.equal(real, want), i  # D update i got the i-th batch of the stream, as floats in [-1, 1]
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["GANDataModule"] == {"stream_position": steps * n_dis * bs}  # consumed, not merely prefetched


def _final_state(run_dir):
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)


def _assert_same_run(a, b):
    assert a["GANDataModule"] == b["GANDataModule"]  # the stream's position, too
    assert_same_checkpoint(a, b)


def test_stopped_streamed_run_resumes_exactly(folder, tmp_path):
    args = [*TRAIN, *STREAM, f"data.root={folder}", "checkpoint.every=0"]
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    assert train_in_process([*args, "steps=8"], straight)["status"] == "completed"
    # stop after 3 steps (the loader's workers have prefetched further), then continue in the same run dir
    assert train_in_process([*args, "steps=3"], stopped)["status"] == "completed"
    assert _final_state(stopped)["GANDataModule"] == {"stream_position": 3 * 2 * 4}
    assert train_in_process([*args, "steps=8"], stopped)["status"] == "completed"
    _assert_same_run(_final_state(straight), _final_state(stopped))


from tests.helpers import KILLER  # noqa: E402  (the same self-SIGKILL at a known generator step)


@pytest.mark.slow
def test_sigkilled_streamed_run_resumes_bit_for_bit(folder, tmp_path):
    args = [*TRAIN, *STREAM, f"data.root={folder}", "steps=12", "checkpoint.every=4", "trainer.enable_progress_bar=false"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}

    def train(run_dir, kill_at=None):
        cmd = [sys.executable, "-m", "src.train"] if kill_at is None else [sys.executable, "-c", KILLER]
        extra = {} if kill_at is None else {"KILL_AT_STEP": str(kill_at)}
        return subprocess.run([*cmd, *args, f"hydra.run.dir={run_dir}"], cwd=REPO, env={**env, **extra},
                              capture_output=True, text=True, timeout=600)

    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert train(straight).returncode == 0
    assert train(killed, kill_at=7).returncode == -9
    assert _final_state(killed)["GANDataModule"] == {"stream_position": 4 * 2 * 4}  # the step-4 checkpoint
    assert train(killed).returncode == 0
    _assert_same_run(_final_state(straight), _final_state(killed))


# ---- bad values -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("overrides,needles", [
    (["data=image_folder", "data.root=/x", "data.num_workers=-1"], ["data.num_workers=-1", "non-negative integer"]),
    (["data=image_folder", "data.root=/x", "data.num_workers=1.5"], ["data.num_workers=1.5", "non-negative integer"]),
    (["data=image_folder", "data.root=/x", "data.in_memory=maybe"], ["data.in_memory='maybe'", "true", "false"]),
    (["data=image_folder", "data.root=/x", "data.in_memory=1"], ["data.in_memory=1", "true", "false"]),
    (["data=image_folder", "data.root=/x", "data.prefetch_factor=0"], ["data.prefetch_factor=0", "positive integer"]),
    (["data=digits", "data.in_memory=false"], ["data.in_memory=false", "data=digits", "image_folder"]),
    (["data=toy2d", "data.in_memory=false"], ["data.in_memory=false", "data=toy2d", "image_folder"]),
    (["data=cifar10", "data.in_memory=false"], ["data.in_memory=false", "data=cifar10", "image_folder"]),
    (["data=stl10", "data.in_memory=false"], ["data.in_memory=false", "data=stl10", "image_folder"]),
])
def test_bad_stream_options_are_one_line_config_errors(overrides, needles):
    cfg = compose_config(overrides)
    with pytest.raises(ConfigError) as info:
        validate(cfg)
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message
    with pytest.raises(ConfigError):  # the datamodule refuses them too (src.evaluate builds one from a checkpoint's config)
        GANDataModule(**{k: v for k, v in cfg.data.items() if k != "steps"})


def test_bad_stream_option_on_the_command_line(folder, tmp_path):
    result = run_cli("src.train", "data=image_folder", f"data.root={folder}", "data.num_workers=-2", "steps=1", "metrics=none",
                     run_dir=tmp_path / "run")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == ("error: data.num_workers=-2 is invalid; it must be a non-negative integer "
                                                      "(0 decodes in the training process)")
    assert result.summary["status"] == "failed"
