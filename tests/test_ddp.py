"""Lightning DDP with 2 CPU processes (gloo): trains, evaluates with features gathered from both ranks, and
only rank 0 writes the run's outputs."""
import json
import os
import subprocess
import sys

import pytest

from tests.helpers import REPO, make_image_folder, run_cli

DDP = ["trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false"]
KEYS = ("is_mean", "is_std", "fid", "kid_mean", "kid_std")


@pytest.fixture(scope="session")
def inception_weights(tmp_path_factory):
    from src.metrics.inception import make_random_inception_weights

    path = tmp_path_factory.getbasetemp() / "inception-random.pth"
    return path if path.is_file() else make_random_inception_weights(path, seed=0)


def test_two_process_ddp_on_cpu(tmp_path):
    run = tmp_path / "run"
    result = run_cli("src.train", "steps=6", *DDP, "callbacks=none", "samples.every=3", run_dir=run, process=True)  # DDP starts processes
    assert result.returncode == 0, result.stderr[-3000:]
    s = json.loads((run / "summary.json").read_text())
    assert s["status"] == "completed" and s["steps"] == 6
    assert "modes_covered" in s["metrics"]  # evaluated once, on rank 0
    assert (run / "train_ddp_process_1.log").exists()  # a second process really ran
    assert result.stdout.count("done:") == 1  # one report, from rank 0
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["final.png", "step_0000003.png", "step_0000006.png"]


