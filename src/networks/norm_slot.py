"""Placeholders in D where a regularizer may insert a normalization layer (BN / LN baselines)."""
from torch import nn


class NormSlot(nn.Identity):
    """An identity that records the feature shape a normalization layer at this point would see.

    ``kind`` is "2d" for (N, C, H, W) feature maps and "1d" for (N, C) features. Regularizers such as
    ``batch_norm`` replace every slot of D (see ``replace_norm_slots``); otherwise it costs nothing.
    """

    def __init__(self, num_features: int, kind: str):
        super().__init__()
        self.num_features = num_features
        self.kind = kind

    def extra_repr(self) -> str:
        return f"num_features={self.num_features}, kind={self.kind}"


def replace_norm_slots(module: nn.Module, factory) -> int:
    """Replace every NormSlot below ``module`` by ``factory(slot)``; returns how many were replaced."""
    count = 0
    for name, child in list(module.named_children()):
        if isinstance(child, NormSlot):
            setattr(module, name, factory(child))
            count += 1
        else:
            count += replace_norm_slots(child, factory)
    return count
