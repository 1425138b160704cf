"""regularizer=bjorck: Björck-Bowie orthonormalization (Anil et al. 2019) as a reparametrization.

Checked against independent computations: torch.linalg.svdvals of each effective weight, the polar
factor U V^T from torch.linalg.svd, and (for convs) the exact singular values of the operator as
applied from src.spectral.exact, which show what the method does not bound."""
import pytest
import torch
from torch import nn

from src.errors import ConfigError
from src.networks.mlp import MLPDiscriminator
from src.networks.standard_cnn import StandardCNNDiscriminator
from src.regularizers import build_regularizer
from src.regularizers.bjorck import Bjorck, bjorck_orthonormalize, scale_bound
from src.spectral.exact import layer_singular_values
from tests.helpers import train_in_process
from tests.helpers import BASE, assert_user_error
from tests.helpers import ARCHS, FAST, effective_weights, fresh_module


def dense_layers(d):
    return [m for m in d.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def assert_orthonormal(d, tol=1e-3):
    for layer in dense_layers(d):
        s = torch.linalg.svdvals(layer.weight.detach().flatten(1).double())
        assert (s - 1).abs().max() < tol, (layer, s.min(), s.max())


@pytest.mark.parametrize("shape", [(6, 17), (17, 6), (9, 9)])
def test_iteration_converges_to_the_polar_factor(shape):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(*shape, generator=g, dtype=torch.float64)
    u, _, vh = torch.linalg.svd(w, full_matrices=False)
    assert torch.allclose(bjorck_orthonormalize(w, 40), u @ vh, atol=1e-8)
    # scaling puts every singular value in (0, 1]: the iteration's basin is (0, sqrt(3))
    assert torch.linalg.matrix_norm(w, 2) <= scale_bound(w) + 1e-12


def test_iteration_is_differentiable():
    w = torch.randn(3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1), requires_grad=True)
    assert torch.autograd.gradcheck(lambda m: bjorck_orthonormalize(m, 30), (w,))


