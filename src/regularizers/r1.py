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
    batch = "real"  # where the input gradient is taken

    def __init__(self, gamma: float = 10.0, every: int = 1):
        self.require_positive("gamma", gamma)
        self.require_positive("every", every, integer=True)
        self.gamma = float(gamma)
        self.every = int(every)
        self._d_updates = 0  # penalty() calls so far = D updates done

    def at(self, real, fake):
        """Of a (real, fake) pair (batches or D's outputs on them), the one at ``batch``."""
        return real if self.batch == "real" else fake

    def _due(self) -> bool:
        return self._d_updates % self.every == 0

    def penalty(self, discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor | None:
        due = self._due()
        self._d_updates += 1
        if not due:
            return None
        return (0.5 * self.gamma * self.every) * squared_gradient_norm(discriminator, self.at(real, fake))

    # ---- one forward of D for the loss and the penalty (float32 training steps) ---------------------------
    # Written by hand, R1 takes the input gradient from the loss's own forward of D (real batch with
    # requires_grad); a separate forward costs 25-45% more CPU time per D update (docs/benchmarks.md).
    # A training step that supports it asks input_grad_at() which batch to run with requires_grad and
    # hands the loss's outputs to penalty_from_forward(); under autocast the answer is None, so the
    # penalty keeps its own float32 forward (see gradient_penalty.input_gradient).

    def input_grad_at(self) -> str | None:
        """"real" (R1) / "fake" (R2) when this D update carries the penalty in a float32 step: the batch
        to run D on with input gradients on; None otherwise (off the lazy schedule, or under autocast)."""
        if not self._due() or any(torch.is_autocast_enabled(kind) for kind in ("cpu", "cuda")):
            return None
        return self.batch

    def penalty_from_forward(self, discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                             d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor | None:
        """The penalty from the loss's forward of D when that batch requires grad; else penalty()."""
        x, out = self.at(real, fake), self.at(d_real, d_fake)
        if not (x.requires_grad and out.requires_grad and self._due()):
            return self.penalty(discriminator, real, fake)
        self._d_updates += 1
        (grad,) = torch.autograd.grad(out.float().sum(), x, create_graph=True)
        return (0.5 * self.gamma * self.every) * grad.flatten(1).float().pow(2).sum(dim=1).mean()

    def state_dict(self) -> dict:
        return {"d_updates": self._d_updates}

    def load_state_dict(self, state: dict) -> None:
        if state:
            self._d_updates = int(state.get("d_updates", 0))
