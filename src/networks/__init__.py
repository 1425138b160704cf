"""Generators and discriminators: ``mlp`` (2-D / flat data), ``standard_cnn`` and ``resnet`` (SN-GAN)."""
from .norm_slot import NormSlot, replace_norm_slots

__all__ = ["NormSlot", "replace_norm_slots"]
