"""R1 gradient penalty (Mescheder, Geiger, Nowozin 2018): gamma/2 * E_real |grad_x D(x)|^2.

Zero-centred at the real data, no interpolation: it pushes D flat on the data manifold. Lazy
application (StyleGAN2, Karras et al. 2020): with ``every = k`` the term is added only on every k-th
D update, with gamma scaled by k so its average strength is unchanged; on the other D updates the
penalty is None (nothing is computed). The D-update counter that decides which updates carry it is
checkpointed (state_dict), so a resumed run keeps the same schedule. The first D update carries it.
"""
import torch
from torch import nn

from .base import Regularizer
from .gradient_penalty import squared_gradient_norm


class R1(Regularizer):
    name = "r1"
    default_loss = "ns"

    def __init__(self, gamma: float = 10.0, every: int = 1):
        self.require_positive("gamma", gamma)
        self.require_positive("every", every, integer=True)
        self.gamma = float(gamma)
        self.every = int(every)
        self._d_updates = 0  # penalty() calls so far = D updates done

    def at(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """The batch whose input gradient is penalised: the real one."""
        return real

    def penalty(self, discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor | None:
        due = self._d_updates % self.every == 0
        self._d_updates += 1
        if not due:
            return None
        return (0.5 * self.gamma * self.every) * squared_gradient_norm(discriminator, self.at(real, fake))

    def state_dict(self) -> dict:
        return {"d_updates": self._d_updates}

    def load_state_dict(self, state: dict) -> None:
        if state:
            self._d_updates = int(state.get("d_updates", 0))
