"""Lipschitz bounds of a whole discriminator: an upper bound from per-layer operator norms, and an
empirical lower bound from input-gradient norms.

* ``record_input_shapes(D, x)``: the input shape of every Linear / Conv2d as applied (forward
  pre-hooks on one forward pass), which the conv-true norms need.
* ``lipschitz_upper_bound(D, norms, shapes)``: combines per-layer norms (any source: converged,
  warm-started power iteration, reshaped) by D's structure, with 1-Lipschitz activations:
  - a chain (mlp, standard_cnn, any nn.Sequential): the product of the norms times the
    Lipschitz constants of eval-mode BatchNorm layers (max |gamma| / sqrt(running_var + eps));
  - the SN-GAN ResNet: per block (main path + shortcut), 2x2 average pooling has norm 1/2, the
    final global sum pooling over h x w has norm sqrt(h w);
  - anything else (unknown modules such as LayerNorm, whose Lipschitz constant depends on its input
    scale): the plain product is returned with ``valid=False``.
  With exact norms this is a true upper bound; with power-iteration estimates (which approach each
  norm from below) it is one up to their convergence.
* ``input_gradient_norms(D, x)``: |grad_x D(x)|_2 per sample. Any such value is a lower bound on
  the Lipschitz constant; ``lipschitz_bounds`` takes the largest over real, generated and
  interpolated points.

Everything runs D in eval mode (restored afterwards): in train mode an SN parametrization would run
an extra power iteration (changing training) and BatchNorm would use batch statistics.
"""
import contextlib
import math

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from .power_iteration import LayerOperator, operator_norm

# modules whose Lipschitz constant is at most 1 (LeakyReLU slopes are checked separately)
_ONE_LIPSCHITZ = (nn.ReLU, nn.Identity, nn.Flatten, nn.Tanh, nn.Dropout, nn.ELU, nn.Hardtanh, nn.Sigmoid)


@contextlib.contextmanager
def eval_mode(module: nn.Module):
    """Temporarily put ``module`` in eval mode (restores each submodule's own flag)."""
    flags = {m: m.training for m in module.modules()}
    module.eval()
    try:
        yield module
    finally:
        for m, flag in flags.items():
            m.training = flag


def _is_internal(name: str) -> bool:
    return "parametrizations" in name.split(".")  # the parametrization modules themselves


def weight_layers(module: nn.Module) -> dict:
    """{name: layer} for every Linear / Conv2d of ``module`` (parametrized ones included)."""
    return {n: m for n, m in module.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d)) and not _is_internal(n)}


def layer_input_shapes(module: nn.Module, example: torch.Tensor) -> dict:
    """{name: [input shapes without the batch dimension, in order of first use]} of each Linear / Conv2d,
    from one no-grad, eval-mode forward of ``example`` (moved to the module's device): the one input-shape
    recorder (a layer applied at several sizes lists each)."""
    shapes, handles = {}, []
    for name, layer in weight_layers(module).items():
        def hook(mod, args, name=name):
            seen = shapes.setdefault(name, [])
            if tuple(args[0].shape[1:]) not in seen:
                seen.append(tuple(args[0].shape[1:]))
        handles.append(layer.register_forward_pre_hook(hook))
    param = next(module.parameters(), None)
    x = example.to(param.device) if param is not None else example
    try:
        with eval_mode(module), torch.no_grad():
            module(x)
    finally:
        for h in handles:
            h.remove()
    return shapes


def record_input_shapes(module: nn.Module, example: torch.Tensor) -> dict:
    """{name: input shape without the batch dimension} of each Linear / Conv2d, from one forward pass of
    ``example[:1]``. A layer applied more than once keeps its first shape."""
    return {name: seen[0] for name, seen in layer_input_shapes(module, example[:1]).items()}


def layer_operators(module: nn.Module, shapes: dict) -> dict:
    """{name: LayerOperator} with each layer's effective weight, read in eval mode."""
    layers = weight_layers(module)
    with eval_mode(module), torch.no_grad():
        return {name: LayerOperator(layers[name], shape) for name, shape in shapes.items()}


def layer_norms(module: nn.Module, example: torch.Tensor, kind: str = "true", tol: float = 1e-6) -> dict:
    """{name: spectral norm} per layer; kind "true" (the operator as applied, Lanczos-converged) or
    "reshaped" (|W.flatten(1)|_2, exact SVD)."""
    shapes = record_input_shapes(module, example)
    ops = layer_operators(module, shapes)
    if kind == "reshaped":
        return {n: float(torch.linalg.matrix_norm(op.weight.flatten(1).double(), 2)) for n, op in ops.items()}
    if kind != "true":
        raise ValueError(f"kind must be 'true' or 'reshaped', not {kind!r}")
    return {n: operator_norm(op, tol=tol) for n, op in ops.items()}


def _factor(module: nn.Module) -> float | None:
    """Lipschitz constant of a non-weight module in eval mode, or None when it is not bounded/known."""
    if isinstance(module, _ONE_LIPSCHITZ):  # NormSlot is an nn.Identity
        return 1.0
    from ..networks.activations import GroupSort

    if isinstance(module, GroupSort):  # MaxMin included: a permutation within each group (Anil et al. 2019)
        return 1.0
    if isinstance(module, nn.LeakyReLU):
        return max(1.0, abs(module.negative_slope))
    if isinstance(module, _BatchNorm) and module.track_running_stats and module.running_var is not None:
        scale = (module.running_var + module.eps).rsqrt()
        if module.weight is not None:
            scale = scale * module.weight.detach().abs()
        return float(scale.max())
    return None


