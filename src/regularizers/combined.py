"""A weight-side method and a penalty at once (``regularizer=sn penalty=r1``), as one Regularizer.

Kurach et al. 2019 found SN together with a gradient penalty to matter; this lets any weight-side
method (sn, sn_conv, weight_norm, weight_clip, the norm baselines, ...) carry any penalty (wgan_gp,
wgan_lp, dragan, r1, r2, orthonormal). The module sees one regularizer:

- wrap: the penalty's wrap first (only orthonormal has one: its orthonormal init of the raw
  weights), then the weight-side method's (SN's parametrization then normalizes those weights);
- penalty: the sum of both parts' terms (None where both are None: lazy R1 off its schedule);
- after_d_step: the weight-side method's projection (weight clipping), then the penalty's (none has one);
- state_dict: both parts' state (the penalty's random stream, the lazy counter, ...).
"""
import torch
from torch import nn

from .base import Regularizer


def is_penalty(regularizer: Regularizer) -> bool:
    """A penalty-type method: one that adds a term to D's loss (wgan_gp, wgan_lp, dragan, r1, r2,
    orthonormal); every other method acts on D's weights or layers (weight-side) or does nothing."""
    return type(regularizer).penalty is not Regularizer.penalty


class Combined(Regularizer):
    def __init__(self, weight_side: Regularizer, penalty: Regularizer):
        self.weight_side, self.penalty_part = weight_side, penalty
        # the method's name in summaries, loggers and the report: "sn+r1"; "r1" alone next to none
        self.name = penalty.name if weight_side.name == "none" else f"{weight_side.name}+{penalty.name}"
        # loss=auto: the weight-side method's usual loss, unless there is none (then the penalty's)
        self.default_loss = penalty.default_loss if weight_side.name == "none" else weight_side.default_loss

    def wrap(self, discriminator: nn.Module, example_input: torch.Tensor) -> None:
        self.penalty_part.wrap(discriminator, example_input)
        self.weight_side.wrap(discriminator, example_input)

    def penalty(self, discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor | None:
        terms = [t for t in (self.weight_side.penalty(discriminator, real, fake),
                             self.penalty_part.penalty(discriminator, real, fake)) if t is not None]
        return sum(terms[1:], terms[0]) if terms else None

    def input_grad_at(self) -> str | None:
        """The penalty part's shared-forward batch (R1/R2, see r1.py) when the weight-side part adds no term."""
        if type(self.weight_side).penalty is not Regularizer.penalty:
            return None
        return getattr(self.penalty_part, "input_grad_at", lambda: None)()

    def penalty_from_forward(self, discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                             d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor | None:
        shared = getattr(self.penalty_part, "penalty_from_forward", None)
        if shared is None:
            return self.penalty(discriminator, real, fake)
        terms = [t for t in (self.weight_side.penalty(discriminator, real, fake),
                             shared(discriminator, real, fake, d_real, d_fake)) if t is not None]
        return sum(terms[1:], terms[0]) if terms else None

    def after_d_step(self, discriminator: nn.Module) -> None:
        self.weight_side.after_d_step(discriminator)
        self.penalty_part.after_d_step(discriminator)

    def state_dict(self) -> dict:
        return {"regularizer": self.weight_side.state_dict(), "penalty": self.penalty_part.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if state:
            self.weight_side.load_state_dict(state.get("regularizer", {}))
            self.penalty_part.load_state_dict(state.get("penalty", {}))

    def describe(self) -> dict:
        """{weight-side name: its hyperparameters, penalty name: its hyperparameters}."""
        return {self.weight_side.name: self.weight_side.describe(), self.penalty_part.name: self.penalty_part.describe()}
