"""Reconstruction quality of images in [-1, 1]: PSNR and SSIM, per image.

PSNR uses the data range 2 (from -1 to 1), so it equals the usual PSNR of the same images
mapped to [0, 1]. SSIM follows Wang et al. (2004): an 11-tap Gaussian window (sigma 1.5),
K1 = 0.01, K2 = 0.03, averaged over pixels and channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["psnr", "ssim"]

_RANGE = 2.0


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a, b [N, C, H, W] in [-1, 1] -> PSNR in dB [N] (inf where identical)."""
    assert a.shape == b.shape and a.ndim == 4, (a.shape, b.shape)
    mse = (a.float() - b.float()).square().mean(dim=[1, 2, 3])
    return 10 * torch.log10(_RANGE**2 / mse)


def _gaussian_window(size: int, sigma: float, device: torch.device) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    g = torch.exp(-coords.square() / (2 * sigma**2))
    return g / g.sum()


def ssim(a: torch.Tensor, b: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """a, b [N, C, H, W] in [-1, 1] -> mean structural similarity [N] (1 = identical).

    Uses the valid part of the image only (no padding), like the reference implementation.
    """
    assert a.shape == b.shape and a.ndim == 4, (a.shape, b.shape)
    n, c, h, w = a.shape
    window = min(window, h, w)
    g = _gaussian_window(window, sigma, a.device)
    kernel_x = g.view(1, 1, 1, -1).expand(c, 1, 1, window)
    kernel_y = g.view(1, 1, -1, 1).expand(c, 1, window, 1)

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(x, kernel_x, groups=c), kernel_y, groups=c)

    # Statistics on the [0, 1] scale so the constants have their usual meaning.
    x = (a.float() + 1) / 2
    y = (b.float() + 1) / 2
    c1, c2 = 0.01**2, 0.03**2
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x.square()
    var_y = blur(y * y) - mu_y.square()
    cov = blur(x * y) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    den = (mu_x.square() + mu_y.square() + c1) * (var_x + var_y + c2)
    return (num / den).mean(dim=[1, 2, 3])

