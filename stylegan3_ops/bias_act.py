"""Fused bias + activation + gain + clamp, the pointwise tail of every StyleGAN layer.

``bias_act(x, b)`` computes, in this order::

    y = act(x + b broadcast along `dim`, alpha) * gain, then clamped to [-clamp, clamp]

with the argument names, activation table and defaults of NVIDIA's StyleGAN3 op.
The reference (pure PyTorch) implementation is differentiable through autograd to any
order; the CUDA one (one fused element-wise kernel) supports first- and second-order
gradients (enough for R1 regularisation): its backward pass is itself an autograd
function, computing ``dy * d out / d x`` with the same kernel, whose backward uses the
kernel's second-derivative mode.

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

from stylegan3_ops import _kernels
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

    if resolve_impl("bias_act", impl, x) == "cuda":
        return _bias_act_cuda(x, b, dim, act, alpha, gain, clamp)
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


# --- CUDA implementation ------------------------------------------------------------------


def _bias_act_cuda(
    x: torch.Tensor,
    b: torch.Tensor | None,
    dim: int,
    act: str,
    alpha: float,
    gain: float,
    clamp: float | None,
) -> torch.Tensor:
    """CUDA bias_act; arguments already validated. Any dense layout (e.g. channels-last) is kept."""
    if not _is_dense(x):
        x = x.contiguous()
    if b is not None and b.device != x.device:
        raise ValueError(f"b must be on the device of x ({x.device}); got {b.device}")
    config = (dim, _kernels.ACT_INDEX[act], alpha, gain, -1.0 if clamp is None else clamp)
    return _BiasActCuda.apply(x, b, config)


def _is_dense(x: torch.Tensor) -> bool:
    """Whether ``x`` covers its memory exactly once in some dimension order (contiguous, channels-last, ...)."""
    expected = 1
    for size, stride in sorted(zip(x.shape, x.stride()), key=lambda p: p[1]):
        if size != 1 and stride != expected:
            return False
        expected *= size
    return True


def _module():
    from stylegan3_ops._build import build_extension

    return build_extension()


def _kernel(x, b, dy, ggx, config, mode) -> torch.Tensor:
    dim, act, alpha, gain, clamp = config
    if b is not None:
        # The kernel reads a float32 bias or one in x's dtype: no conversion kernel in the common cases.
        b = b.detach()
        if b.dtype != torch.float32 and b.dtype != x.dtype:
            b = b.to(torch.float32)
        b = b.contiguous()
    return _module().bias_act(x, b, dy, ggx, dim, mode, act, alpha, gain, clamp)


def _like(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``t`` with the dtype and memory layout of ``x`` (incoming gradients may be expanded)."""
    if t.dtype == x.dtype and t.stride() == x.stride():
        return t
    return torch.empty_like(x).copy_(t)


def _sum_but(t: torch.Tensor, dim: int, like: torch.Tensor) -> torch.Tensor:
    """Sum over every dimension but ``dim`` (in float32, or float64), in the dtype of ``like``."""
    dims = [i for i in range(t.ndim) if i != dim]
    # dtype= accumulates in float32 inside the reduction, without a float32 copy of t (float64 stays float64).
    acc = torch.float64 if t.dtype == torch.float64 else torch.float32
    return t.sum(dims, dtype=acc).to(like.dtype)


class _BiasActCuda(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, b, config):
        ctx.config = config
        ctx.save_for_backward(x, b)
        return _kernel(x, b, None, None, config, _kernels.BIAS_ACT_FORWARD)

    @staticmethod
    def backward(ctx, dy):
        x, b = ctx.saved_tensors
        dx = _BiasActGradCuda.apply(_like(dy, x), x, b, ctx.config)
        db = _sum_but(dx, ctx.config[0], b) if b is not None and ctx.needs_input_grad[1] else None
        return dx, db, None


class _BiasActGradCuda(torch.autograd.Function):
    """dx = dy * d out / d x as a function of (dy, x, b), so that it can be differentiated again."""

    @staticmethod
    def forward(ctx, dy, x, b, config):
        ctx.config = config
        ctx.save_for_backward(dy, x, b)
        return _kernel(x, b, dy, None, config, _kernels.BIAS_ACT_GRAD)

    @staticmethod
    def backward(ctx, ggx):
        dy, x, b = ctx.saved_tensors
        ggx = _like(ggx, x)
        g_dy = g_x = g_b = None
        if ctx.needs_input_grad[0]:  # dx is linear in dy with the same factor
            g_dy = _BiasActGradCuda.apply(ggx, x, b, ctx.config)
        if ctx.needs_input_grad[1] or (b is not None and ctx.needs_input_grad[2]):
            # Through the activation's second derivative (not differentiable once more).
            g_x = _kernel(x, b, dy.detach(), ggx.detach(), ctx.config, _kernels.BIAS_ACT_GRAD2)
            if b is not None and ctx.needs_input_grad[2]:
                g_b = _sum_but(g_x, ctx.config[0], b)
        return g_dy, g_x, g_b, None


def _describe(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"tensor of shape {list(value.shape)} and dtype {value.dtype}"
    return repr(value)
