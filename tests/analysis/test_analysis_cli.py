"""The analyses' command lines: --help states every default."""
import importlib

import pytest

EXPECTED = {
    "critic_landscapes": ["generator updates per run (default: 500)", "(default: 1)"],
    "power_iteration_convergence": ["(default: [64, 32])", "random convolutions per size (default: 3)",
                                    "(default: 300)"],
    "training_spectra": ["(default: sn,sn_conv,weight_clip,weight_norm,wgan_gp)", "(default: 500)", "(default: 25)",
                         "(default: 250)"],
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_help_shows_defaults(name, capsys):
    module = importlib.import_module(f"src.analysis.{name}")
    with pytest.raises(SystemExit) as exc:
        module.main(["--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for needed in EXPECTED[name]:
        assert needed in text, (needed, text)
    assert "(default: None)" not in text  # a required --out or an unset option is not "None"
