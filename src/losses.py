"""GAN losses on raw discriminator outputs (logits / critic values); Miyato et al. 2018 notation.

Each loss is a pair (d_loss(real, fake), g_loss(fake)) of batch means.
"""
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from .errors import ConfigError


@dataclass(frozen=True)
class GANLoss:
    name: str
    d_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    g_loss: Callable[[torch.Tensor], torch.Tensor]


def _d_logistic(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    # -log sigmoid(D(x)) - log(1 - sigmoid(D(G(z)))), written with softplus for stability
    return F.softplus(-real).mean() + F.softplus(fake).mean()


LOSSES = {
    # non-saturating: G maximises log D(G(z))
    "ns": GANLoss("ns", _d_logistic, lambda fake: F.softplus(-fake).mean()),
    # minimax: G minimises log(1 - D(G(z)))
    "minimax": GANLoss("minimax", _d_logistic, lambda fake: -F.softplus(fake).mean()),
    "hinge": GANLoss("hinge", lambda real, fake: F.relu(1 - real).mean() + F.relu(1 + fake).mean(), lambda fake: -fake.mean()),
    "wasserstein": GANLoss("wasserstein", lambda real, fake: fake.mean() - real.mean(), lambda fake: -fake.mean()),
}


def get_loss(name: str) -> GANLoss:
    if name not in LOSSES:
        raise ConfigError(f"loss={name!r} is unknown; valid: {', '.join(LOSSES)}")
    return LOSSES[name]
