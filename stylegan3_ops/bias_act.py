"""Fused bias + activation + gain + clamp, the pointwise tail of every StyleGAN layer.

``bias_act(x, b)`` computes, in this order::

    y = act(x + b broadcast along `dim`, alpha) * gain, then clamped to [-clamp, clamp]

with the argument names, activation table and defaults of NVIDIA's StyleGAN3 op.
Only the reference (pure PyTorch) implementation exists in this version; it is
differentiable through autograd.

Example::

    >>> import torch
    >>> from stylegan3_ops import bias_act
    >>> x, b = torch.randn(2, 8, 4, 4), torch.zeros(8)
    >>> bias_act(x, b, act="lrelu").shape          # 0.2-leaky ReLU, gain sqrt(2)
    torch.Size([2, 8, 4, 4])
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from stylegan3_ops._policy import resolve_impl

__all__ = ["ACTIVATIONS", "ActivationSpec", "bias_act"]


@dataclass(frozen=True)
class ActivationSpec:
    """One activation: its function ``func(x, alpha)`` and its default alpha and gain."""

    func: Callable[[torch.Tensor, float], torch.Tensor]
    def_alpha: float
    def_gain: float


# The gain defaults keep the signal variance roughly constant for activations that
# halve it (relu-like ones get sqrt(2)). Only lrelu uses alpha (its negative slope).
ACTIVATIONS: dict[str, ActivationSpec] = {
    "linear": ActivationSpec(lambda x, alpha: x, 0.0, 1.0),
    "relu": ActivationSpec(lambda x, alpha: F.relu(x), 0.0, math.sqrt(2)),
    "lrelu": ActivationSpec(lambda x, alpha: F.leaky_relu(x, alpha), 0.2, math.sqrt(2)),
    "tanh": ActivationSpec(lambda x, alpha: torch.tanh(x), 0.0, 1.0),
    "sigmoid": ActivationSpec(lambda x, alpha: torch.sigmoid(x), 0.0, 1.0),
    "elu": ActivationSpec(lambda x, alpha: F.elu(x), 0.0, 1.0),
    "selu": ActivationSpec(lambda x, alpha: F.selu(x), 0.0, 1.0),
    "softplus": ActivationSpec(lambda x, alpha: F.softplus(x), 0.0, 1.0),
    "swish": ActivationSpec(lambda x, alpha: torch.sigmoid(x) * x, 0.0, math.sqrt(2)),
}


def bias_act(
    x: torch.Tensor,
    b: torch.Tensor | None = None,
    dim: int = 1,
    act: str = "linear",
    alpha: float | None = None,
    gain: float | None = None,
    clamp: float | None = None,
    impl: str | None = None,
) -> torch.Tensor:
    """Add a bias, apply an activation, scale by a gain and clamp.

    Args:
        x: Input of any shape, e.g. ``[N, C, H, W]`` or ``[N, C]``; floating point.
        b: Bias ``[x.shape[dim]]`` added along ``dim``, or ``None`` for no bias.
            Cast to ``x.dtype``.
        dim: The dimension of ``x`` that ``b`` runs along (negative counts from the end).
        act: One of ``linear, relu, lrelu, tanh, sigmoid, elu, selu, softplus, swish``.
        alpha: Negative slope of ``lrelu`` (default 0.2); ignored by the others.
        gain: Factor applied after the activation; ``None`` takes the activation's
            default (``sqrt(2)`` for relu, lrelu and swish, else 1).
        clamp: ``None`` for no clamping, else a value ``>= 0``: the output is
            clamped to ``[-clamp, clamp]`` (so ``clamp=0`` gives zeros).
        impl: ``"auto"``, ``"cuda"``, ``"ref"`` or ``None`` (read ``CFATTACK_OPS``);
            see :mod:`stylegan3_ops._policy`.

    Returns:
        Tensor of the shape and dtype of ``x``.

    Raises:
        ValueError: On an unknown ``act``, a bad ``dim``, a bias of the wrong
            shape, or a negative ``clamp``.
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise ValueError(f"x must be a floating-point torch.Tensor; got {_describe(x)}")
    spec = ACTIVATIONS.get(act)
    if spec is None:
        raise ValueError(f"act must be one of {', '.join(ACTIVATIONS)}; got {act!r}")
    if not isinstance(dim, int) or not -x.ndim <= dim < x.ndim:
        raise ValueError(
            f"dim must be an int in [{-x.ndim}, {x.ndim}) for x of shape {list(x.shape)}; got {dim!r}"
        )
    dim = dim % x.ndim
    if b is not None and (not isinstance(b, torch.Tensor) or b.ndim != 1 or b.shape[0] != x.shape[dim]):
        raise ValueError(
            f"b must be None or a 1-D tensor of length x.shape[{dim}] = {x.shape[dim]}; got {_describe(b)}"
        )
    alpha = float(spec.def_alpha if alpha is None else alpha)
    gain = float(spec.def_gain if gain is None else gain)
    if clamp is not None and not float(clamp) >= 0:
        raise ValueError(f"clamp must be None or >= 0; got {clamp!r}")
    clamp = None if clamp is None else float(clamp)

    resolve_impl("bias_act", impl, x)  # only "ref" exists in this version
    return _bias_act_ref(x, b, dim, spec, alpha, gain, clamp)


def _bias_act_ref(
    x: torch.Tensor,
    b: torch.Tensor | None,
    dim: int,
    spec: ActivationSpec,
    alpha: float,
    gain: float,
    clamp: float | None,
) -> torch.Tensor:
    """Reference implementation; arguments already validated and defaults resolved."""
    if b is not None:
        shape = [1] * x.ndim
        shape[dim] = -1
        x = x + b.to(x.dtype).reshape(shape)
    x = spec.func(x, alpha)
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


def _describe(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"tensor of shape {list(value.shape)} and dtype {value.dtype}"
    return repr(value)
