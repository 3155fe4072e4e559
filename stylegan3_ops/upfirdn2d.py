"""Upsample, FIR-filter and downsample 2-D images in one op, plus its helpers.

``upfirdn2d`` does, per channel of an ``[N, C, H, W]`` batch:

1. upsample by inserting ``up - 1`` zeros after every pixel (along x and y),
2. pad with zeros, or crop where a padding is negative,
3. convolve with the FIR filter ``f`` (a true convolution, scaled by ``gain``),
4. downsample by keeping every ``down``-th pixel, starting with the first.

The output size along x is ``(W * up_x + pad_x0 + pad_x1 - filter_w + down_x) // down_x``
(likewise along y). Arguments, defaults and conventions follow NVIDIA's StyleGAN3 op:
scalings may be an int or ``[x, y]``; paddings an int, ``[x, y]`` or
``[x0, x1, y0, y1]``; ``f`` is ``None`` (identity), 1-D (separable: applied along x
and then along y) or 2-D ``[filter_h, filter_w]``. Build filters with
:func:`setup_filter`. The CUDA implementation is one fused, tiled kernel per call
(polyphase upsampling, so the inserted zeros are never multiplied); its backward pass is
upfirdn2d again (flipped filter, swapped up/down, adjusted padding), hence differentiable
to any order. Gradients flow to ``x`` only: a filter that requires grad uses the reference.

Example::

    >>> import torch
    >>> from stylegan3_ops import setup_filter, upfirdn2d
    >>> f = setup_filter([1, 3, 3, 1])                   # 4x4 binomial, sums to 1
    >>> upfirdn2d(torch.randn(1, 3, 8, 8), f, up=2, padding=[2, 1, 2, 1], gain=4).shape
    torch.Size([1, 3, 16, 16])
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from stylegan3_ops import _kernels
from stylegan3_ops._policy import resolve_impl

__all__ = ["downsample2d", "filter2d", "setup_filter", "upfirdn2d", "upsample2d"]

Scaling = int | Sequence[int]
Padding = int | Sequence[int]


def setup_filter(
    f: torch.Tensor | Sequence | float | None,
    device: torch.device | str = torch.device("cpu"),
    normalize: bool = True,
    flip_filter: bool = False,
    gain: float = 1,
    separable: bool | None = None,
) -> torch.Tensor:
    """Turn filter taps into a float32 filter tensor for :func:`upfirdn2d`.

    Args:
        f: Taps: ``None`` (identity ``[[1]]``), a scalar, 1-D ``[taps]`` or
            2-D ``[filter_h, filter_w]`` (tensor, array or nested list).
        device: Device of the result.
        normalize: Divide by the sum of the taps (after any outer product).
        flip_filter: Flip the filter along every axis.
        gain: Overall gain of the filter; a 2-D filter is multiplied by ``gain``,
            a 1-D (separable) one by ``sqrt(gain)`` since it is applied twice.
        separable: Keep a 1-D filter 1-D (True) or make it 2-D by an outer product
            with itself (False). ``None``: separable iff 1-D with at least 8 taps.

    Returns:
        float32 tensor ``[taps]`` (separable) or ``[filter_h, filter_w]``.

    Raises:
        ValueError: ``f`` is empty or has more than 2 dimensions, or
            ``separable=True`` for a 2-D filter.
    """
    f = torch.as_tensor(1.0 if f is None else f, dtype=torch.float32)
    if f.ndim > 2 or f.numel() == 0:
        raise ValueError(
            f"f must be None, a scalar, or non-empty with 1 or 2 dimensions; got shape {list(f.shape)}"
        )
    if f.ndim == 0:
        f = f.reshape(1)
    if separable is None:
        separable = f.ndim == 1 and f.numel() >= 8
    if f.ndim == 1 and not separable:
        f = torch.outer(f, f)
    if separable and f.ndim != 1:
        raise ValueError(f"separable=True needs a 1-D filter; got f of shape {list(f.shape)}")
    if normalize:
        f = f / f.sum()
    if flip_filter:
        f = f.flip(list(range(f.ndim)))
    f = f * (gain ** (f.ndim / 2))
    return f.to(device=device)


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: Scaling = 1,
    down: Scaling = 1,
    padding: Padding = 0,
    flip_filter: bool = False,
    gain: float = 1,
    impl: str | None = None,
) -> torch.Tensor:
    """Upsample, pad, FIR-filter and downsample a batch of images.

    Args:
        x: Images ``[N, C, H, W]``, floating point.
        f: ``None`` (identity), 1-D separable ``[taps]`` or 2-D ``[filter_h, filter_w]``
            filter, e.g. from :func:`setup_filter`; cast to ``x``'s device and dtype.
        up: Integer upsampling factor, int or ``[x, y]``.
        down: Integer downsampling factor, int or ``[x, y]``.
        padding: Padding (negative: cropping) of the upsampled image before
            filtering: int, ``[x, y]`` or ``[x0, x1, y0, y1]``.
        flip_filter: False: true convolution (the filter is flipped for
            ``conv2d``); True: correlation.
        gain: Overall scale of the filter (e.g. ``up**2`` keeps the mean
            brightness when upsampling by zero insertion).
        impl: ``"auto"``, ``"cuda"``, ``"ref"`` or ``None`` (read ``CFATTACK_OPS``).

    Returns:
        ``[N, C, out_h, out_w]`` in the dtype of ``x``, with
        ``out_w = (W * up_x + pad_x0 + pad_x1 - filter_w + down_x) // down_x``
        and ``out_h`` likewise.

    Raises:
        ValueError: On badly shaped ``x`` or ``f``, bad factors or paddings, or a
            padding that leaves no output pixel.
    """
    _check_images(x)
    _check_filter(f)
    upx, upy = _parse_scaling(up, "up")
    downx, downy = _parse_scaling(down, "down")
    padx0, padx1, pady0, pady1 = _parse_padding(padding)
    fw, fh = _get_filter_size(f)
    height, width = x.shape[2], x.shape[3]
    if width * upx + padx0 + padx1 < fw or height * upy + pady0 + pady1 < fh:
        raise ValueError(
            f"padding {padding!r} leaves no output: input {height}x{width} (HxW) upsampled by "
            f"[x={upx}, y={upy}] and padded is smaller than the {fh}x{fw} filter"
        )

    args = (upx, upy, downx, downy, padx0, padx1, pady0, pady1, bool(flip_filter), float(gain))
    if resolve_impl("upfirdn2d", impl, x) == "cuda" and not _filter_needs_grad(f):
        return _Upfirdn2dCuda.apply(x, f, args)
    return _upfirdn2d_ref(x, f, *args)


def filter2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    padding: Padding = 0,
    flip_filter: bool = False,
    gain: float = 1,
    impl: str | None = None,
) -> torch.Tensor:
    """Filter images with ``f`` keeping their size (with ``padding=0``).

    The filter is centred: a filter of width ``fw`` gets ``fw // 2`` extra pixels
    of padding on the left and ``(fw - 1) // 2`` on the right (likewise top and
    bottom), in addition to ``padding``.

    Args:
        x: Images ``[N, C, H, W]``.
        f: Filter as for :func:`upfirdn2d`.
        padding: Extra padding: int, ``[x, y]`` or ``[x0, x1, y0, y1]``.
        flip_filter, gain, impl: As for :func:`upfirdn2d`.

    Returns:
        ``[N, C, H + pad_y0 + pad_y1, W + pad_x0 + pad_x1]``.
    """
    padx0, padx1, pady0, pady1 = _parse_padding(padding)
    _check_filter(f)
    fw, fh = _get_filter_size(f)
    p = [padx0 + fw // 2, padx1 + (fw - 1) // 2, pady0 + fh // 2, pady1 + (fh - 1) // 2]
    return upfirdn2d(x, f, padding=p, flip_filter=flip_filter, gain=gain, impl=impl)


def upsample2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: Scaling = 2,
    padding: Padding = 0,
    flip_filter: bool = False,
    gain: float = 1,
    impl: str | None = None,
) -> torch.Tensor:
    """Upsample images by ``up`` with the interpolation filter ``f``.

    Padding is chosen so that the output is exactly ``up`` times the input and
    the filter's gain is multiplied by ``up_x * up_y`` to keep the mean level.

    Args:
        x: Images ``[N, C, H, W]``.
        f: Filter as for :func:`upfirdn2d`.
        up: Upsampling factor, int or ``[x, y]``.
        padding: Extra padding: int, ``[x, y]`` or ``[x0, x1, y0, y1]``.
        flip_filter, gain, impl: As for :func:`upfirdn2d`.

    Returns:
        ``[N, C, H * up_y + pad_y0 + pad_y1, W * up_x + pad_x0 + pad_x1]``.
    """
    upx, upy = _parse_scaling(up, "up")
    padx0, padx1, pady0, pady1 = _parse_padding(padding)
    _check_filter(f)
    fw, fh = _get_filter_size(f)
    p = [
        padx0 + (fw + upx - 1) // 2,
        padx1 + (fw - upx) // 2,
        pady0 + (fh + upy - 1) // 2,
        pady1 + (fh - upy) // 2,
    ]
    gain = gain * upx * upy  # zero stuffing divides the mean level by up_x * up_y
    return upfirdn2d(x, f, up=[upx, upy], padding=p, flip_filter=flip_filter, gain=gain, impl=impl)


def downsample2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    down: Scaling = 2,
    padding: Padding = 0,
    flip_filter: bool = False,
    gain: float = 1,
    impl: str | None = None,
) -> torch.Tensor:
    """Low-pass filter images with ``f`` and downsample them by ``down``.

    Args:
        x: Images ``[N, C, H, W]``.
        f: Filter as for :func:`upfirdn2d`.
        down: Downsampling factor, int or ``[x, y]``.
        padding: Extra padding: int, ``[x, y]`` or ``[x0, x1, y0, y1]``.
        flip_filter, gain, impl: As for :func:`upfirdn2d`.

    Returns:
        ``[N, C, (H + pad_y0 + pad_y1) // down_y, (W + pad_x0 + pad_x1) // down_x]``.
    """
    downx, downy = _parse_scaling(down, "down")
    padx0, padx1, pady0, pady1 = _parse_padding(padding)
    _check_filter(f)
    fw, fh = _get_filter_size(f)
    p = [
        padx0 + (fw - downx + 1) // 2,
        padx1 + (fw - downx) // 2,
        pady0 + (fh - downy + 1) // 2,
        pady1 + (fh - downy) // 2,
    ]
    return upfirdn2d(x, f, down=[downx, downy], padding=p, flip_filter=flip_filter, gain=gain, impl=impl)


# --- reference implementation -----------------------------------------------------


def _upfirdn2d_ref(
    x: torch.Tensor,
    f: torch.Tensor | None,
    upx: int,
    upy: int,
    downx: int,
    downy: int,
    padx0: int,
    padx1: int,
    pady0: int,
    pady1: int,
    flip_filter: bool,
    gain: float,
) -> torch.Tensor:
    """Reference upfirdn2d; arguments already validated and parsed."""
    batch, channels, in_h, in_w = x.shape
    fw, fh = _get_filter_size(f)
    out_w = (in_w * upx + padx0 + padx1 - fw + downx) // downx
    out_h = (in_h * upy + pady0 + pady1 - fh + downy) // downy

    if f is None:
        # Identity filter: only resampling and padding.
        x = _upsample_zeros(x, upx, upy)
        x = _pad(x, padx0, padx1, pady0, pady1)
        y = x[:, :, ::downy, ::downx]
        if gain != 1:
            y = y * gain
    else:
        # g is the convolution kernel: f itself, or f flipped when the caller asks for
        # correlation. Scale in at least float32, then work in the dtype of x.
        scale_dtype = torch.promote_types(torch.promote_types(f.dtype, x.dtype), torch.float32)
        g = f.to(device=x.device, dtype=scale_dtype)
        if flip_filter:
            g = g.flip(list(range(g.ndim)))
        if g.ndim == 2:
            y = _resample(x, (g * gain).to(x.dtype), upx, upy, downx, downy, padx0, padx1, pady0, pady1)
        else:
            # Separable: the x pass and the y pass act on different axes and commute,
            # so each axis is upsampled, padded, filtered and downsampled on its own;
            # the x pass then runs on in_h rather than in_h * up_y rows.
            scale_x, scale_y = (gain**0.5, gain**0.5) if gain >= 0 else (gain, 1.0)
            gx = (g * scale_x).to(x.dtype).reshape(1, -1)
            gy = (g * scale_y).to(x.dtype).reshape(-1, 1)
            x = _resample(x, gx, upx, 1, downx, 1, padx0, padx1, 0, 0)
            y = _resample(x, gy, 1, upy, 1, downy, 0, 0, pady0, pady1)

    assert y.shape == (batch, channels, out_h, out_w), (tuple(y.shape), (batch, channels, out_h, out_w))
    return y


def _resample(
    x: torch.Tensor,
    g: torch.Tensor,
    upx: int,
    upy: int,
    downx: int,
    downy: int,
    padx0: int,
    padx1: int,
    pady0: int,
    pady1: int,
) -> torch.Tensor:
    """Zero-insert, pad, convolve with the kernel ``g [kh, kw]`` and subsample, per channel.

    Without upsampling this is a depthwise strided ``conv2d`` (keeping every
    ``down``-th output of a full-rate filter is exactly a strided convolution).
    With upsampling it is a depthwise ``conv_transpose2d``: scattering every input
    pixel through ``g`` at stride ``up`` is the full convolution of the zero-inserted
    image, computed without multiplying the inserted zeros; a pad/crop then aligns
    it with the requested padding and a slice keeps every ``down``-th pixel.
    """
    channels = x.shape[1]
    kh, kw = g.shape
    if upx == 1 and upy == 1:
        x = _pad(x, padx0, padx1, pady0, pady1)
        weight = g.flip([0, 1]).expand(channels, 1, kh, kw).contiguous()  # conv2d correlates
        return F.conv2d(x, weight, stride=(downy, downx), groups=channels)
    weight = g.expand(channels, 1, kh, kw).contiguous()
    x = F.conv_transpose2d(x, weight, stride=(upy, upx), groups=channels)
    # Full convolution sample t is output sample t - (k - 1) + pad0 of the padded one.
    x = _pad(x, padx0 - kw + 1, padx1 - kw + upx, pady0 - kh + 1, pady1 - kh + upy)
    if downx > 1 or downy > 1:
        x = x[:, :, ::downy, ::downx]
    return x


def _upsample_zeros(x: torch.Tensor, upx: int, upy: int) -> torch.Tensor:
    """Insert ``up - 1`` zeros after every pixel: ``[N, C, H, W] -> [N, C, H*upy, W*upx]``."""
    if upx == 1 and upy == 1:
        return x
    n, c, h, w = x.shape
    x = x.reshape(n, c, h, 1, w, 1)
    x = F.pad(x, [0, upx - 1, 0, 0, 0, upy - 1])
    return x.reshape(n, c, h * upy, w * upx)


def _pad(x: torch.Tensor, padx0: int, padx1: int, pady0: int, pady1: int) -> torch.Tensor:
    """Zero-pad, or crop where a padding is negative (``F.pad`` does both)."""
    if padx0 == padx1 == pady0 == pady1 == 0:
        return x
    return F.pad(x, [padx0, padx1, pady0, pady1])


# --- CUDA implementation ----------------------------------------------------------------


def _filter_needs_grad(f: torch.Tensor | None) -> bool:
    """A trainable filter: the CUDA ops treat filters as constants, so use the reference."""
    return f is not None and f.requires_grad and torch.is_grad_enabled()


class _Upfirdn2dCuda(torch.autograd.Function):
    """upfirdn2d on the fused kernel; ``args`` = (upx, upy, downx, downy, padx0, padx1, pady0, pady1, flip, gain)."""

    @staticmethod
    def forward(ctx, x, f, args):
        from stylegan3_ops._build import build_extension

        in_h, in_w = x.shape[2], x.shape[3]
        ctx.args, ctx.in_hw = args, (in_h, in_w)
        ctx.save_for_backward(f)
        plan = _kernels.upfirdn2d_plan(in_h, in_w, f, *args, x.device)
        y, _ = _kernels.run(build_extension(), plan, x)
        return y

    @staticmethod
    def backward(ctx, dy):
        (f,) = ctx.saved_tensors
        upx, upy, downx, downy, padx0, padx1, pady0, pady1, flip, gain = ctx.args
        in_h, in_w = ctx.in_hw
        out_h, out_w = dy.shape[2], dy.shape[3]
        fw, fh = _get_filter_size(f)
        # The adjoint: upsample by down, correlate with the flipped filter, keep every up-th sample.
        p = (
            fw - padx0 - 1,
            in_w * upx - out_w * downx + padx0 - upx + 1,
            fh - pady0 - 1,
            in_h * upy - out_h * downy + pady0 - upy + 1,
        )
        dx = _Upfirdn2dCuda.apply(dy, f, (downx, downy, upx, upy, *p, not flip, gain))
        return dx, None, None


# --- argument parsing, shared with filtered_lrelu ------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _parse_scaling(scaling: Scaling, name: str) -> tuple[int, int]:
    """int or ``[x, y]`` -> ``(sx, sy)``, each an int >= 1."""
    values = [scaling, scaling] if _is_int(scaling) else scaling
    if (
        not isinstance(values, Sequence)
        or len(values) != 2
        or not all(_is_int(v) and v >= 1 for v in values)
    ):
        raise ValueError(f"{name} must be an int >= 1 or a pair [x, y] of them; got {scaling!r}")
    return int(values[0]), int(values[1])


def _parse_padding(padding: Padding) -> tuple[int, int, int, int]:
    """int, ``[x, y]`` or ``[x0, x1, y0, y1]`` -> ``(x0, x1, y0, y1)``."""
    if _is_int(padding):
        values = [padding] * 4
    elif isinstance(padding, Sequence) and len(padding) == 2:
        values = [padding[0], padding[0], padding[1], padding[1]]
    elif isinstance(padding, Sequence) and len(padding) == 4:
        values = list(padding)
    else:
        values = None
    if values is None or not all(_is_int(v) for v in values):
        raise ValueError(f"padding must be an int, [x, y] or [x0, x1, y0, y1] of ints; got {padding!r}")
    return int(values[0]), int(values[1]), int(values[2]), int(values[3])


def _get_filter_size(f: torch.Tensor | None) -> tuple[int, int]:
    """``(filter_w, filter_h)`` of a None, 1-D or 2-D filter."""
    if f is None:
        return 1, 1
    return int(f.shape[-1]), int(f.shape[0])


def _check_images(x: object, name: str = "x") -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point():
        shape = list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a floating-point tensor [N, C, H, W]; got {shape}")


def _check_filter(f: object, name: str = "f") -> None:
    if f is None:
        return
    if (
        not isinstance(f, torch.Tensor)
        or f.ndim not in (1, 2)
        or f.numel() == 0
        or not f.is_floating_point()
    ):
        shape = list(f.shape) if isinstance(f, torch.Tensor) else type(f).__name__
        raise ValueError(f"{name} must be None or a non-empty floating-point 1-D or 2-D tensor; got {shape}")