def _leaves(module: nn.Module):
    for name, m in module.named_modules():
        if _is_internal(name) or isinstance(m, (nn.Linear, nn.Conv2d)):
            continue
        if not any(True for _ in m.children()):
            yield name, m


def _chain_bound(module: nn.Module, norms: dict):
    bound, valid, unknown = 1.0, True, []
    for v in norms.values():
        bound *= v
    for name, m in _leaves(module):
        f = _factor(m)
        if f is None:
            valid = False
            unknown.append(type(m).__name__)
        else:
            bound *= f
    note = "product of layer norms" + (f"; unbounded/unknown modules: {sorted(set(unknown))}" if unknown else "")
    return bound, valid, note


def _resnet_bound(module: nn.Module, norms: dict, shapes: dict):
    factors = {}
    valid = True
    for name, m in _leaves(module):
        f = _factor(m)
        factors[name] = f
        valid = valid and f is not None

    def fac(name):
        f = factors.get(name, 1.0)
        return 1.0 if f is None else f

    total = 1.0
    for i, blk in enumerate(module.blocks):
        p = f"blocks.{i}."
        pool = 0.5 if blk.downsample else 1.0  # 2x2 average pooling: each output averages 4 disjoint inputs
        main = norms[p + "conv1"] * fac(p + "norm1") * norms[p + "conv2"] * fac(p + "norm2") * pool
        short = norms[p + "shortcut"] * pool if blk.learn_shortcut else 1.0
        total *= main + short
    last = len(module.blocks) - 1
    _, h, w = shapes[f"blocks.{last}.conv2"]
    if module.blocks[last].downsample:
        h, w = h // 2, w // 2
    total *= math.sqrt(h * w) * norms["dense"]  # global sum pooling: sqrt(h w)
    return total, valid, "residual blocks: prod_b (main_b + shortcut_b) x sqrt(hw) x |dense|"


def lipschitz_upper_bound(module: nn.Module, norms: dict, shapes: dict | None = None):
    """(bound, valid, note) from per-layer norms ``{name: sigma}`` (see the module docstring)."""
    from ..networks.mlp import MLPDiscriminator
    from ..networks.resnet import ResNetDiscriminator
    from ..networks.standard_cnn import StandardCNNDiscriminator

    gain = float(getattr(module, "lipschitz_output_gain", 1.0))  # regularizer.output_gain: D(x) -> gain * D(x)
    if isinstance(module, ResNetDiscriminator):
        if shapes is None:
            raise ValueError("the ResNet bound needs the layers' input shapes (record_input_shapes)")
        bound, valid, note = _resnet_bound(module, norms, shapes)
        return bound * gain, valid, note
    bound, valid, note = _chain_bound(module, norms)
    if not isinstance(module, (MLPDiscriminator, StandardCNNDiscriminator, nn.Sequential)):
        valid, note = False, note + f"; {type(module).__name__} is not known to be a chain"
    return bound * gain, valid, note


def input_gradient_norms(module: nn.Module, x: torch.Tensor, return_outputs: bool = False):
    """|grad_x D(x_i)|_2 for each sample (D in eval mode, so samples do not interact); with
    ``return_outputs`` also D(x_i): (norms, outputs)."""
    with eval_mode(module), torch.enable_grad():
        x = x.detach().clone().requires_grad_(True)
        out = module(x)
        (g,) = torch.autograd.grad(out.sum(), x)
    norms = g.flatten(1).norm(dim=1)
    return (norms, out.detach().flatten()) if return_outputs else norms


def interpolate(real: torch.Tensor, fake: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """x + alpha (x~ - x), one alpha ~ U[0, 1] per sample (the WGAN-GP points)."""
    n = min(len(real), len(fake))
    alpha = torch.rand((n,) + (1,) * (real.dim() - 1), generator=generator, device=generator.device if generator else "cpu")
    alpha = alpha.to(device=real.device, dtype=real.dtype)
    return real[:n] + alpha * (fake[:n] - real[:n])


def lipschitz_bounds(module: nn.Module, real: torch.Tensor, fake: torch.Tensor, generator: torch.Generator | None = None,
                     tol: float = 1e-6) -> dict:
    """Both bounds for D: {"upper", "upper_valid", "upper_note", "upper_reshaped", "lower",
    "grad_norms": {"real", "fake", "interp"} tensors, "norms_true", "norms_reshaped"}.

    The upper bound uses Lanczos-converged conv-true norms; "upper_reshaped" combines the reshaped
    norms the same way (what SN controls; not a bound for convolutions). The lower bound is the
    largest input-gradient norm over real, generated and interpolated points.
    """
    shapes = record_input_shapes(module, real)
    ops = layer_operators(module, shapes)
    norms_true = {n: operator_norm(op, tol=tol) for n, op in ops.items()}
    norms_reshaped = {n: float(torch.linalg.matrix_norm(op.weight.flatten(1).double(), 2)) for n, op in ops.items()}
    upper, valid, note = lipschitz_upper_bound(module, norms_true, shapes)
    upper_reshaped, _, _ = lipschitz_upper_bound(module, norms_reshaped, shapes)
    grads = {"real": input_gradient_norms(module, real), "fake": input_gradient_norms(module, fake),
             "interp": input_gradient_norms(module, interpolate(real, fake, generator))}
    lower = max(float(g.max()) for g in grads.values())
    return {"upper": upper, "upper_valid": valid, "upper_note": note, "upper_reshaped": upper_reshaped, "lower": lower,
            "grad_norms": grads, "norms_true": norms_true, "norms_reshaped": norms_reshaped}


__all__ = ["eval_mode", "input_gradient_norms", "interpolate", "layer_norms", "layer_operators", "lipschitz_bounds",
           "lipschitz_upper_bound", "record_input_shapes", "layer_input_shapes", "weight_layers"]
