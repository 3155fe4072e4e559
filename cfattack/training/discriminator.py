"""StyleGAN2-style residual discriminator, used to train our own StyleGAN3 generators.

Layout (per halving of resolution): 3x3 conv -> 3x3 conv + 2x downsample, plus a 1x1
downsampled skip, summed with gain sqrt(1/2). At 4x4 an epilogue appends the minibatch
standard deviation, then conv -> dense -> one logit (or a projection onto an embedded
class label when conditional). Every layer uses equalised learning rate (weights scaled
by 1/sqrt(fan_in) at run time) and downsampling uses the [1, 3, 3, 1] binomial filter.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from stylegan3_ops import bias_act, setup_filter, upfirdn2d

__all__ = ["Discriminator"]


class _Conv(torch.nn.Module):
    """Equalised-lr conv with optional 2x downsampling (low-pass filter first) and activation."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, activation: str = "lrelu",
                 bias: bool = True, down: bool = False, conv_clamp: float | None = 256) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn([out_ch, in_ch, kernel, kernel]))
        self.bias = torch.nn.Parameter(torch.zeros([out_ch])) if bias else None
        self.weight_gain = 1 / np.sqrt(in_ch * kernel * kernel)
        self.activation = activation
        self.down = down
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", setup_filter([1, 3, 3, 1]))

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        w = self.weight * self.weight_gain
        k = w.shape[-1]
        if self.down:
            # Blur so that the strided conv does not alias: pad for a 'same' conv, then the 4-tap filter.
            p = (k - 1) // 2 + 1
            x = upfirdn2d(x, self.resample_filter, padding=[p, p, p, p])
            x = F.conv2d(x, w, stride=2)
        else:
            x = F.conv2d(x, w, padding=k // 2)
        clamp = None if self.conv_clamp is None else self.conv_clamp * gain
        return bias_act(x, self.bias, act=self.activation, gain=gain * (np.sqrt(2) if self.activation == "lrelu" else 1),
                        clamp=clamp)


class _Dense(torch.nn.Module):
    def __init__(self, in_f: int, out_f: int, activation: str = "linear") -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn([out_f, in_f]))
        self.bias = torch.nn.Parameter(torch.zeros([out_f]))
        self.weight_gain = 1 / np.sqrt(in_f)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return bias_act(x.matmul((self.weight * self.weight_gain).t()), self.bias, act=self.activation)


class _Block(torch.nn.Module):
    """Residual block: two convs (the second halves the resolution) plus a 1x1 downsampled skip."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv0 = _Conv(in_ch, in_ch, 3)
        self.conv1 = _Conv(in_ch, out_ch, 3, down=True)
        self.skip = _Conv(in_ch, out_ch, 1, activation="linear", bias=False, down=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.skip(x, gain=np.sqrt(0.5))
        x = self.conv1(self.conv0(x), gain=np.sqrt(0.5))
        return x + y


class Discriminator(torch.nn.Module):
    """images [N, C, R, R] (and labels c [N, c_dim]) -> realness logits [N, 1].

    Example::

        D = Discriminator(c_dim=0, img_resolution=32, img_channels=1, channel_base=2048, channel_max=64)
        logits = D(images, None)
    """

    def __init__(self, c_dim: int, img_resolution: int, img_channels: int, channel_base: int = 4096,
                 channel_max: int = 128, mbstd_group_size: int = 4, cmap_dim: int | None = None) -> None:
        super().__init__()
        if img_resolution < 8 or img_resolution & (img_resolution - 1):
            raise ValueError(f"img_resolution must be a power of two >= 8, got {img_resolution}")
        self._init_kwargs = dict(c_dim=c_dim, img_resolution=img_resolution, img_channels=img_channels,
                                 channel_base=channel_base, channel_max=channel_max,
                                 mbstd_group_size=mbstd_group_size, cmap_dim=cmap_dim)
        self.c_dim = c_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.mbstd_group_size = mbstd_group_size

        def channels(res: int) -> int:
            return min(channel_base // res, channel_max)

        resolutions = [img_resolution // 2**i for i in range(int(np.log2(img_resolution)) - 1)]  # R .. 4
        self.from_rgb = _Conv(img_channels, channels(img_resolution), 1)
        self.blocks = torch.nn.ModuleList(
            _Block(channels(res), channels(res // 2)) for res in resolutions[:-1]
        )
        top = channels(4)
        self.epilogue_conv = _Conv(top + 1, top, 3)
        self.epilogue_fc = _Dense(top * 16, top, activation="lrelu")
        self.cmap_dim = (cmap_dim or top) if c_dim > 0 else 0
        self.out = _Dense(top, max(self.cmap_dim, 1))
        self.embed = _Dense(c_dim, self.cmap_dim) if c_dim > 0 else None

    @property
    def init_kwargs(self) -> dict[str, Any]:
        return copy.deepcopy(self._init_kwargs)

    def _minibatch_std(self, x: torch.Tensor) -> torch.Tensor:
        """Append the std over groups of samples (averaged over features) as one extra channel."""
        n, c, h, w = x.shape
        g = min(self.mbstd_group_size, n)
        while n % g:
            g -= 1
        y = x.reshape(g, n // g, c, h, w)
        y = (y - y.mean(dim=0)).square().mean(dim=0).add(1e-8).sqrt()  # [n/g, C, H, W]
        y = y.mean(dim=[1, 2, 3]).reshape(-1, 1, 1, 1).repeat(g, 1, h, w)  # [N, 1, H, W]
        return torch.cat([x, y], dim=1)

    def forward(self, img: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        assert img.ndim == 4 and img.shape[1:] == (self.img_channels, self.img_resolution, self.img_resolution), img.shape
        x = self.from_rgb(img)
        for block in self.blocks:
            x = block(x)
        x = self.epilogue_conv(self._minibatch_std(x))
        x = self.out(self.epilogue_fc(x.flatten(1)))
        if self.c_dim > 0:
            assert c is not None and c.shape == (img.shape[0], self.c_dim), None if c is None else c.shape
            cmap = self.embed(c.to(x.dtype))
            x = (x * cmap).sum(dim=1, keepdim=True) / np.sqrt(self.cmap_dim)
        return x
