"""The assembler (src/assemble.py): one call builds every piece of a run from its config, deterministically."""
import torch

from src.assemble import Run, assemble, build_datamodule, build_networks
from src.module import total_optimizer_steps
from tests.helpers import compose_config

TOY = ["steps=7", "optim.n_dis=3", "arch.hidden=32", "data.n_points=500", "logger=none", "samples.every=0",
       "checkpoint.every=0"]


def test_a_run_is_assembled_whole(tmp_path):
    cfg = compose_config(TOY, tmp_path)
    run = assemble(cfg, tmp_path)
    assert isinstance(run, Run)
    assert run.datamodule.data is not None and run.steps_per_fit == 7  # the loader yields one item per generator step
    assert run.module.G is run.generator and run.module.D is run.discriminator
    assert run.module.regularizer is run.regularizer and run.module.gan_loss is run.loss
    assert run.trainer.max_steps == total_optimizer_steps(7, 3)
    assert run.timer in run.trainer.callbacks
    assert type(run.evaluator).__name__ == "ToyEvaluator"
    opt_d, opt_g = run.module.configure_optimizers()[0]
    assert opt_d.defaults["lr"] == cfg.optim.lr and opt_d.defaults["betas"] == (cfg.optim.beta1, cfg.optim.beta2)


def test_the_same_config_builds_the_same_networks(tmp_path):
    a = assemble(compose_config(TOY, tmp_path / "a"), tmp_path / "a", trainer=False)
    b = assemble(compose_config(TOY, tmp_path / "b"), tmp_path / "b", trainer=False)
    assert a.trainer is None and a.callbacks == []
    for (ka, va), (kb, vb) in zip(a.module.state_dict().items(), b.module.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka


def test_evaluate_rebuilds_the_generator_with_the_assemblers_builders(tmp_path):
    cfg = compose_config(TOY, tmp_path)
    run = assemble(cfg, tmp_path, trainer=False)
    dm = build_datamodule(cfg.data)  # what src.evaluate reads back from a checkpoint's run config
    generator, _ = build_networks(cfg.arch, cfg.z_dim, dm)
    generator.load_state_dict(run.generator.state_dict())
    z = torch.randn(5, cfg.z_dim)
    assert torch.equal(generator(z), run.generator(z))


def test_the_mlp_takes_small_images_as_their_sample_shape(tmp_path):
    """arch=mlp on digits (8x8, allowed by validation): G draws (n, 1, 8, 8) images in [-1, 1], D scores them."""
    cfg = compose_config(["data=digits", "arch=mlp", "arch.hidden=32", "metrics=none", "logger=none",
                          "samples.every=0", "checkpoint.every=0"], tmp_path)
    G, D = build_networks(cfg.arch, cfg.z_dim, build_datamodule(cfg.data))
    x = G(torch.randn(5, cfg.z_dim))
    assert x.shape == (5, 1, 8, 8) and float(x.abs().max()) <= 1.0
    assert D(x).shape[0] == 5
