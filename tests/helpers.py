"""Helpers shared by the test modules (imported as ``from tests.helpers import ...``); the fixtures are in
conftest.py. Small datasets in their official on-disk formats, the CLI and in-process runners."""
import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
from PIL import Image

import src  # noqa: F401  (registers the OmegaConf resolvers the configs use, as `python -m src.train` does)

REPO = Path(__file__).resolve().parents[1]
# a CLI run's common arguments (fast, no scoring, no monitor) for the bad-input tests
BASE = ["steps=2", "metrics=none", "trainer.enable_progress_bar=false", "callbacks=none"]

# ``python -c KILLER args``: src.train that kills itself (KILL_SIGNAL, default SIGKILL) at generator step
# KILL_AT_STEP, inside the module's hook KILL_HOOK (default training_step)
KILLER = textwrap.dedent("""
    import os, signal, sys
    from src.module import GAN
    hook = os.environ.get("KILL_HOOK", "training_step")
    original = getattr(GAN, hook)
    def signalling(self, *args, **kwargs):
        if self.g_step == int(os.environ["KILL_AT_STEP"]):
            os.kill(os.getpid(), getattr(signal, os.environ.get("KILL_SIGNAL", "SIGKILL")))
        return original(self, *args, **kwargs)
    setattr(GAN, hook, signalling)
    import runpy
    sys.argv = ["src/train.py", *sys.argv[1:]]
    runpy.run_module("src.train", run_name="__main__", alter_sys=True)
""")



