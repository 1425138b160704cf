"""Each loss against a hand computation on fixed logits."""
import math

import pytest
import torch

from src.errors import ConfigError
from src.losses import get_loss

REAL = torch.tensor([2.0, -1.0, 0.5])
FAKE = torch.tensor([-3.0, 0.0, 1.5])


def sig(x):
    return 1 / (1 + math.exp(-x))


def mean(xs):
    return sum(xs) / len(xs)


def test_ns_and_minimax_d_loss_is_binary_cross_entropy():
    expected = mean([-math.log(sig(r)) for r in REAL.tolist()]) + mean([-math.log(1 - sig(f)) for f in FAKE.tolist()])
    for name in ("ns", "minimax"):
        assert get_loss(name).d_loss(REAL, FAKE).item() == pytest.approx(expected, rel=1e-6)


def test_ns_generator_loss():
    expected = mean([-math.log(sig(f)) for f in FAKE.tolist()])
    assert get_loss("ns").g_loss(FAKE).item() == pytest.approx(expected, rel=1e-6)


def test_minimax_generator_loss():
    expected = mean([math.log(1 - sig(f)) for f in FAKE.tolist()])
    assert get_loss("minimax").g_loss(FAKE).item() == pytest.approx(expected, rel=1e-6)


def test_hinge():
    expected_d = mean([max(0, 1 - r) for r in REAL.tolist()]) + mean([max(0, 1 + f) for f in FAKE.tolist()])
    assert get_loss("hinge").d_loss(REAL, FAKE).item() == pytest.approx(expected_d, rel=1e-6)
    assert get_loss("hinge").g_loss(FAKE).item() == pytest.approx(-mean(FAKE.tolist()), rel=1e-6)


def test_wasserstein():
    assert get_loss("wasserstein").d_loss(REAL, FAKE).item() == pytest.approx(mean(FAKE.tolist()) - mean(REAL.tolist()), rel=1e-6)
    assert get_loss("wasserstein").g_loss(FAKE).item() == pytest.approx(-mean(FAKE.tolist()), rel=1e-6)


def test_ns_is_stable_for_large_logits():
    big = torch.tensor([200.0]), torch.tensor([-200.0])
    assert torch.isfinite(get_loss("ns").d_loss(*big))
    assert get_loss("ns").d_loss(*big).item() == pytest.approx(0.0, abs=1e-6)


def test_unknown_loss_names_valid_ones():
    with pytest.raises(ConfigError, match="loss='foo'.*valid: ns, minimax, hinge, wasserstein"):
        get_loss("foo")
