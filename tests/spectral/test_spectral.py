"""Spectral tools: exact singular values, layer operators, power iteration, Lipschitz bounds, callback."""
import csv
import math

import pytest
import torch
from torch import nn

from src.spectral import (LayerOperator, conv_norm_bound_fft, conv_singular_values_fft, layer_singular_values,
                          lipschitz_bounds, operator_norm, operator_power_iteration, power_iteration_trace,
                          reshaped_power_iteration_trace, reshaped_singular_values)
from src.spectral.lipschitz import input_gradient_norms, lipschitz_upper_bound, record_input_shapes

from tests.helpers import train_in_process


def _conv(c_in, c_out, k, stride=1, padding=1, dilation=1, mode="zeros", seed=0):
    torch.manual_seed(seed)
    return nn.Conv2d(c_in, c_out, k, stride, padding, dilation=dilation, padding_mode=mode).double()


# ---- exact singular values -----------------------------------------------------------------------------
@pytest.mark.parametrize("c_in,c_out,k,n,dilation", [(3, 5, 3, 8, 1), (5, 3, 3, 7, 1), (4, 4, 5, 6, 1), (3, 2, 3, 7, 2),
                                                     (2, 2, 7, 4, 1), (6, 4, 4, 6, 1)])
@pytest.mark.parametrize("method", ["svd", "gram"])
def test_fft_spectrum_equals_dense_operator_for_circular_convolutions(c_in, c_out, k, n, dilation, method):
    # 'same' padding: total (k - 1) * dilation per axis (asymmetric for even k); k=7 on n=4 wraps around
    layer = _conv(c_in, c_out, k, padding="same", dilation=dilation, mode="circular")
    dense = torch.linalg.svdvals(LayerOperator(layer, (c_in, n, n)).dense())
    fft = conv_singular_values_fft(layer.weight, n, dilation, method=method)
    assert fft.shape == dense.shape == (min(c_in, c_out) * n * n,)
    torch.testing.assert_close(fft, dense, atol=1e-5, rtol=0)
    torch.testing.assert_close(layer_singular_values(layer, (c_in, n, n)), dense, atol=1e-5, rtol=0)  # auto -> fft


