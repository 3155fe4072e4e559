"""Alias-free leaky ReLU: upsample, apply the nonlinearity, low-pass and downsample.

StyleGAN3 applies its nonlinearity at a temporarily higher sampling rate so that
the new high frequencies it creates can be filtered out before returning to the
layer's output rate. ``filtered_lrelu`` does, in this order:

1. add the bias ``b`` per channel,
2. upsample by ``up`` with filter ``fu`` and padding ``padding`` (gain ``up**2``),
3. leaky ReLU with negative slope ``slope``, times ``gain``, clamped to ``[-clamp, clamp]``,
4. filter with ``fd`` and downsample by ``down`` (no padding).

Argument names and semantics follow NVIDIA's StyleGAN3 op. The reference
implementation composes :func:`bias_act` and :func:`upfirdn2d`. The CUDA one fuses all
four steps in one kernel per direction: each thread block builds its tile of the
upsampled intermediate in shared memory (never in global memory) and, when a gradient
will be needed, stores a 2-bit code per intermediate sample (not positive / clamped);
the backward pass is the same kernel run on the adjoint filters, multiplying by the
slope each code stands for. Its gradients are first-order (``x`` and ``b``); filters
are constants (a filter that requires grad uses the reference). Inputs in another
memory layout (e.g. channels-last) are made contiguous first.

Example::

    >>> import torch
    >>> from stylegan3_ops import filtered_lrelu, setup_filter
    >>> fu = fd = setup_filter([1, 3, 3, 1])                       # 4x4
    >>> y = filtered_lrelu(torch.randn(2, 8, 16, 16), fu, fd, up=2, down=2, padding=3)
    >>> y.shape                     # (16*2 + 6 - 3 - 3 + 1) // 2 = 16
    torch.Size([2, 8, 16, 16])
"""

from __future__ import annotations

import math

import torch

from stylegan3_ops import _kernels
from stylegan3_ops._policy import resolve_impl
from stylegan3_ops.bias_act import ACTIVATIONS, _bias_act_ref
from stylegan3_ops.upfirdn2d import (
    Padding,
    _check_filter,
    _check_images,
    _get_filter_size,
    _is_int,
    _filter_needs_grad,
    _parse_padding,
    _upfirdn2d_ref,
)

__all__ = ["filtered_lrelu"]


def filtered_lrelu(
    x: torch.Tensor,
    fu: torch.Tensor | None = None,
    fd: torch.Tensor | None = None,
    b: torch.Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding: Padding = 0,
    gain: float = math.sqrt(2),
    slope: float = 0.2,
    clamp: float | None = None,
    flip_filter: bool = False,
    impl: str | None = None,
) -> torch.Tensor:
    """Bias, upsample, leaky ReLU, clamp, downsample: StyleGAN3's filtered nonlinearity.

    Args:
        x: Input ``[N, C, H, W]``, floating point.
        fu: Upsampling filter, ``None`` (identity), 1-D ``[taps]`` (separable) or
            2-D ``[fu_h, fu_w]``.
        fd: Downsampling filter, same forms as ``fu``.
        b: Bias ``[C]`` or ``None``.
        up: Integer upsampling factor (>= 1).
        down: Integer downsampling factor (>= 1).
        padding: Padding (negative: cropping) of the upsampled image, before
            ``fu``: int, ``[x, y]`` or ``[x0, x1, y0, y1]``.
        gain: Factor applied after the leaky ReLU (> 0).
        slope: Negative slope of the leaky ReLU (>= 0; 1 makes it linear).
        clamp: ``None`` or a value >= 0 bounding the output of step 3.
        flip_filter: Correlate with ``fu``/``fd`` instead of convolving.
        impl: ``"auto"``, ``"cuda"``, ``"ref"`` or ``None`` (read ``CFATTACK_OPS``).

    Returns:
        ``[N, C, out_h, out_w]`` in the dtype of ``x``, with
        ``out_w = (W * up + pad_x0 + pad_x1 - (fu_w - 1) - (fd_w - 1) + (down - 1)) // down``
        and ``out_h`` likewise.

    Raises:
        ValueError: On badly shaped inputs or filters, bad factors, paddings,
            ``gain``, ``slope`` or ``clamp``.
    """
    _check_images(x)
    _check_filter(fu, "fu")
    _check_filter(fd, "fd")
    channels = x.shape[1]
    if b is not None and (not isinstance(b, torch.Tensor) or b.ndim != 1 or b.shape[0] != channels):
        shape = list(b.shape) if isinstance(b, torch.Tensor) else type(b).__name__
        raise ValueError(f"b must be None or a tensor [C] = [{channels}]; got {shape}")
    for name, value in (("up", up), ("down", down)):
        if not (_is_int(value) and value >= 1):
            raise ValueError(f"{name} must be an int >= 1; got {value!r}")
    px0, px1, py0, py1 = _parse_padding(padding)
    gain, slope = float(gain), float(slope)
    if not gain > 0:
        raise ValueError(f"gain must be > 0; got {gain!r}")
    if not slope >= 0:
        raise ValueError(f"slope must be >= 0; got {slope!r}")
    if clamp is not None and not float(clamp) >= 0:
        raise ValueError(f"clamp must be None or >= 0; got {clamp!r}")
    clamp = None if clamp is None else float(clamp)

    in_h, in_w = x.shape[2], x.shape[3]
    fu_w, fu_h = _get_filter_size(fu)
    fd_w, fd_h = _get_filter_size(fd)
    mid_w = in_w * up + px0 + px1 - fu_w + 1  # size after step 2
    mid_h = in_h * up + py0 + py1 - fu_h + 1
    if mid_w < fd_w or mid_h < fd_h:
        raise ValueError(
            f"padding {padding!r} leaves no output for input {in_h}x{in_w} (HxW), up={up}, "
            f"fu {fu_h}x{fu_w} and fd {fd_h}x{fd_w}"
        )

    if (
        resolve_impl("filtered_lrelu", impl, x) == "cuda"
        and not _filter_needs_grad(fu)
        and not _filter_needs_grad(fd)
    ):
        if b is not None and b.device != x.device:
            raise ValueError(f"b must be on the device of x ({x.device}); got {b.device}")
        needs_grad = torch.is_grad_enabled() and (x.requires_grad or (b is not None and b.requires_grad))
        args = (up, down, px0, px1, py0, py1, gain, slope, clamp, bool(flip_filter), needs_grad)
        return _FilteredLreluCuda.apply(x, fu, fd, b, args)
    return _filtered_lrelu_ref(
        x, fu, fd, b, up, down, px0, px1, py0, py1, gain, slope, clamp, bool(flip_filter)
    )


