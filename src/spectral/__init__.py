"""Spectral tools: power iteration (reshaped and conv-true), exact singular values, Lipschitz bounds."""
from .power_iteration import conv_adjoint, conv_forward, conv_power_iteration, reshaped_power_iteration

__all__ = ["conv_adjoint", "conv_forward", "conv_power_iteration", "reshaped_power_iteration"]
