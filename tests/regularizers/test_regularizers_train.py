"""Every regularizer through real trainings: every arch, checkpoints that load back, CLI runs, bad input."""
import pytest
import torch
from tests.helpers import ARCHS, FAST, effective_weights, fresh_module, run_cli, train_in_process

from src.regularizers.weight_clip import WeightClip

ALL = ["none", "sn", "sn_conv", "weight_clip", "wgan_gp", "dragan", "weight_norm", "orthonormal", "batch_norm", "layer_norm"]
DEFAULT_LOSS = {"weight_clip": "wasserstein", "wgan_gp": "wasserstein"}


def d_tensors(module):
    return {k: v.detach().clone() for k, v in module.D.state_dict().items()}


def assert_same_state(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], torch.Tensor):
            torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
        else:
            assert a[k] == b[k], k


@pytest.mark.parametrize("arch", list(ARCHS))
@pytest.mark.parametrize("name", ALL)
def test_trains_and_its_checkpoint_loads_back(name, arch, tmp_path, built):
    overrides = [f"regularizer={name}", *ARCHS[arch], *FAST]
    summary = train_in_process(overrides, tmp_path)
    assert summary["status"] == "completed", summary["error"]
    assert (summary["steps"], summary["regularizer"], summary["loss"]) == (2, name, DEFAULT_LOSS.get(name, "ns"))
    trained = built[-1]
    assert trained.g_step == 2

    fresh = fresh_module(overrides, tmp_path / "fresh", seed=1234)
    assert fresh.D.state_dict().keys() == trained.D.state_dict().keys()  # the same parametrizations / inserted layers
    before = d_tensors(fresh)
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    fresh.load_state_dict(ckpt["state_dict"])
    fresh.on_load_checkpoint(ckpt)
    assert any(not torch.equal(before[k], v) for k, v in d_tensors(fresh).items())  # loading changed something
    assert_same_state(d_tensors(fresh), d_tensors(trained))  # weights and buffers (u, v, sigma, BN stats)
    for w_fresh, w_trained in zip(effective_weights(fresh), effective_weights(trained)):
        torch.testing.assert_close(w_fresh, w_trained, rtol=0, atol=0)
    assert_same_state(fresh.regularizer.state_dict(), trained.regularizer.state_dict())
    # training mode continues identically: the next power iteration / batch statistics agree
    x = torch.randn(4, *ckpt_input_shape(arch), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(fresh.D(x), trained.D(x), rtol=1e-6, atol=1e-6)


def ckpt_input_shape(arch):
    return (2,) if arch == "mlp" else (1, 8, 8)


def test_weight_clip_holds_after_every_d_step_and_leaves_g_alone(tmp_path, built, monkeypatch):
    records = []
    original_step = WeightClip.after_d_step

    def recording(self, discriminator):
        if not built:  # the call from wrap, while the module is being built
            original_step(self, discriminator)
            return
        g_before = [p.detach().clone() for p in built[-1].G.parameters()]
        original_step(self, discriminator)
        d_max = max(p.detach().abs().max().item() for p in discriminator.parameters())
        g_same = all(torch.equal(a, b) for a, b in zip(g_before, built[-1].G.parameters()))
        records.append((d_max, g_same))

    monkeypatch.setattr(WeightClip, "after_d_step", recording)
    summary = train_in_process(["regularizer=weight_clip", "regularizer.c=0.02", *ARCHS["standard_cnn"], *FAST, "optim.n_dis=2"], tmp_path)
    assert summary["status"] == "completed", summary["error"]
    assert len(records) == 2 * 2  # after each of the n_dis x steps D updates
    assert all(d_max <= 0.02 for d_max, _ in records)
    assert all(g_same for _, g_same in records)
    g_max = max(p.abs().max().item() for p in built[-1].G.parameters())
    assert g_max > 0.02  # G was never clipped


def test_wgan_gp_resume_continues_the_penalty_stream_exactly(tmp_path, built):
    common = ["regularizer=wgan_gp", *ARCHS["mlp"], "metrics=none", "samples.every=0", "logger=none", "callbacks=none",
              "checkpoint.every=0", "optim.lr_decay=none"]  # a decay over `steps` would differ by design
    straight = train_in_process([*common, "steps=4"], tmp_path / "straight")
    assert straight["status"] == "completed", straight["error"]
    d_straight = d_tensors(built[-1])
    first = train_in_process([*common, "steps=2"], tmp_path / "resumed")
    assert first["status"] == "completed", first["error"]
    resumed = train_in_process([*common, "steps=4"], tmp_path / "resumed")  # the run dir's last.ckpt resumes
    assert resumed["status"] == "completed", resumed["error"]
    assert built[-1].g_step == 4
    for k, v in d_tensors(built[-1]).items():
        torch.testing.assert_close(v, d_straight[k], rtol=1e-6, atol=1e-7, msg=k)


@pytest.mark.parametrize("name,extra,loss", [("sn_conv", [], "ns"), ("wgan_gp", ["loss=ns"], "ns")])
def test_cli_trains(name, extra, loss, tmp_path):
    res = run_cli("src.train", f"regularizer={name}", *extra, *ARCHS["standard_cnn"], *FAST, run_dir=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    summary = res.summary
    assert (summary["status"], summary["regularizer"], summary["loss"], summary["steps"]) == ("completed", name, loss, 2)


def test_cli_rejects_a_zero_penalty_coefficient(tmp_path):
    res = run_cli("src.train", "regularizer=wgan_gp", "regularizer.lam=0", *ARCHS["mlp"], *FAST, run_dir=tmp_path)
    assert res.returncode == 2
    assert "regularizer.lam=0 is invalid; it must be a positive number" in res.stderr
    assert "Traceback" not in res.stderr
    assert res.summary["status"] == "failed" and res.summary["steps"] == 0


@pytest.mark.parametrize("override,message", [
    ("regularizer=weight_clip regularizer.c=-1", "regularizer.c=-1 is invalid; it must be a positive number"),
    ("regularizer=sn regularizer.power_iterations=0", "regularizer.power_iterations=0 is invalid; it must be a positive integer"),
    ("regularizer=sn_conv regularizer.power_iterations=0", "regularizer.power_iterations=0 is invalid; it must be a positive integer"),
    ("regularizer=orthonormal regularizer.coef=-0.1", "regularizer.coef=-0.1 is invalid; it must be a positive number"),
])
def test_bad_hyperparameters_fail_before_training(override, message, tmp_path, built):
    summary = train_in_process([*override.split(), *ARCHS["mlp"], *FAST], tmp_path)
    assert summary["status"] == "failed" and summary["error"] == message
    assert summary.get("error_kind") == "user" and summary["steps"] == 0
    assert built == []  # nothing was built, let alone trained
