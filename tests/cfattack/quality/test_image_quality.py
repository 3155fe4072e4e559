"""PSNR/SSIM known answers."""

import math

import pytest
import torch

from cfattack.quality.image_quality import psnr, ssim


def test_psnr_known_values():
    a = torch.zeros(2, 1, 8, 8)
    b = a.clone()
    b[0] += 0.2  # MSE 0.04 on range 2 -> 10 log10(4 / 0.04) = 20 dB
    b[1] += 2.0  # MSE 4 -> 0 dB
    torch.testing.assert_close(psnr(b, a), torch.tensor([20.0, 0.0]))
    assert math.isinf(float(psnr(a, a)[0]))


def test_ssim_identity_and_ordering():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(3, 1, 32, 32, generator=gen) * 2 - 1
    assert torch.allclose(ssim(x, x), torch.ones(3), atol=1e-5)
    slightly = (x + 0.05 * torch.randn(x.shape, generator=gen)).clamp(-1, 1)
    very = (x + 0.5 * torch.randn(x.shape, generator=gen)).clamp(-1, 1)
    s1, s2 = ssim(slightly, x), ssim(very, x)
    assert torch.all(s1 > s2) and torch.all(s1 < 1) and torch.all(s2 > -1)


def test_ssim_of_constant_shift_is_luminance_term():
    """Two flat images: SSIM reduces to the luminance term (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1)."""
    a = torch.full((1, 1, 16, 16), -0.5)  # 0.25 on [0, 1]
    b = torch.full((1, 1, 16, 16), 0.0)  # 0.5
    c1 = 0.01**2
    expected = (2 * 0.25 * 0.5 + c1) / (0.25**2 + 0.5**2 + c1)
    assert float(ssim(a, b)[0]) == pytest.approx(expected, rel=1e-4)