def make_cifar10(root: Path, n_per_batch: int = 20, seed: int = 0) -> Path:
    """cifar-10-batches-py with 5 train batches and a test batch in the official pickle format."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        entry = {"batch_label": name, "labels": rng.integers(0, 10, n_per_batch).tolist(),
                 "data": rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8),
                 "filenames": [f"{i}.png" for i in range(n_per_batch)]}
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f)
    return root


def make_stl10(root: Path, n: int = 12, seed: int = 0) -> Path:
    """stl10_binary/{unlabeled,train,test}_X.bin: uint8, N x 3 x 96 x 96, column-major per channel."""
    rng = np.random.default_rng(seed)
    folder = root / "stl10_binary"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("unlabeled_X.bin", "train_X.bin", "test_X.bin"):
        rng.integers(0, 256, (n, 3, 96, 96), dtype=np.uint8).tofile(folder / name)
    return root


def make_image_folder(root: Path, n: int = 24, size: int = 40, seed: int = 0, ext: str = "png") -> Path:
    rng = np.random.default_rng(seed)
    for i in range(n):
        sub = root / f"class{i % 3}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size, size + 6, 3), dtype=np.uint8)).save(sub / f"{i:04d}.{ext}")
    return root


class CLIResult:
    def __init__(self, proc, run_dir):
        self.returncode, self.stdout, self.stderr = proc.returncode, proc.stdout, proc.stderr
        self.run_dir = Path(run_dir) if run_dir is not None else None

    @property
    def summary(self):
        return json.loads((self.run_dir / "summary.json").read_text())


def run_cli(module: str, *args, run_dir=None, timeout=600, env=None, process=None):
    """``python -m module args`` from the repository root, as a user would type it.

    In this process by default (``runpy`` runs the module as ``__main__``: the same entry point, preflight and
    exit codes; a new interpreter would add ~3.5 s of imports to every call). ``process=True`` (or an ``env``)
    starts a real interpreter: for what only a process boundary shows (signals, a multirun's launcher, the
    environment a process starts with); ``timeout`` applies to those."""
    argv = [*map(str, args)] + ([f"hydra.run.dir={run_dir}"] if run_dir is not None else [])
    if process or (process is None and env is not None) or "-m" in argv or not module.startswith("src."):
        cmd = [sys.executable, "-m", module, *argv]
        full_env = {**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})}
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=full_env)
        return CLIResult(proc, run_dir)
    return CLIResult(_run_module_here(module, argv), run_dir)


class _Completed:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def _run_module_here(module: str, argv: list):
    """Run ``python -m module argv`` in this process and put back everything a run changes for the process:
    argv, environment, working directory, signal handlers, logging, warnings filters, torch's threads,
    determinism flag and random states, Hydra's global state. Output is captured as the streams a terminal
    would show (the entry point reconfigures them, so they are real text streams)."""
    import contextlib
    import io
    import logging
    import random
    import runpy
    import signal
    import warnings

    import torch
    from hydra.core.global_hydra import GlobalHydra

    out, err = (io.TextIOWrapper(io.BytesIO(), encoding="utf-8", write_through=True) for _ in range(2))
    saved_argv, saved_env, saved_cwd = list(sys.argv), dict(os.environ), os.getcwd()
    saved_signals = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    root = logging.getLogger()
    loggers = [root, *(lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger))]
    saved_logging = {lg: (list(lg.handlers), lg.level, lg.propagate, lg.disabled) for lg in loggers}
    saved_torch = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(), torch.get_rng_state())
    saved_rng = (random.getstate(), np.random.get_state())
    code = 0
    try:
        os.chdir(REPO)
        os.environ["PYTHONWARNINGS"] = "ignore"
        path = REPO / module.replace(".", "/")
        sys.argv = [str(path / "__main__.py" if path.is_dir() else path.with_suffix(".py")), *argv]
        with warnings.catch_warnings(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            warnings.simplefilter("ignore")
            try:
                runpy.run_module(module, run_name="__main__", alter_sys=True)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
                if not isinstance(exc.code, (int, type(None))):
                    print(exc.code, file=sys.stderr)
    finally:
        # every logger as it was (the entry point and Hydra's logging config rewire root's and Lightning's)
        for lg, (handlers, level, propagate, disabled) in saved_logging.items():
            for handler in lg.handlers:
                if handler not in handlers:
                    handler.close()
            lg.handlers[:] = handlers
            lg.setLevel(level)
            lg.propagate, lg.disabled = propagate, disabled
        for s, handler in saved_signals.items():
            signal.signal(s, handler)
        torch.set_num_threads(saved_torch[0])
        torch.use_deterministic_algorithms(saved_torch[1])
        torch.set_rng_state(saved_torch[2])
        random.setstate(saved_rng[0])
        np.random.set_state(saved_rng[1])
        GlobalHydra.instance().clear()
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        sys.argv = saved_argv
    return _Completed(code, out.buffer.getvalue().decode("utf-8", "replace"),
                      err.buffer.getvalue().decode("utf-8", "replace"))


def compose_config(overrides, run_dir=None):
    """Compose the run config as the CLI would (with Hydra's runtime keys set for run_dir)."""
    from src.assemble import compose

    return compose(overrides, run_dir)


def capture_modules(monkeypatch, hook=None) -> list:
    """The GAN modules src.train assembles, in order (so a test can inspect the trained one); ``hook(module)``,
    when given, runs on each before it trains."""
    import src.assemble

    modules, real_assemble = [], src.assemble.assemble

    def capture(*args, **kwargs):
        run = real_assemble(*args, **kwargs)
        modules.append(run.module)
        if hook is not None:
            hook(run.module)
        return run

    monkeypatch.setattr(src.assemble, "assemble", capture)
    return modules


def train_in_process(overrides, run_dir):
    """Run src.train's run() in this process (faster than the CLI; the CLI tests cover the entry point)."""
    from src.train import run

    cfg = compose_config(["trainer.enable_progress_bar=false", *overrides], run_dir)
    return run(cfg, Path(run_dir))


def assert_user_error(result, *needles):
    assert result.returncode != 0
    lines = [l for l in result.stderr.strip().splitlines() if l.strip()]
    assert lines, "no error message"
    message = lines[-1]
    for needle in needles:
        assert needle in message, message
    assert "Traceback" not in result.stderr
    if result.run_dir is not None and (result.run_dir / "summary.json").exists():
        s = result.summary
        assert s["status"] == "failed" and s["error"]
        assert not (result.run_dir / "checkpoints" / "last.ckpt").exists()


# ---- regularizers through real trainings (test_regularizers_train, test_bjorck) ---------------------------
ARCHS = {
    "mlp": ["data=toy2d", "data.batch_size=32"],
    "standard_cnn": ["data=digits", "arch=standard_cnn", "data.batch_size=16"],
    "resnet": ["data=digits", "arch=resnet", "data.batch_size=16", "arch.g_width=64", "arch.d_width=32"],  # narrower: same structure, faster
}
# the spectral monitor (callbacks=default) is another component's concern and slow at the end of a run
FAST = ["steps=2", "metrics=none", "samples.every=0", "checkpoint.every=0", "logger=none", "callbacks=none"]


def fresh_module(overrides, run_dir, seed: int):
    """A newly built module (another seed, so nothing matches the trained one by accident)."""
    cfg = compose_config(["trainer.enable_progress_bar=false", *overrides, f"seed={seed}"], run_dir)
    from src.assemble import assemble

    return assemble(cfg, run_dir, trainer=False).module


def effective_weights(module):
    import torch

    from src.spectral.lipschitz import weight_layers

    module.D.eval()  # eval: parametrizations read their buffers, no power-iteration update
    try:
        with torch.no_grad():
            return [layer.weight.detach().clone() for layer in weight_layers(module.D).values()]
    finally:
        module.D.train()


def assert_same_checkpoint(a: dict, b: dict):
    """Two Lightning checkpoints of the GAN hold the same training state: step, weights, Adam's second
    moments and the module's own RNG stream (a resumed run against an uninterrupted one)."""
    import torch

    assert a["global_step"] == b["global_step"]
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    for opt_a, opt_b in zip(a["optimizer_states"], b["optimizer_states"]):
        for pid, st in opt_a["state"].items():
            assert torch.equal(st["exp_avg_sq"], opt_b["state"][pid]["exp_avg_sq"])
    assert torch.equal(a["gan_rng_state"], b["gan_rng_state"])