def test_fft_spectrum_half_and_rectangular_inputs():
    layer = _conv(3, 4, 3, padding=1, mode="circular")
    dense = torch.linalg.svdvals(LayerOperator(layer, (3, 5, 8)).dense())
    torch.testing.assert_close(conv_singular_values_fft(layer.weight, (5, 8)), dense, atol=1e-5, rtol=0)
    vals, mult = conv_singular_values_fft(layer.weight, (5, 8), full=False)
    assert vals.shape == (5, 8 // 2 + 1, 3) and mult.tolist() == [1, 2, 2, 2, 1]  # n=8: columns 0 and 4 are self-conjugate
    assert int((mult.sum() * 5 * 3)) == dense.numel()


def test_fft_gives_a_rigorous_upper_bound_for_zero_padding_and_strides():
    for stride, k in [(1, 3), (2, 4), (2, 3)]:
        layer = _conv(3, 4, k, stride=stride, padding=1)
        exact = float(torch.linalg.svdvals(LayerOperator(layer, (3, 8, 8)).dense())[0])
        assert conv_norm_bound_fft(layer, (3, 8, 8)) >= exact - 1e-12
        assert layer_singular_values(layer, (3, 8, 8), method="auto")[0].item() == pytest.approx(exact)  # auto -> dense
    with pytest.raises(ValueError, match="exact only"):
        layer_singular_values(_conv(3, 4, 3, stride=2, mode="circular"), (3, 8, 8), method="fft")


def test_reshaped_singular_values_gram_matches_svd():
    w = torch.randn(16, 8, 3, 3)
    torch.testing.assert_close(reshaped_singular_values(w), torch.linalg.svdvals(w.flatten(1).double()), atol=1e-10, rtol=0)


# ---- the dense operator is the layer's linear map ------------------------------------------------------
@pytest.mark.parametrize("kwargs", [dict(k=3, stride=1, padding=1), dict(k=4, stride=2, padding=1), dict(k=3, stride=2, padding=0),
                                    dict(k=3, stride=1, padding=1, mode="circular"), dict(k=3, stride=1, padding=2, dilation=2),
                                    dict(k=4, stride=1, padding="same"), dict(k=3, stride=1, padding=1, mode="reflect")])
def test_dense_operator_is_the_convolution(kwargs):
    kwargs = dict(kwargs)
    layer = _conv(3, 5, kwargs.pop("k"), mode=kwargs.pop("mode", "zeros"), **kwargs)
    op = LayerOperator(layer, (3, 7, 7))
    x = torch.randn(1, 3, 7, 7, dtype=torch.float64)
    dense = op.dense()
    expected = layer(x) - layer.bias.view(1, -1, 1, 1)  # the bias is not part of the linear map
    torch.testing.assert_close((dense @ x.flatten()).view(expected.shape), expected)
    y = torch.randn(1, *op.output_shape, dtype=torch.float64)
    torch.testing.assert_close(op.adjoint(y).flatten(), dense.t() @ y.flatten())  # the adjoint is the transpose


def test_linear_operator():
    torch.manual_seed(0)
    layer = nn.Linear(6, 4).double()
    op = LayerOperator(layer, (6,))
    torch.testing.assert_close(op.dense(), layer.weight.detach())
    assert operator_norm(op) == pytest.approx(float(torch.linalg.matrix_norm(layer.weight.detach(), 2)), rel=1e-8)


# ---- power iteration -----------------------------------------------------------------------------------
@pytest.mark.parametrize("stride,k", [(1, 3), (2, 4)])
def test_conv_true_power_iteration_converges_to_the_dense_norm_and_reshaped_does_not(stride, k):
    layer = _conv(4, 6, k, stride=stride, padding=1)
    op = LayerOperator(layer, (4, 8, 8))
    exact = float(torch.linalg.svdvals(op.dense())[0])
    gen = torch.Generator().manual_seed(0)
    sigma, v, _ = operator_power_iteration(op, None, 300, gen)
    assert float(sigma) <= exact + 1e-12  # |A v| never exceeds the norm
    assert float(sigma) == pytest.approx(exact, rel=1e-4)
    assert operator_norm(op, tol=1e-10) == pytest.approx(exact, rel=1e-8)
    reshaped = reshaped_power_iteration_trace(layer.weight, 300, generator=gen)[-1]
    assert abs(float(reshaped) - exact) / exact > 0.05  # converges, but to |W_mat|, another number


def test_power_iteration_warm_start_continues_and_increases():
    op = LayerOperator(_conv(3, 5, 3), (3, 6, 6))
    gen = torch.Generator().manual_seed(1)
    v0 = op.random_input(gen)
    s_a, v_a, _ = operator_power_iteration(op, v0, 20)
    s_b, _, _ = operator_power_iteration(op, v_a, 20)  # warm start from the returned iterate
    s_c, _, _ = operator_power_iteration(op, v0, 40)
    assert float(s_b) == pytest.approx(float(s_c), rel=1e-12)
    trace = power_iteration_trace(op, 40, v0)
    assert float(trace[19]) == pytest.approx(float(s_a), rel=1e-12)
    assert bool((trace[1:] >= trace[:-1] - 1e-12).all())  # |A v_t| is non-decreasing


# ---- Lipschitz bounds ----------------------------------------------------------------------------------
def test_single_linear_layer_bound_is_tight():
    from src.networks.mlp import MLPDiscriminator

    torch.manual_seed(0)
    d = MLPDiscriminator((2,), depth=0)  # flatten -> linear: its Lipschitz constant is |w| everywhere
    x = torch.randn(16, 2)
    b = lipschitz_bounds(d, x, torch.randn(16, 2))
    assert b["upper_valid"]
    assert b["upper"] == pytest.approx(float(d.net[-1].weight.norm()), rel=1e-6)
    assert b["lower"] == pytest.approx(b["upper"], rel=1e-5)


@pytest.mark.parametrize("arch", ["mlp", "standard_cnn", "resnet"])
@pytest.mark.parametrize("sn", [False, True])
def test_empirical_lower_bound_below_product_upper_bound(arch, sn):
    from src.networks import mlp, resnet, standard_cnn
    from src.regularizers.spectral_norm import SpectralNorm

    torch.manual_seed(0)
    if arch == "mlp":
        _, d = mlp.build(8, (2,), hidden=32)
        real, fake = torch.randn(64, 2), torch.randn(64, 2) * 2
    else:
        build = standard_cnn.build if arch == "standard_cnn" else (lambda z, r, c: resnet.build(z, r, c, 16, 16))
        _, d = build(8, 8, 3)
        real, fake = torch.rand(32, 3, 8, 8) * 2 - 1, torch.rand(32, 3, 8, 8) * 2 - 1
    if sn:
        SpectralNorm().wrap(d, real[:2])
    training_flags = [m.training for m in d.modules()]
    b = lipschitz_bounds(d, real, fake, torch.Generator().manual_seed(0))
    assert b["upper_valid"], b["upper_note"]
    assert 0 < b["lower"] <= b["upper"]
    assert set(b["norms_true"]) == set(b["norms_reshaped"]) and len(b["norms_true"]) >= 3
    assert [m.training for m in d.modules()] == training_flags  # eval mode was temporary


def test_bound_flags_layers_it_cannot_bound():
    d = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.ReLU(), nn.Linear(8, 1))
    shapes = record_input_shapes(d, torch.randn(2, 4))
    assert shapes == {"0": (4,), "3": (8,)}
    bound, valid, note = lipschitz_upper_bound(d, {"0": 2.0, "3": 3.0}, shapes)
    assert bound == 6.0 and not valid and "LayerNorm" in note
    d_bn = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 1)).eval()
    d_bn[1].running_var.fill_(0.25)
    bound, valid, _ = lipschitz_upper_bound(d_bn, {"0": 2.0, "3": 3.0})
    assert valid and bound == pytest.approx(6.0 / math.sqrt(0.25 + 1e-5))


