"""The regularizer interface: wrap / penalty / after the D step (docs/design.md).

The Lightning module calls only these three points, so adding a regularizer is one file in this
package plus one config in conf/regularizer/.
"""
import math

import torch
from torch import nn

from ..errors import ConfigError


class Regularizer:
    """Base class: every hook is a no-op; subclasses implement what they need.

    Attributes:
        name: the config option name (``regularizer=NAME``).
        default_loss: the loss this method is normally paired with; an explicit ``loss=`` wins.
    """

    name = "base"
    default_loss = "ns"

    def wrap(self, discriminator: nn.Module, example_input: torch.Tensor) -> None:
        """Change how D's layers compute their weights (once, before training; in place).

        ``example_input`` is a small real batch, for regularizers that need the layers' input sizes.
        """

    def penalty(self, discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor | None:
        """A term added to D's loss, or None."""
        return None

    def input_grad_at(self) -> str | None:
        """"real" / "fake": this D update's penalty is a function of D's input gradient at that batch and
        can take it from the loss's own forward of D (run with requires_grad); None: penalty() as usual."""
        return None

    def penalty_from_forward(self, discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                             d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor | None:
        """The penalty given D's outputs on the batches (called when input_grad_at() named one)."""
        return self.penalty(discriminator, real, fake)

    def after_d_step(self, discriminator: nn.Module) -> None:
        """A projection of D's weights after each D optimizer step."""

    # helpers for subclasses ----------------------------------------------------------------------------
    @staticmethod
    def require_positive(name: str, value, integer: bool = False, group: str = "regularizer") -> None:
        """A finite positive number (an int-typed one where ``integer``): ``c=inf`` would train an
        unconstrained D and call it clipped, ``iterations=2.0`` would break range()."""
        kind = "a positive integer" if integer else "a positive number"
        if isinstance(value, float) and not math.isfinite(value):
            kind = "a finite positive number"
        if integer:
            ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
        else:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
        if not ok:
            raise ConfigError(f"{group}.{name}={value!r} is invalid; it must be {kind}")

    def state_dict(self) -> dict:
        """Extra state to checkpoint (parametrization buffers live in D's own state dict)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def describe(self) -> dict:
        """Hyperparameters for summaries and loggers."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_") and isinstance(v, (int, float, str, bool))}


class NormSlotRegularizer(Regularizer):
    """Base of the normalization baselines: fill every NormSlot of D with ``make_norm``."""

    def make_norm(self, num_features: int, kind: str) -> nn.Module:
        raise NotImplementedError

    def wrap(self, discriminator: nn.Module, example_input: torch.Tensor) -> None:
        from ..networks.norm_slot import replace_norm_slots

        param = next(discriminator.parameters(), None)
        device = param.device if param is not None else None
        count = replace_norm_slots(discriminator, lambda slot: self.make_norm(slot.num_features, slot.kind).to(device))
        if count == 0:
            raise ConfigError(f"regularizer={self.name} cannot apply to this discriminator ({type(discriminator).__name__}): "
                              "it has no NormSlot where a normalization layer can go; use an arch with slots (mlp, standard_cnn, resnet)")


def apply_output_gain(discriminator: nn.Module, gain: float) -> None:
    """D(x) -> gain * D(x), a fixed temperature on D's logits: a Lipschitz target K = gain for the
    normalizations that bound every layer by 1. docs/findings.md (section 7) shows why it matters:
    conv-true SN bounds D by 1 but leaves it ~140x below that bound, and a gain restores the logit
    scale reshaped SN gets by accident. The bounds in src.spectral read ``lipschitz_output_gain``."""
    if gain == 1.0:
        return
    discriminator.register_forward_hook(lambda module, args, out: out * gain)
    discriminator.lipschitz_output_gain = float(gain)
