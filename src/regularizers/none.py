"""No constraint on D (the unregularized baseline)."""
from .base import Regularizer


class NoRegularizer(Regularizer):
    name = "none"
    default_loss = "ns"