def _filtered_lrelu_ref(
    x: torch.Tensor,
    fu: torch.Tensor | None,
    fd: torch.Tensor | None,
    b: torch.Tensor | None,
    up: int,
    down: int,
    px0: int,
    px1: int,
    py0: int,
    py1: int,
    gain: float,
    slope: float,
    clamp: float | None,
    flip_filter: bool,
) -> torch.Tensor:
    """Reference filtered_lrelu; arguments already validated."""
    batch, channels, in_h, in_w = x.shape
    in_dtype = x.dtype
    fu_w, fu_h = _get_filter_size(fu)
    fd_w, fd_h = _get_filter_size(fd)
    out_w = (in_w * up + px0 + px1 - (fu_w - 1) - (fd_w - 1) + (down - 1)) // down
    out_h = (in_h * up + py0 + py1 - (fu_h - 1) - (fd_h - 1) + (down - 1)) // down

    # 1. Bias.
    x = _bias_act_ref(x, b, 1, ACTIVATIONS["linear"], 0.0, 1.0, None)
    # 2. Upsample; gain up**2 makes up for the zeros inserted between samples.
    x = _upfirdn2d_ref(x, fu, up, up, 1, 1, px0, px1, py0, py1, flip_filter, float(up**2))
    # 3. Nonlinearity at the high sampling rate.
    x = _bias_act_ref(x, None, 1, ACTIVATIONS["lrelu"], slope, gain, clamp)
    # 4. Low-pass and downsample.
    x = _upfirdn2d_ref(x, fd, 1, 1, down, down, 0, 0, 0, 0, flip_filter, 1.0)

    assert x.shape == (batch, channels, out_h, out_w), (tuple(x.shape), (batch, channels, out_h, out_w))
    assert x.dtype == in_dtype
    return x


class _FilteredLreluCuda(torch.autograd.Function):
    """Fused filtered_lrelu; ``args`` = (up, down, px0, px1, py0, py1, gain, slope, clamp, flip, needs_grad)."""

    @staticmethod
    def forward(ctx, x, fu, fd, b, args):
        from stylegan3_ops._build import build_extension

        up, down, px0, px1, py0, py1, gain, slope, clamp, flip, needs_grad = args
        in_h, in_w = x.shape[2], x.shape[3]
        plan = _kernels.filtered_lrelu_forward_plan(
            in_h, in_w, fu, fd, up, down, px0, px1, py0, py1, gain, slope, clamp, flip, needs_grad, x.device
        )
        y, mask = _kernels.run(build_extension(), plan, x, bias=b)
        ctx.args, ctx.in_hw = args, (in_h, in_w)
        ctx.b_dtype = None if b is None else b.dtype
        ctx.save_for_backward(fu, fd, mask)
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy):
        from stylegan3_ops._build import build_extension

        fu, fd, mask = ctx.saved_tensors
        up, down, px0, _, py0, _, gain, slope, _, flip, _ = ctx.args
        if mask is None:
            raise RuntimeError("filtered_lrelu: the forward pass stored no sign mask (it ran without gradients)")
        in_h, in_w = ctx.in_hw
        plan = _kernels.filtered_lrelu_backward_plan(
            in_h, in_w, dy.shape[2], dy.shape[3], fu, fd, up, down, px0, py0, gain, slope, flip, dy.device
        )
        dx, _ = _kernels.run(build_extension(), plan, dy.to(mask.device), mask=mask)
        db = None
        if ctx.b_dtype is not None and ctx.needs_input_grad[3]:
            acc = torch.float64 if dx.dtype == torch.float64 else torch.float32  # no float32 copy of dx
            db = dx.sum([0, 2, 3], dtype=acc).to(ctx.b_dtype)
        return dx, None, None, db, None
