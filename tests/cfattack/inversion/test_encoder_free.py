"""Inversion without an encoder: search, W, then W+, on real images and on 64 px StyleGAN3 T and R."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from cfattack.bundle.loader import load_bundle
from cfattack.config import InversionConfig
from cfattack.errors import InvalidInputError
from cfattack.images import load_image
from cfattack.inversion.encoder import Encoder
from cfattack.inversion.inverter import ENCODER_PERCEPTUAL_WEIGHT, Inverter
from cfattack.stylegan.generator import Generator

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


@pytest.fixture(scope="module")
def bundle():
    return load_bundle("default")


def test_search_beats_the_average_start_on_real_images(bundle, one_thread):
    """The same 30 refinement steps from each start.

    Measured (torch 2.14, one thread): +5.0 / +4.0 / +4.3 / +9.3 dB, labels kept 4/4 vs 1/4; over
    all 20 example images every one improves (+0.6 to +13.3 dB, mean +5.6).
    """
    names = ["bag-1", "coat-1", "sandal-1", "sneaker-1"]
    images = torch.stack([load_image(EXAMPLES / f"{n}.png", channels=1, size=32) for n in names])
    G, clf = bundle.generator, bundle.classifier()
    # (No label retry: it would give the mislabelled reconstructions of either start more steps.)
    average = Inverter(G, None, clf, InversionConfig(start="average", steps=30, label_retry_steps=0)).invert(images)
    searched = Inverter(G, None, clf, InversionConfig(search_w_steps=15, steps=15, label_retry_steps=0)).invert(images)
    assert torch.all(searched.encoder_psnr > average.encoder_psnr + 3), (searched.encoder_psnr, average.encoder_psnr)
    assert torch.all(searched.psnr > average.psnr + 2), (searched.psnr, average.psnr)
    assert float((searched.psnr - average.psnr).mean()) > 4
    assert int(searched.label_match.sum()) >= max(3, int(average.label_match.sum()))
    assert searched.loss_curve[-1] < searched.loss_curve[0]


def test_the_encoder_path_is_unchanged_unless_the_search_is_asked_for(bundle, one_thread):
    G, E, clf = bundle.generator, bundle.encoder, bundle.classifier()
    plan = Inverter(G, E, clf, InversionConfig()).plan()
    # After an encoder start the classifier-feature term is on by default (it keeps the label).
    # An encoder's guess is close: 60 steps at lr 0.03 (other starts: 100 at 0.02).
    assert plan.start == "encoder" and plan.phases == (("w+", 60, 0.03),)
    assert Inverter(G, E, clf, InversionConfig(start="average")).plan().phases == (("w+", 100, 0.02),)
    assert Inverter(G, E, clf, InversionConfig(steps=7, lr=0.5)).plan().phases == (("w+", 7, 0.5),)
    assert plan.perceptual_weight == ENCODER_PERCEPTUAL_WEIGHT
    assert Inverter(G, E, clf, InversionConfig()).latents_depend_on_classifier()
    assert not Inverter(G, E, clf, InversionConfig(perceptual_weight=0)).latents_depend_on_classifier()
    assert Inverter(G, None, clf, InversionConfig()).latents_depend_on_classifier()
    images = torch.stack([load_image(EXAMPLES / "bag-1.png", channels=1, size=32)])
    with torch.no_grad():
        guess = E(images)
    assert torch.equal(Inverter(G, E, clf, InversionConfig(steps=0)).invert(images).ws, guess)
    searched = Inverter(G, E, clf, InversionConfig(start="search", search_starts=4, search_w_steps=0, steps=0))
    assert searched.plan().perceptual_weight > 0
    assert not torch.equal(searched.invert(images).ws, guess)


def test_plan_errors_and_defaults(bundle):
    G = bundle.generator
    with pytest.raises(InvalidInputError, match="needs an encoder"):
        Inverter(G, None, None, InversionConfig(start="encoder")).plan()
    with pytest.raises(InvalidInputError, match="needs a classifier"):
        Inverter(G, None, None, InversionConfig(perceptual_weight=0.2)).plan()
    plan = Inverter(G, None, None, InversionConfig()).plan()  # no classifier: pixels only
    assert plan.start == "search" and plan.perceptual_weight == 0 and plan.starts == 32
    assert plan.phases == (("w", 50, 0.1), ("w+", 100, 0.02))
    w_only = Inverter(G, None, None, InversionConfig(latent="w", search_w_steps=7, steps=3)).plan()
    assert w_only.phases == (("w", 7, 0.1), ("w", 3, 0.02))


class _ClassifierAt40(nn.Module):
    """An RGB classifier that reads 40 x 40 images (the generator makes 64 x 64)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1),
                                  nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU())
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        assert x.shape[1:] == (3, 40, 40), x.shape
        return self.head(self.body(x).mean(dim=[2, 3]))


@pytest.mark.parametrize("config_r", [False, True], ids=["T", "R"])
def test_random_64px_stylegan3_inverts_end_to_end(config_r, one_thread):
    torch.manual_seed(0)
    extra = dict(conv_kernel=1, use_radial_filters=True) if config_r else {}
    G = Generator(z_dim=16, c_dim=0, w_dim=16, img_resolution=64, img_channels=3, channel_base=256, channel_max=8,
                  num_layers=4, num_critical=1, **extra).eval().requires_grad_(False)
    with torch.no_grad():
        G.mapping.w_avg.copy_(G.mapping(torch.randn(200, 16), None)[:, 0].mean(0))
        images = G.synthesis(G.mapping(torch.randn(2, 16), None, truncation_psi=0.7), noise_mode="const").clamp(-1, 1)

    def to_40(x):
        return nn.functional.interpolate(x, size=40, mode="bilinear", antialias=True, align_corners=False)

    progress = []
    config = InversionConfig(search_starts=8, search_w_steps=2, steps=2)
    inverter = Inverter(G, None, _ClassifierAt40(), config, preprocess=to_40)
    result = inverter.invert(images, on_step=lambda done, total: progress.append((done, total)))
    assert result.ws.shape == (2, G.num_ws, 16) and result.reconstruction.shape == images.shape
    assert torch.isfinite(result.psnr).all() and result.label_match is not None
    assert progress == [(k, 5) for k in range(1, 6)]  # one search chunk of 8, then 2 + 2 steps
    assert len(result.loss_curve) == 4
    assert inverter.features().layer_names == ["body.0", "body.2", "body.4"]


def test_auto_start_follows_the_encoder(one_thread):
    """auto = the encoder when there is one, else the search; "average" ignores the encoder."""
    torch.manual_seed(0)
    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=1, channel_base=128, channel_max=8,
                  num_layers=3, num_critical=1, margin_size=2).eval().requires_grad_(False)
    E = Encoder(16, 1, G.num_ws, 8, channels=4, channel_max=8, w_avg=G.mapping.w_avg).eval()
    images = torch.rand(2, 1, 16, 16) * 2 - 1
    assert Inverter(G, E, None, InversionConfig()).plan().start == "encoder"
    assert Inverter(G, None, None, InversionConfig()).plan().start == "search"
    assert Inverter(G, E, None, InversionConfig(start="average")).start(images).std(dim=0).max() == 0