def test_ddp_image_evaluation_gathers_features_from_both_ranks(tmp_path, inception_weights):
    """FID / IS / KID of a 2-rank DDP run (each rank runs Inception on every other batch, rank 0 gathers) equal
    a single process's scores of the same final generator, computed from scratch by python -m src.evaluate."""
    images = make_image_folder(tmp_path / "images", n=24)
    run = tmp_path / "run"
    # one thread everywhere: the DDP ranks and the single process then run the same CPU kernels
    env = {"OMP_NUM_THREADS": "1", "GANLAB_CACHE": str(tmp_path / "cache-ddp")}
    # 18 fake images in batches of 4 -> 5 batches (the last of 2): rank 0 runs batches 0, 2, 4, rank 1 batches 1, 3;
    # 24 real images -> 6 batches, 3 per rank. metrics.every=2: a periodic evaluation at step 2, the final at 4.
    result = run_cli("src.train", "data=image_folder", f"data.root={images}", "data.batch_size=8", "steps=4", *DDP,
                     "callbacks=none", "logger=csv", "samples.every=2", "checkpoint.every=2", "metrics=fast",
                     f"metrics.inception_weights={inception_weights}", "metrics.n_fake=18", "metrics.batch_size=4",
                     "metrics.is_splits=2", "metrics.kid_subsets=10", "metrics.every=2", run_dir=run, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    s = json.loads((run / "summary.json").read_text())
    assert s["status"] == "completed" and s["steps"] == 4, s["error"]
    assert [h["step"] for h in s["metrics_history"]] == [2, 4]
    assert s["metrics_history"][-1]["fid"] == s["metrics"]["fid"]

    # the work really was split: rank 0 received rank 1's rows, and rank 1's own log says what it ran
    d = s["eval_distributed"]
    assert d["world_size"] == 2 and d["fake_images_per_rank"] == [10, 8] and d["real_images_per_rank"] == [12, 12]
    assert d["real_stats_cache_hit"] is False
    rank1_log = (run / "train_ddp_process_1.log").read_text()
    assert rank1_log.count("generated: rank 1/2 ran the feature network on 2 of 5 batches (8 of 18 images)") == 2
    assert rank1_log.count("rank 1/2 ran the feature network on 3 of 6 batches (12 of 24 images)") == 1  # real, once
    assert list((tmp_path / "cache-ddp" / "inception").glob("*.pt"))  # rank 0 wrote the real-statistics cache

    # only rank 0 reports and writes: one summary, one 'done', the snapshots once, eval/* logged once per evaluation
    assert result.stdout.count("done:") == 1
    assert [p.name for p in run.glob("*summary.json*")] == ["summary.json"]
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["final.png", "step_0000002.png", "step_0000004.png"]
    logged = (run / "logs" / "metrics.csv").read_text().splitlines()
    col = logged[0].split(",").index("eval/fid")
    assert [float(r.split(",")[col]) for r in logged[1:] if r.split(",")[col]] == pytest.approx([h["fid"] for h in s["metrics_history"]])

    # the same final generator (rank 0's checkpoint) scored by one process, real statistics recomputed (own cache)
    out = tmp_path / "single.json"
    single_env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1", "GANLAB_CACHE": str(tmp_path / "cache-1")}
    res = subprocess.run([sys.executable, "-m", "src.evaluate", str(run), "--json", str(out)], cwd=REPO,
                         capture_output=True, text=True, timeout=600, env=single_env)
    assert res.returncode == 0, res.stderr[-3000:]
    single = json.loads(out.read_text())
    assert single["eval_protocol"]["n_fake"] == 18 and single["eval_protocol"]["n_real"] == 24
    assert single["source"]["generator_steps"] == 4
    # Same images, same per-batch Inception calls on one CPU thread, features gathered exactly (float64 carries
    # float32 bit for bit) and accumulated in the same order: the numbers agree to float64 rounding. 1e-6 (not
    # 1e-9) leaves room for BLAS kernels that differ between processes; a generator out of sync between ranks,
    # a dropped or reordered batch changes FID by far more (percent level).
    for key in KEYS:
        assert s["metrics"][key] == pytest.approx(single[key], rel=1e-6, abs=1e-12), key


# ---- the collectives themselves, in 2 spawned gloo processes (no Lightning, a cheap feature network) ----
class _Cheap:
    """A stand-in feature network: 5 'features' and 3 'logits' from the pixels; fails on demand."""

    feature_dim = 5

    def __init__(self, fail_on_rank=None):
        self.fail_on_rank = fail_on_rank

    def __call__(self, batch):
        import torch.distributed as dist

        if self.fail_on_rank is not None and dist.is_initialized() and dist.get_rank() == self.fail_on_rank:
            raise ValueError(f"boom on rank {self.fail_on_rank}")
        x = batch.float().reshape(len(batch), -1)
        return x[:, :5] / 255, x[:, 5:8] / 64


def _batches():
    import torch

    g = torch.Generator().manual_seed(0)
    return [torch.randint(0, 256, (k, 1, 3, 3), dtype=torch.uint8, generator=g) for k in (4, 4, 3, 4, 1)]  # 16 images


def _collective_worker(rank, world, port, out_dir):
    import torch
    import torch.distributed as dist

    from src.errors import ConfigError, UserError
    from src.metrics.distributed import from_rank0, on_all_ranks
    from src.metrics.features import extract

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    report = {}
    stats = extract(_Cheap(), iter(_batches()), 16, 2, "cheap")
    if rank == 0:
        torch.save({"state": {k: v for k, v in vars(stats).items() if isinstance(v, torch.Tensor)},
                    "images_per_rank": stats.images_per_rank}, f"{out_dir}/stats.pt")
    else:
        report["stats_elsewhere"] = stats is None
    for name, call in [("extract_fails_on_rank_1", lambda: extract(_Cheap(fail_on_rank=1), iter(_batches()), 16, 2, "cheap")),
                       ("rank_0_user_error", lambda: from_rank0(lambda: (_ for _ in ()).throw(ConfigError("bad n")))),
                       ("rank_1_fails_before", lambda: on_all_ranks(lambda: 1 / (rank - 1)))]:
        try:
            call()
            report[name] = "no error"
        except Exception as exc:
            report[name] = f"{'user' if isinstance(exc, UserError) else 'internal'} {type(exc).__name__}: {exc}"
    report["after"] = from_rank0(lambda: "still in step")  # the group is usable after the failures
    with open(f"{out_dir}/rank{rank}.json", "w") as f:
        json.dump(report, f)
    dist.destroy_process_group()


def test_gathered_features_equal_one_process_and_errors_reach_every_rank(tmp_path):
    import socket

    import torch
    import torch.multiprocessing as mp

    from src.metrics.features import extract

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_collective_worker, args=(r, 2, port, str(tmp_path))) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    hung = [p.pid for p in procs if p.is_alive()]
    for p in procs:
        if p.is_alive():
            p.kill()
    assert not hung, "a rank hung in a collective"
    assert [p.exitcode for p in procs] == [0, 0]
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2))

    # rank 0 holds exactly the statistics one process accumulates; rank 1 ran batches 1 and 3 (8 images)
    single = extract(_Cheap(), iter(_batches()), 16, 2, "cheap")
    saved = torch.load(tmp_path / "stats.pt", weights_only=True)
    assert saved["images_per_rank"] == [8, 8] and r1["stats_elsewhere"]
    for key, value in saved["state"].items():
        assert torch.equal(value, getattr(single, key)), key

    # an error on one rank makes every rank raise (nobody waits in a collective); user errors stay user errors
    assert r1["extract_fails_on_rank_1"] == "internal ValueError: boom on rank 1"
    assert r0["extract_fails_on_rank_1"].startswith("internal RuntimeError: cheap failed on rank 1")
    assert r0["rank_0_user_error"] == "user ConfigError: bad n"
    assert r1["rank_0_user_error"] == "user UserError: evaluation failed on rank 0: ConfigError: bad n"
    assert r1["rank_1_fails_before"].startswith("internal ZeroDivisionError")
    assert r0["rank_1_fails_before"] == "internal RuntimeError: evaluation failed on rank 1: ZeroDivisionError: division by zero"
    assert r0["after"] == r1["after"] == "still in step"