def test_input_gradient_norms_per_sample():
    d = nn.Sequential(nn.Flatten(), nn.Linear(3, 1, bias=False))
    with torch.no_grad():
        d[1].weight.copy_(torch.tensor([[3.0, 0.0, 4.0]]))
    assert input_gradient_norms(d, torch.randn(5, 3)).tolist() == pytest.approx([5.0] * 5)


# ---- the training callback -----------------------------------------------------------------------------
def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


TOY = ["steps=30", "metrics=none", "samples.every=0", "checkpoint.every=0", "data.n_points=2000",
       "callbacks.spectral.every=10", "callbacks.spectral.spectrum_every=20"]


def test_callback_writes_csv_columns_plots_and_logger_metrics(tmp_path):
    summary = train_in_process(TOY, tmp_path / "run")
    assert summary["status"] == "completed", summary["error"]
    out = tmp_path / "run" / "spectral"
    rows = _rows(out / "spectral.csv")
    assert [int(r["g_step"]) for r in rows] == [0, 10, 20, 30]
    cols = rows[0].keys()
    layers = [c.split("/")[1] for c in cols if c.endswith("/sigma_true")]
    assert len(layers) == 4  # mlp D: 3 hidden Linear layers + output
    for key in ("spectral/lip_upper", "spectral/lip_lower", "spectral/grad_norm_real_mean", "spectral/grad_norm_fake_max",
                "spectral/grad_norm_interp_mean", f"spectral/{layers[1]}/sigma_reshaped", f"spectral/{layers[1]}/stable_rank"):
        assert key in cols
    for r in rows:
        assert 0 < float(r["spectral/lip_lower"]) <= float(r["spectral/lip_upper"]) * (1 + 1e-4)
        # SN: every effective weight has reshaped norm ~1 once its u has converged
        assert float(r[f"spectral/{layers[2]}/sigma_reshaped"]) == pytest.approx(1.0, abs=0.5)
    spectra = _rows(out / "spectra.csv")
    assert {int(r["g_step"]) for r in spectra} == {0, 20, 30}
    assert {r["kind"] for r in spectra} == {"reshaped"}
    for name in ("sigma.png", "spectra.png", "grad_norms.png"):
        assert (out / name).stat().st_size > 10_000
    logged = _rows(tmp_path / "run" / "logs" / "metrics.csv")  # the CSV logger got the same scalars
    assert sum(1 for r in logged if r.get("spectral/lip_upper")) == 4


