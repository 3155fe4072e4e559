"""Inversion: refinement recovers images the generator can make; quality is reported honestly."""

from __future__ import annotations

import pytest
import torch

from cfattack.config import InversionConfig
from cfattack.inversion.encoder import Encoder
from cfattack.errors import InvalidInputError
from cfattack.stylegan.generator import Generator
from cfattack.inversion.inverter import Inverter


@pytest.fixture(scope="module")
def G():
    torch.manual_seed(0)
    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=1, channel_base=128, channel_max=8,
                  num_layers=3, num_critical=1, margin_size=2).eval().requires_grad_(False)
    with torch.no_grad():
        G.mapping.w_avg.copy_(G.mapping(torch.randn(500, 8), None)[:, 0].mean(0))
    return G


def test_refinement_recovers_a_generated_image(G):
    torch.manual_seed(1)
    with torch.no_grad():
        target = G.synthesis(G.mapping(torch.randn(3, 8), None), noise_mode="const").clamp(-1, 1)
    result = Inverter(G, config=InversionConfig(start="average", steps=150, lr=0.05)).invert(target)
    assert result.ws.shape == (3, G.num_ws, 8) and result.reconstruction.shape == target.shape
    assert torch.all(result.psnr > result.encoder_psnr + 3), (result.psnr, result.encoder_psnr)
    assert result.loss_curve[-1] < result.loss_curve[0]
    assert result.label_original is None and result.label_match is None


def test_zero_steps_is_encoder_only_and_w_mode_shares_one_w(G):
    E = Encoder(16, 1, G.num_ws, 8, channels=4, channel_max=8, w_avg=G.mapping.w_avg)
    images = torch.rand(2, 1, 16, 16) * 2 - 1
    enc_only = Inverter(G, encoder=E, config=InversionConfig(steps=0)).invert(images)
    assert torch.allclose(enc_only.ws, E(images))
    assert torch.allclose(enc_only.psnr, enc_only.encoder_psnr)
    w_mode = Inverter(G, config=InversionConfig(start="average", steps=5, latent="w")).invert(images)
    assert torch.allclose(w_mode.ws, w_mode.ws[:, :1].expand_as(w_mode.ws))


def test_poor_reconstructions_and_label_changes_are_flagged(G):
    noise = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1

    def brightness_classifier(x):  # class 1 when the mean is above 0: known labels
        m = x.mean(dim=[1, 2, 3])
        return torch.stack([-m, m], dim=1) * 100

    bright = noise.clone()
    bright[0] = 0.9  # a flat bright image the tiny generator cannot reach exactly? maybe; noise can't
    config = InversionConfig(start="average", steps=3, flag_psnr_below=40)
    result = Inverter(G, classifier=brightness_classifier, config=config).invert(bright)
    assert result.flagged.all()
    assert all(any("PSNR" in r for r in reasons) for reasons in result.reasons)
    assert result.label_match is not None and result.label_original.tolist()[0] == 1


def test_bad_input(G):
    inv = Inverter(G, config=InversionConfig(steps=1))
    with pytest.raises(InvalidInputError, match="images must be"):
        inv.invert(torch.zeros(2, 3, 16, 16))
    with pytest.raises(InvalidInputError, match="NaN"):
        inv.invert(torch.full((1, 1, 16, 16), float("nan")))


def test_hand_written_adam_matches_torch_adam_bit_for_bit():
    from cfattack.inversion.inverter import _Adam

    gen = torch.Generator().manual_seed(0)
    target = torch.randn(3, 5, 7, generator=gen)
    ours = torch.randn(3, 5, 7, generator=gen).requires_grad_(True)
    theirs = ours.detach().clone().requires_grad_(True)
    opt_ours, opt_theirs = _Adam(ours, lr=0.05), torch.optim.Adam([theirs], lr=0.05)
    for _ in range(25):
        ((ours - target) ** 3).abs().sum().backward()
        opt_ours.step()
        opt_theirs.zero_grad()
        ((theirs - target) ** 3).abs().sum().backward()
        opt_theirs.step()
    assert ours.grad is None
    assert torch.equal(ours.detach(), theirs.detach())