def test_dense_layers_orthonormal_after_wrap_and_after_training_steps():
    torch.manual_seed(0)
    d = MLPDiscriminator((2,), hidden=64)
    Bjorck(iterations=20).wrap(d, torch.randn(4, 2))
    assert_orthonormal(d)
    opt = torch.optim.Adam(d.parameters(), lr=0.02)
    raw = [layer.parametrizations.weight.original for layer in dense_layers(d)]
    start = [r.detach().clone() for r in raw]
    for _ in range(8):
        real, fake = torch.randn(32, 2) + 2, torch.randn(32, 2)
        loss = nn.functional.softplus(-d(real)).mean() + nn.functional.softplus(d(fake)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    # the raw weights moved off orthonormal (so the check below is not trivially true) ...
    assert max(float((torch.linalg.svdvals(r.detach().flatten(1)) - 1).abs().max()) for r in raw) > 0.05
    assert all(not torch.equal(a, r.detach()) for a, r in zip(start, raw))
    # ... and every effective weight is still orthonormal
    assert_orthonormal(d)


def test_convs_reshaped_orthonormal_but_operator_norm_above_one():
    """Björck orthonormalizes W_mat = W.flatten(1); the conv as applied is NOT bounded by 1."""
    torch.manual_seed(0)
    d = StandardCNNDiscriminator(8, 3)
    Bjorck().wrap(d, torch.randn(2, 3, 8, 8))
    assert_orthonormal(d)
    spectra = {name: layer_singular_values(d.get_submodule(name), shape, method="dense").double()
               for name, shape in {"features.0": (3, 8, 8), "features.2": (64, 6, 6), "features.5": (64, 4, 4)}.items()}
    # features.0 is tall (64 x 27): its 9 taps W_a have orthonormal columns and W_a^T W_b = 0, so
    # |conv(x)|^2 = sum_a |x shifted by a|^2: the singular values are sqrt(how many taps cover each
    # input pixel), 3 in the interior; computed independently from a convolution of ones
    first = d.features[0]
    cover = nn.functional.conv_transpose2d(torch.ones(1, 1, 8, 8, dtype=torch.float64), torch.ones(1, 1, 3, 3, dtype=torch.float64),
                                           stride=first.stride, padding=first.padding)
    expect = cover.sqrt().flatten().repeat_interleave(3).sort(descending=True).values
    assert torch.allclose(spectra["features.0"], expect, atol=1e-4)
    # wide layers (orthonormal rows) land between 1 and k / stride (3 and 2 here)
    assert 1.2 < float(spectra["features.5"].max()) <= 3 + 1e-4
    assert 1.0 < float(spectra["features.2"].max()) <= 2 + 1e-4


def test_state_dict_round_trip_keeps_the_effective_weight():
    torch.manual_seed(0)
    a, b = MLPDiscriminator((2,), hidden=16), MLPDiscriminator((2,), hidden=16)
    Bjorck().wrap(a, torch.randn(2, 2))
    Bjorck().wrap(b, torch.randn(2, 2))
    b.load_state_dict(a.state_dict())
    x = torch.randn(5, 2)
    assert torch.equal(a(x), b(x))


@pytest.mark.parametrize("value", [0, -3, 2.5, "abc", True])
def test_bad_iterations_one_line(value):
    with pytest.raises(ConfigError) as err:
        Bjorck(iterations=value)
    assert str(err.value) == f"regularizer.iterations={value!r} is invalid; it must be a positive integer"


def test_config_builds_it():
    from omegaconf import OmegaConf

    reg = build_regularizer(OmegaConf.load("conf/regularizer/bjorck.yaml"))
    assert isinstance(reg, Bjorck) and reg.iterations == 20 and reg.default_loss == "ns"


def test_cli_bad_iterations(cli, tmp_path):
    assert_user_error(cli("src.train", *BASE, "regularizer=bjorck", "regularizer.iterations=0", run_dir=tmp_path / "run"),
                      "regularizer.iterations=0", "positive integer")


@pytest.mark.parametrize("arch", ["standard_cnn", pytest.param("mlp", marks=pytest.mark.slow)])
def test_trains_orthonormal_and_its_checkpoint_loads_back(arch, tmp_path, built):
    """Through the real training loop (parametrize.cached per D update): still orthonormal after
    training, and a fresh D loaded from the checkpoint has the same effective weights."""
    overrides = ["regularizer=bjorck", *ARCHS[arch], *FAST, "steps=3"]
    summary = train_in_process(overrides, tmp_path)
    assert summary["status"] == "completed", summary["error"]
    assert summary["regularizer_params"] == {"iterations": 20}
    trained = built[-1]
    assert_orthonormal(trained.D)
    fresh = fresh_module(overrides, tmp_path / "fresh", seed=1234)
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    fresh.load_state_dict(ckpt["state_dict"])
    for a, b in zip(effective_weights(fresh), effective_weights(trained)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_conv_norms_analysis_writes_its_table(tmp_path, capsys):
    import csv

    from src.analysis.bjorck_conv_norms import main

    main(["--seeds", "0", "--resolution", "8", "--out", str(tmp_path)])
    rows = {r["layer"]: r for r in csv.DictReader(open(tmp_path / "conv_norms.csv"))}
    assert float(rows["features.0"]["operator_norm"]) == pytest.approx(3.0, abs=1e-3)  # tall: exactly k (see above)
    assert float(rows["dense"]["operator_norm"]) == pytest.approx(1.0, abs=1e-4)
    assert all(float(r["reshaped_sigma_min"]) > 0.999 for n, r in rows.items() if n != "product")
    norms = [float(r["operator_norm"]) for n, r in rows.items() if n != "product"]
    assert float(rows["product"]["operator_norm"]) == pytest.approx(torch.tensor(norms).prod().item(), rel=1e-3)
    with pytest.raises(SystemExit):
        main(["--seeds", "a"])
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: --seeds 'a' is invalid")
