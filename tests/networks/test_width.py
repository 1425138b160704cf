"""arch.width: every channel count of the image networks times the multiplier; 1.0 is the paper's network."""
import pytest
import torch

from src.errors import ConfigError
from src.networks import resnet, standard_cnn
from tests.helpers import train_in_process


def convs(module):
    return [m for m in module.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]


def test_width_scales_every_channel_count_and_one_is_the_paper_network():
    torch.manual_seed(0)
    g1, d1 = standard_cnn.build(128, 32, 3)
    torch.manual_seed(0)
    g_default, d_default = standard_cnn.build(128, 32, 3, width=1.0)
    for a, b in zip([*g1.state_dict().values(), *d1.state_dict().values()],
                    [*g_default.state_dict().values(), *d_default.state_dict().values()]):
        assert torch.equal(a, b)
    assert [c.out_channels for c in convs(d1)] == [64, 64, 128, 128, 256, 256, 512]  # SN paper Table 3

    g, d = standard_cnn.build(128, 32, 3, width=0.25)
    assert [c.out_channels for c in convs(d)] == [16, 16, 32, 32, 64, 64, 128]
    assert [c.out_channels for c in convs(g)] == [64, 32, 16, 3] and g.dense.out_features == 128 * 4 * 4
    assert d.dense.in_features == 128 * 4 * 4
    assert g(torch.randn(2, 128)).shape == (2, 3, 32, 32) and d(torch.randn(2, 3, 32, 32)).shape == (2,)
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert 0.04 < n(d) / n(d1) < 0.08  # convolutions dominate: ~width^2

    g, d = resnet.build(128, 32, 3, width=0.5)
    assert max(c.out_channels for c in convs(d)) == 64 and max(c.out_channels for c in convs(g)) == 128


@pytest.mark.parametrize("width", [0, -1.0, float("inf"), "wide", True])
def test_bad_width_is_one_line(width):
    with pytest.raises(ConfigError, match=r"arch.width=.* is invalid; it must be a positive number"):
        standard_cnn.build(128, 32, 3, width=width)


def test_a_narrow_run_trains_and_resume_refuses_another_width(tmp_path):
    run = tmp_path / "run"
    args = ["data=digits", "arch.width=0.25", "steps=2", "metrics=none", "callbacks=none", "samples.every=0"]
    assert train_in_process(args, run)["status"] == "completed"
    again = train_in_process([*args[:1], "arch.width=0.5", *args[2:3], "steps=4", *args[3:]], run)
    assert again["status"] == "failed" and "arch.width=0.25" in again["error"] and "arch.width=0.5" in again["error"]