def test_callback_does_not_change_training(tmp_path):
    base = ["steps=12", "metrics=none", "samples.every=0", "checkpoint.every=0", "data.n_points=2000", "regularizer=sn"]
    train_in_process(base + ["callbacks.spectral=null"], tmp_path / "off")
    train_in_process(base + ["callbacks.spectral.every=3", "callbacks.spectral.spectrum_every=6"], tmp_path / "on")
    assert not (tmp_path / "off" / "spectral").exists()
    off = torch.load(tmp_path / "off" / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    on = torch.load(tmp_path / "on" / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert off.keys() == on.keys()
    for k in off:  # weights and SN buffers (u, v, sigma) identical: the monitor only reads
        torch.testing.assert_close(on[k], off[k], rtol=0, atol=0, msg=k)


@pytest.mark.parametrize("arch", ["standard_cnn", "resnet"])
def test_callback_on_image_discriminators(tmp_path, arch):
    summary = train_in_process(["data=digits", f"arch={arch}", "steps=2", "metrics=none", "samples.every=0",
                                "checkpoint.every=0", "data.batch_size=16", "callbacks.spectral.every=1",
                                "callbacks.spectral.spectrum_every=2", "callbacks.spectral.n_points=16",
                                "callbacks.spectral.warmup_iterations=20"], tmp_path / "run")
    assert summary["status"] == "completed", summary["error"]
    rows = _rows(tmp_path / "run" / "spectral" / "spectral.csv")
    assert [int(r["g_step"]) for r in rows] == [0, 1, 2]
    final = rows[-1]
    fft = {k: float(v) for k, v in final.items() if k.endswith("/sigma_fft_bound") and v}
    assert len(fft) >= 7  # every convolution got its FFT spectrum at the spectrum step
    for key, bound in fft.items():  # the power-iteration estimate stays below the rigorous FFT bound
        assert float(final[key.replace("sigma_fft_bound", "sigma_true")]) <= bound * (1 + 1e-4)
    assert math.isfinite(float(final["spectral/lip_upper"]))
    assert {r["kind"] for r in _rows(tmp_path / "run" / "spectral" / "spectra.csv")} == {"reshaped", "fft"}


def test_callback_history_survives_resume(tmp_path):
    run = tmp_path / "run"
    args = ["metrics=none", "samples.every=0", "checkpoint.every=0", "data.n_points=2000",
            "callbacks.spectral.every=10", "callbacks.spectral.spectrum_every=0"]
    train_in_process(["steps=20"] + args, run)
    train_in_process(["steps=40"] + args, run)  # the run dir holds last.ckpt: resumes from step 20
    assert [int(r["g_step"]) for r in _rows(run / "spectral" / "spectral.csv")] == [0, 10, 20, 30, 40]


def test_callback_off(tmp_path):
    summary = train_in_process(["steps=3", "metrics=none", "samples.every=0", "checkpoint.every=0", "data.n_points=2000",
                                "callbacks.spectral.every=0"], tmp_path / "run")
    assert summary["status"] == "completed"
    assert not (tmp_path / "run" / "spectral").exists()


# ---- analysis commands ---------------------------------------------------------------------------------
def test_power_iteration_convergence_analysis(tmp_path):
    from src.analysis.power_iteration_convergence import main

    main(["--out", str(tmp_path), "--sizes", "12", "--seeds", "2", "--iters", "60", "--channels", "4"])
    rows = _rows(tmp_path / "summary.csv")
    assert len(rows) == 3 * 2 and (tmp_path / "convergence.png").stat().st_size > 10_000
    for r in rows:
        exact = float(r["exact_norm"])
        assert float(r["fft_torus_bound"]) >= exact - 1e-9  # the rigorous bound holds
        assert float(r["conv_abs_error_at_60"]) < float(r["conv_abs_error_at_1"])  # conv-true converges ...
        assert float(r["reshaped_final_abs_error"]) == pytest.approx(abs(exact - 1.0), abs=2e-3)  # ... reshaped to |W_mat| = 1


@pytest.mark.slow
def test_critic_landscapes_analysis(tmp_path):
    from src.analysis.critic_landscapes import main

    main(["--out", str(tmp_path), "--steps", "5", "--regularizers", "sn,wgan_gp", "data.n_points=2000"])
    rows = _rows(tmp_path / "landscapes.csv")
    assert [r["regularizer"] for r in rows] == ["sn", "wgan_gp"] and all(r["status"] == "completed" for r in rows)
    assert float(rows[0]["d_min"]) <= float(rows[0]["d_max"])
    assert (tmp_path / "landscapes.png").stat().st_size > 10_000 and (tmp_path / "gradient_fields.png").is_file()


def test_training_spectra_analysis_with_output_gain_and_reuse(tmp_path):
    """NAME*GAIN scales D's output: at step 0 (same seed, same weights) both of D's Lipschitz bounds are
    GAIN times those of the plain run; re-plotting the finished runs (--reuse) gives the same summary."""
    from src.analysis.training_spectra import main

    args = ["--out", str(tmp_path), "--regularizers", "sn,sn*0.5", "--steps", "4", "--every", "2", "--spectrum-every", "4",
            "data.n_points=2000"]
    main(args)
    first = _rows(tmp_path / "summary.csv")
    by = {r["regularizer"]: r for r in first}
    assert set(by) == {"sn", "sn_x0.5"} and all(r["status"] == "completed" for r in first)
    for key in ("lip_upper_start", "lip_lower_start"):
        assert float(by["sn_x0.5"][key]) == pytest.approx(0.5 * float(by["sn"][key]), rel=1e-3), key
    assert (tmp_path / "sigma_true.png").is_file() and (tmp_path / "samples.png").is_file()
    main([*args, "--reuse"])  # no training: loaded from the run dirs
    assert _rows(tmp_path / "summary.csv") == first


@pytest.mark.parametrize("name", ["sn", "sn_conv"])
def test_output_gain_scales_d_and_both_bounds(name):
    """regularizer.output_gain=K: D's output is exactly K times the gain-1 D's (same weights), and so are
    the empirical lower bound and the product upper bound; a non-positive gain is refused in one line."""
    import copy

    from src.errors import ConfigError
    from src.networks import standard_cnn
    from src.regularizers.spectral_norm import SpectralNorm
    from src.regularizers.spectral_norm_conv import ConvSpectralNormRegularizer

    cls = SpectralNorm if name == "sn" else ConvSpectralNormRegularizer
    torch.manual_seed(0)
    _, d1 = standard_cnn.build(8, 8, 3)
    d8 = copy.deepcopy(d1)
    real, fake = torch.rand(16, 3, 8, 8) * 2 - 1, torch.rand(16, 3, 8, 8) * 2 - 1
    cls().wrap(d1, real[:2])
    cls(output_gain=8).wrap(d8, real[:2])
    d8.load_state_dict(d1.state_dict())  # same weights and power-iteration buffers
    with torch.no_grad():
        torch.testing.assert_close(d8.eval()(real), 8 * d1.eval()(real))
    b1 = lipschitz_bounds(d1, real, fake, torch.Generator().manual_seed(0), tol=1e-9)
    b8 = lipschitz_bounds(d8, real, fake, torch.Generator().manual_seed(0), tol=1e-9)
    assert b8["upper"] == pytest.approx(8 * b1["upper"], rel=1e-6)
    assert b8["lower"] == pytest.approx(8 * b1["lower"], rel=1e-5)
    assert b8["lower"] <= b8["upper"]
    with pytest.raises(ConfigError, match=r"regularizer.output_gain=0 is invalid; it must be a positive number"):
        cls(output_gain=0)
