"""Launch plans for the compiled kernels: filter taps, offsets and modes of every call.

The CUDA side (``csrc/resample_core.h``) runs one pipeline per image plane and axis::

    mid[m] = sum_t S[m + t - p0] * f1[t]     S: source upsampled by `up` (zeros inserted)
    a[m]   = point-wise op of mid[m]         identity | leaky ReLU (+ mask) | mask slope
    out[i] = sum_t a[i * down + t - q0] * f3[t]

with *correlation* taps ``f1``, ``f3``. This module turns each op direction into such a
plan (pure arithmetic on shapes, plus the taps as small float32 tensors), so that the
index maths is written once and can be checked on the CPU by the emulation the tests
compile from the same header. It imports no compiled code; :func:`run` takes the
extension module.

Adjoint rule used for every backward plan: the gradient of "upsample by u, correlate with
w, offset p, keep every d-th sample" is "upsample by d, correlate with reversed w, offset
len(w) - 1 - p, keep every u-th sample".
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

__all__ = [
    "ACT_INDEX",
    "BIAS_ACT_FORWARD",
    "BIAS_ACT_GRAD",
    "BIAS_ACT_GRAD2",
    "ResamplePlan",
    "filtered_lrelu_backward_plan",
    "filtered_lrelu_forward_plan",
    "run",
    "upfirdn2d_plan",
]

# Must match csrc/bias_act_core.h.
ACT_INDEX = {
    "linear": 0, "relu": 1, "lrelu": 2, "tanh": 3, "sigmoid": 4,
    "elu": 5, "selu": 6, "softplus": 7, "swish": 8,
}
BIAS_ACT_FORWARD, BIAS_ACT_GRAD, BIAS_ACT_GRAD2 = 0, 1, 2

# Point-wise modes of csrc/resample_core.h.
IDENTITY, LRELU_FORWARD, MASK_BACKWARD = 0, 1, 2
_UNBOUNDED = (-(2**30), 2**30)


@dataclass(frozen=True)
class Taps:
    """Correlation taps of one stage: separable (``[w taps, h taps]``) or 2-D ``[h, w]``, flattened."""

    values: torch.Tensor  # float32, 1-D
    w: int
    h: int
    sep: bool


@dataclass(frozen=True)
class ResamplePlan:
    """Everything one launch of the resample kernel needs besides the tensors."""

    dst_h: int
    dst_w: int
    f1: Taps
    f3: Taps
    ints: list[int]  # the 22 integer parameters, in csrc/ops.cu's order
    slope: float = 0.0
    gain: float = 1.0
    clamp: float = -1.0  # < 0: none


def _identity(device: torch.device) -> Taps:
    return correlation_taps(None, False, 1.0, False, device)


_TAPS_CACHE: dict[tuple, tuple[torch.Tensor, Taps]] = {}
_TAPS_CACHE_SIZE = 256


def correlation_taps(
    f: torch.Tensor | None, flip_filter: bool, gain: float, reverse: bool, device: torch.device
) -> Taps:
    """Taps for ``sum_t S[m + t - p0] * taps[t]`` equivalent to filtering with ``f``.

    Without ``flip_filter`` the ops convolve, i.e. correlate with ``f`` reversed;
    ``reverse`` reverses once more (the adjoint). ``gain`` scales the 2-D filter; a
    separable one gets ``sqrt(gain)`` per axis (``gain`` on x when negative), as in the
    reference. Results are cached per filter tensor (held, so its id cannot be reused)
    and version, so the generator's fixed filters cost no kernel launches after the first call.
    """
    if f is None:
        key = (None, None, bool(flip_filter), float(gain), bool(reverse), str(device))
    else:
        try:
            version = f._version
        except RuntimeError:  # inference tensors have no version counter: do not cache
            return _make_taps(f, flip_filter, gain, reverse, device)
        key = (id(f), version, bool(flip_filter), float(gain), bool(reverse), str(device))
    hit = _TAPS_CACHE.get(key)
    if hit is not None and hit[0] is f:
        return hit[1]
    taps = _make_taps(f, flip_filter, gain, reverse, device)
    if len(_TAPS_CACHE) >= _TAPS_CACHE_SIZE:
        _TAPS_CACHE.clear()
    _TAPS_CACHE[key] = (f, taps)
    return taps


def _make_taps(
    f: torch.Tensor | None, flip_filter: bool, gain: float, reverse: bool, device: torch.device
) -> Taps:
    if f is None:
        return Taps(torch.tensor([float(gain), 1.0], device=device), 1, 1, True)
    with torch.no_grad():
        taps = f.detach().to(device=device, dtype=torch.float32)
        if (not flip_filter) != reverse:
            taps = taps.flip(list(range(taps.ndim)))
        if taps.ndim == 1:
            n = int(taps.shape[0])
            sx, sy = (gain**0.5, gain**0.5) if gain >= 0 else (gain, 1.0)
            return Taps(torch.cat([taps * sx, taps * sy]).contiguous(), n, n, True)
        return Taps((taps * gain).reshape(-1).contiguous(), int(taps.shape[1]), int(taps.shape[0]), False)


_PLAN_CACHE: dict[tuple, tuple[tuple, ResamplePlan]] = {}
_PLAN_CACHE_SIZE = 512


def _memo(make):
    """Cache a plan builder: same shapes, parameters and filter tensors (by identity and
    version; the cache holds them, so an id cannot be reused) give the same plan. Saves
    the Python work of every call, which matters for small layers at batch 1."""

    @functools.wraps(make)
    def cached(*args):
        key, held = [make.__name__], []
        for a in args:
            if isinstance(a, torch.Tensor):
                try:
                    key.append((id(a), a._version))
                except RuntimeError:  # inference tensor: no version counter, do not cache
                    return make(*args)
                held.append(a)
            elif isinstance(a, torch.device):
                key.append(str(a))
            else:
                key.append(a)
        key = tuple(key)
        hit = _PLAN_CACHE.get(key)
        if hit is not None and len(hit[0]) == len(held) and all(x is y for x, y in zip(hit[0], held)):
            return hit[1]
        plan = make(*args)
        if len(_PLAN_CACHE) >= _PLAN_CACHE_SIZE:
            _PLAN_CACHE.clear()
        _PLAN_CACHE[key] = (tuple(held), plan)
        return plan

    return cached


def _ints(
    dst_h: int, dst_w: int,
    up: tuple[int, int], f1: Taps, p0: tuple[int, int],
    down: tuple[int, int], f3: Taps, q0: tuple[int, int],
    mode: int, write_mask: bool = False,
    valid_x: tuple[int, int] = _UNBOUNDED, valid_y: tuple[int, int] = _UNBOUNDED,
) -> list[int]:
    return [
        dst_h, dst_w, up[0], up[1], f1.w, f1.h, int(f1.sep), p0[0], p0[1],
        down[0], down[1], f3.w, f3.h, int(f3.sep), q0[0], q0[1],
        mode, int(write_mask), valid_x[0], valid_x[1], valid_y[0], valid_y[1],
    ]  # fmt: skip


@_memo
def upfirdn2d_plan(
    in_h: int, in_w: int, f: torch.Tensor | None,
    upx: int, upy: int, downx: int, downy: int,
    padx0: int, padx1: int, pady0: int, pady1: int,
    flip_filter: bool, gain: float, device: torch.device,
) -> ResamplePlan:  # fmt: skip
    """upfirdn2d as one pipeline: the filter in stage 1 when upsampling, else in stage 3."""
    fw, fh = (1, 1) if f is None else (int(f.shape[-1]), int(f.shape[0]))
    out_w = (in_w * upx + padx0 + padx1 - fw + downx) // downx
    out_h = (in_h * upy + pady0 + pady1 - fh + downy) // downy
    taps = correlation_taps(f, flip_filter, gain, False, device)
    ident = _identity(device)
    if upx > 1 or upy > 1:
        # y[i] = sum_t U[i * down + t - pad0] * w[t]: stage 1 builds every sample, stage 3 keeps every down-th.
        ints = _ints(out_h, out_w, (upx, upy), taps, (padx0, pady0), (downx, downy), ident, (0, 0), IDENTITY)
        return ResamplePlan(out_h, out_w, taps, ident, ints)
    ints = _ints(out_h, out_w, (1, 1), ident, (0, 0), (downx, downy), taps, (padx0, pady0), IDENTITY)
    return ResamplePlan(out_h, out_w, ident, taps, ints)


@_memo
def filtered_lrelu_forward_plan(
    in_h: int, in_w: int, fu: torch.Tensor | None, fd: torch.Tensor | None,
    up: int, down: int, px0: int, px1: int, py0: int, py1: int,
    gain: float, slope: float, clamp: float | None, flip_filter: bool,
    write_mask: bool, device: torch.device,
) -> ResamplePlan:  # fmt: skip
    """Bias is added on load; upsampling gain up**2 goes into the up-filter taps."""
    fu_w, fu_h = (1, 1) if fu is None else (int(fu.shape[-1]), int(fu.shape[0]))
    fd_w, fd_h = (1, 1) if fd is None else (int(fd.shape[-1]), int(fd.shape[0]))
    out_w = (in_w * up + px0 + px1 - (fu_w - 1) - (fd_w - 1) + (down - 1)) // down
    out_h = (in_h * up + py0 + py1 - (fu_h - 1) - (fd_h - 1) + (down - 1)) // down
    up_gain = float(up**2)
    wu = correlation_taps(fu, flip_filter, up_gain, False, device)
    wd = correlation_taps(fd, flip_filter, 1.0, False, device)
    ints = _ints(out_h, out_w, (up, up), wu, (px0, py0), (down, down), wd, (0, 0), LRELU_FORWARD, write_mask)
    return ResamplePlan(out_h, out_w, wu, wd, ints, slope, gain, -1.0 if clamp is None else clamp)


@_memo
def filtered_lrelu_backward_plan(
    in_h: int, in_w: int, out_h: int, out_w: int, fu: torch.Tensor | None, fd: torch.Tensor | None,
    up: int, down: int, px0: int, py0: int,
    gain: float, slope: float, flip_filter: bool, device: torch.device,
) -> ResamplePlan:  # fmt: skip
    """dx from dy: adjoint of the down stage, times the slope stored in the mask, adjoint of the up stage."""
    fu_w, fu_h = (1, 1) if fu is None else (int(fu.shape[-1]), int(fu.shape[0]))
    fd_w, fd_h = (1, 1) if fd is None else (int(fd.shape[-1]), int(fd.shape[0]))
    up_gain = float(up**2)
    wd_adj = correlation_taps(fd, flip_filter, 1.0, True, device)
    wu_adj = correlation_taps(fu, flip_filter, up_gain, True, device)
    # Only intermediate samples some output reads get a gradient.
    used_w = (out_w - 1) * down + fd_w
    used_h = (out_h - 1) * down + fd_h
    ints = _ints(
        in_h, in_w,
        (down, down), wd_adj, (fd_w - 1, fd_h - 1),
        (up, up), wu_adj, (fu_w - 1 - px0, fu_h - 1 - py0),
        MASK_BACKWARD, False, (0, used_w), (0, used_h),
    )  # fmt: skip
    return ResamplePlan(in_h, in_w, wd_adj, wu_adj, ints, slope, gain, -1.0)


def run(
    module,
    plan: ResamplePlan,
    src: torch.Tensor,
    bias: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Launch the resample kernel of the compiled ``module``: ``(dst, mask or None)``."""
    src = src.contiguous()
    if bias is not None:
        bias = bias.to(src.dtype).contiguous()  # read in the source's dtype, as the reference adds it
    return module.resample(src, bias, mask, plan.f1.values, plan.f3.values, plan.ints, plan.slope, plan.gain, plan.clamp)
