"""What the gradient penalties (wgan_gp, wgan_lp, dragan, r1, r2) share: the input gradient in float32,
the penalty terms, and (for those that draw random numbers) their own random stream.

The penalty's random numbers (interpolation weights, perturbations) come from a torch.Generator
owned by the regularizer, on the batch's device, seeded from the run's seed (torch.initial_seed()
at construction: src.train seeds before building the regularizer) and checkpointed through
Regularizer.state_dict, so a resumed run draws exactly what the uninterrupted one would have.
"""
import torch
from torch import nn

from .base import Regularizer

_SEED_SALT = 0x9E3779B97F4A7C15  # decorrelates this stream from the module's own (seeded with the run seed)


def input_gradient(discriminator: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """grad_x D(x) per sample, flattened to (batch, features), in float32 and differentiable in D's
    parameters (create_graph): the part every gradient penalty shares.

    Computed in float32 even under bf16 autocast: D's forward at x, the input gradient and (later)
    the double backward. A bf16 input gradient carries ~3 significant digits, which would put a 1%
    noise floor under a penalty that pulls |grad| towards 1 (or towards 0 for R1/R2); the float32
    pass costs the penalty's share of D's compute (about a third with wgan_gp) at full precision.
    """
    with torch.autocast(x.device.type, enabled=False):
        x = x.detach().float().requires_grad_(True)
        out = discriminator(x)
        (grad,) = torch.autograd.grad(out.float().sum(), x, create_graph=True)
        return grad.flatten(1)


def gradient_norm_penalty(discriminator: nn.Module, x_hat: torch.Tensor, target: float = 1.0,
                          one_sided: bool = False) -> torch.Tensor:
    """mean over the batch of (|grad_x D(x_hat)|_2 - target)^2, differentiable in D's parameters;
    with ``one_sided`` only norms above the target are penalised: max(0, |grad| - target)^2 (WGAN-LP).
    Float32 under autocast (see input_gradient)."""
    grad = input_gradient(discriminator, x_hat)
    with torch.autocast(grad.device.type, enabled=False):
        # the epsilon keeps the norm's gradient finite where D is flat (|grad| = 0)
        excess = torch.sqrt(grad.pow(2).sum(dim=1) + 1e-12) - target
        if one_sided:
            excess = excess.clamp(min=0)
        return excess.pow(2).mean()


def squared_gradient_norm(discriminator: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """mean over the batch of |grad_x D(x)|_2^2 (zero-centred: R1 at real data, R2 at generated data);
    no square root, so no epsilon. Float32 under autocast (see input_gradient)."""
    grad = input_gradient(discriminator, x)
    with torch.autocast(grad.device.type, enabled=False):
        return grad.pow(2).sum(dim=1).mean()


class RandomPenalty(Regularizer):
    """Base of penalties that draw random numbers: a checkpointed generator on the batch's device."""

    def __init__(self):
        self._seed = (torch.initial_seed() ^ _SEED_SALT) & 0x7FFF_FFFF_FFFF_FFFF
        self._gen: torch.Generator | None = None
        self._pending: dict | None = None

    def generator(self, device: torch.device) -> torch.Generator:
        device = torch.device(device)
        if self._gen is None or self._gen.device != device:
            gen = torch.Generator(device=device)
            gen.manual_seed(self._seed)
            state = self._pending
            if state is not None and state.get("device_type") == device.type:
                gen.set_state(state["rng_state"])
            # a checkpoint from another device type (CPU <-> GPU) cannot restore this stream: it restarts from the seed
            self._gen, self._pending = gen, None
        return self._gen

    def rand(self, shape, like: torch.Tensor) -> torch.Tensor:
        """U[0, 1) of ``shape`` in ``like``'s dtype (at least float32) on its device."""
        dtype = like.dtype if like.dtype in (torch.float32, torch.float64) else torch.float32
        return torch.rand(shape, generator=self.generator(like.device), device=like.device, dtype=dtype)

    def state_dict(self) -> dict:
        if self._gen is not None:
            return {"rng_state": self._gen.get_state(), "device_type": self._gen.device.type, "seed": self._seed}
        return dict(self._pending or {}, seed=self._seed)

    def load_state_dict(self, state: dict) -> None:
        if not state:
            return
        self._seed = int(state.get("seed", self._seed))
        self._gen = None  # rebuilt on the next draw, on the batch's device
        self._pending = state if "rng_state" in state else None
