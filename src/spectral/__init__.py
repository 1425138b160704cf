"""Spectral tools: power iteration (reshaped and conv-true), exact singular values, Lipschitz bounds.

* ``power_iteration``: reshaped (Miyato) and conv-true power iteration, ``LayerOperator`` (a layer's
  linear map as applied, with adjoint and dense matrix), warm-startable iterations, per-iteration
  traces, converged norms (``operator_norm``).
* ``exact``: exact singular values: the FFT method of Sedghi et al. (circular padding, stride 1), the
  dense operator (any padding/stride, small sizes), rigorous FFT upper bounds for zero padding.
* ``lipschitz``: a discriminator's Lipschitz upper bound (per-layer norms combined by its structure)
  and empirical lower bound (input-gradient norms).
"""
from .exact import (batched_svdvals, conv_norm_bound_fft, conv_norm_fft, conv_singular_values_fft, frequency_matrices,
                    layer_fft_spectrum, layer_singular_values, reshaped_singular_values, torus_size)
from .lipschitz import (input_gradient_norms, layer_input_shapes, layer_norms, lipschitz_bounds, lipschitz_upper_bound,
                        record_input_shapes, weight_layers)
from .power_iteration import (LayerOperator, conv_adjoint, conv_forward, conv_power_iteration,
                              operator_norm, operator_power_iteration, power_iteration_trace, reshaped_power_iteration,
                              reshaped_power_iteration_trace)

__all__ = ["LayerOperator", "batched_svdvals", "layer_fft_spectrum", "torus_size", "conv_adjoint", "conv_forward", "conv_norm_bound_fft", "conv_norm_fft", "conv_power_iteration",
           "conv_singular_values_fft", "frequency_matrices", "input_gradient_norms", "layer_norms",
           "layer_singular_values", "lipschitz_bounds", "lipschitz_upper_bound", "operator_norm", "operator_power_iteration",
           "power_iteration_trace", "record_input_shapes", "layer_input_shapes", "weight_layers", "reshaped_power_iteration", "reshaped_power_iteration_trace",
           "reshaped_singular_values"]
