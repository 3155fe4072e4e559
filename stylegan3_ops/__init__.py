"""StyleGAN3's custom ops: bias_act, upfirdn2d and filtered_lrelu, in plain PyTorch.

The ops keep the argument names, defaults and semantics of NVIDIA's StyleGAN3
implementation so that official network weights give the same images. Each op
takes ``impl="auto" | "cuda" | "ref"`` (``None``: the ``CFATTACK_OPS`` environment
variable, default ``auto``): the pure-PyTorch reference runs on any device and is
differentiable through autograd; the CUDA kernels in ``csrc/`` are compiled with
ninja on the first CUDA call and cached (see :mod:`stylegan3_ops._build` and
docs/ops-troubleshooting.md). Importing this package compiles and loads nothing.

Quick start::

    >>> import torch
    >>> from stylegan3_ops import bias_act, filtered_lrelu, setup_filter, upfirdn2d
    >>> x = torch.randn(2, 4, 16, 16)
    >>> f = setup_filter([1, 3, 3, 1])
    >>> upfirdn2d(x, f, up=2, padding=[2, 1, 2, 1], gain=4).shape
    torch.Size([2, 4, 32, 32])
    >>> bias_act(x, torch.zeros(4), act="lrelu").shape
    torch.Size([2, 4, 16, 16])
"""

from stylegan3_ops._policy import OPS, OpsBackendError, backend_report, requested_impl, resolve_impl
from stylegan3_ops.bias_act import bias_act
from stylegan3_ops.filtered_lrelu import filtered_lrelu
from stylegan3_ops.upfirdn2d import downsample2d, filter2d, setup_filter, upfirdn2d, upsample2d

__all__ = [
    "OPS",
    "OpsBackendError",
    "backend_report",
    "bias_act",
    "downsample2d",
    "filter2d",
    "filtered_lrelu",
    "requested_impl",
    "resolve_impl",
    "setup_filter",
    "upfirdn2d",
    "upsample2d",
]
