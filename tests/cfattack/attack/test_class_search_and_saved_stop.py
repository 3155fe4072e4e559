"""The class-direction first move, and the stop judged on the image as saved (8 bits)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from cfattack.attack.class_search import add_class_step, search_class_step
from cfattack.attack.latent_attack import LatentAttack
from cfattack.config import AttackConfig
from cfattack.images import quantize_8bit
from cfattack.stylegan.class_means import (
    class_input_matches,
    class_mean_latents,
    conditional_class_means,
    labelled_class_means,
)
from cfattack.stylegan.generator import Generator


def _score_on_coordinate(threshold: float):
    """Toy score: the objective is ws[:, 0, 0]; an item passes once it exceeds ``threshold``."""
    def score(ws):
        value = ws[:, 0, 0]
        return value, value > threshold
    return score


def test_class_search_takes_the_smallest_passing_step():
    ws0 = torch.zeros(3, 2, 2)
    ws0[1, :, 0] = 0.5  # closer to the line
    directions = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.1, 0.0]])
    step = search_class_step(_score_on_coordinate(0.6), ws0, directions, tries=8, reach=1.0)
    assert step[0].item() == pytest.approx(0.625)  # 5/8 is the first of k/8 above 0.6
    assert step[1].item() == pytest.approx(0.125)
    # The third never passes within reach: it starts from the best-scoring step, the largest.
    assert step[2].item() == pytest.approx(1.0)
    moved = add_class_step(ws0, step, directions)
    assert torch.equal(moved[0, :, 0], torch.full((2,), 0.625))  # every entry moves alike


def test_class_search_leaves_starts_that_pass_or_cannot_move():
    ws0 = torch.zeros(3, 1, 2)
    ws0[0, 0, 0] = 1.0  # already past: reported as such by the caller, never moved
    directions = torch.tensor([[1.0, 0.0], [float("nan"), 0.0], [-1.0, 0.0]])
    step = search_class_step(_score_on_coordinate(0.5), ws0, directions, tries=4)
    assert step.tolist() == [0.0, 0.0, 0.0]  # passing start; unknown class; every step lowers the score
    assert search_class_step(_score_on_coordinate(0.5), ws0, directions, tries=0).abs().sum() == 0


class _Coordinate(nn.Module):
    """Two classes on an "image" [N, 1, 1, 1]: logit of class 1 = scale * (x - centre)."""

    def __init__(self, scale: float, centre: float) -> None:
        super().__init__()
        self.scale, self.centre = scale, centre

    def forward(self, x):
        v = x.flatten(1)[:, 0]
        return torch.stack([torch.zeros_like(v), self.scale * (v - self.centre)], dim=1)


def _decode(ws):  # ws [N, 1, 1] -> an image [N, 1, 1, 1] in [-1, 1]
    return ws.unsqueeze(1).clamp(-1, 1)


def test_class_search_in_the_attack_reports_the_step_and_counts_it_in_the_distance():
    clf = _Coordinate(scale=50.0, centre=0.3)
    ws0 = torch.zeros(2, 1, 1)
    directions = torch.ones(2, 1)
    config = AttackConfig(class_search_steps=8, shift_search_px=0, robust_shift_px=0, steps=50)
    result = LatentAttack(_decode, clf, config).run(ws0, 1, class_directions=directions)
    # p > 0.9 needs x > 0.3 + ln(9) / 50 = 0.344: the first k/8 above it is 3/8.
    assert result.reached.all() and result.steps.tolist() == [0, 0]
    assert result.class_step.tolist() == [0.375, 0.375]
    assert result.summary()[0].class_step == 0.375
    torch.testing.assert_close(result.ws0, ws0)  # distances are measured from the inversion
    assert result.latent_distance.tolist() == pytest.approx([0.375, 0.375])
    # Without directions, or with the search off, the ascent starts at the inversion.
    plain = LatentAttack(_decode, clf, config).run(ws0, 1)
    assert plain.class_step is None and plain.steps.min() > 0


@pytest.mark.parametrize("stop_on_saved", [True, False])
def test_the_stop_is_judged_on_the_8_bit_image(stop_on_saved):
    # A PNG stores round((x + 1) * 127.5): near 0.5 its grid has 0.50588 and 0.51373, rounding at
    # 0.50980. p > 0.9 needs x > 0.506 here, so iterates 0.507..0.509 pass as floats but their
    # saved images round down to 0.50588 and do not; 0.510 rounds up and passes saved too.
    clf = _Coordinate(scale=200.0, centre=0.506 - math.log(9) / 200)
    config = AttackConfig(optimizer="normalized", lr=0.001, objective="margin", robust_shift_px=0,
                          shift_search_px=0, threshold=0.9, steps=100, stop_on_saved=stop_on_saved)
    result = LatentAttack(_decode, clf, config).run(torch.full((1, 1, 1), 0.5), 1)
    assert bool(result.reached[0])
    saved = quantize_8bit(result.images_cf)
    p_saved = torch.softmax(clf(saved), dim=1)[0, 1].item()
    if stop_on_saved:
        assert p_saved > 0.9 and result.steps.item() == 10
    else:
        assert p_saved < 0.9 and result.steps.item() == 7


def test_the_saved_stop_leaves_non_image_decoders_alone():
    # An "image" outside [-1, 1] is not what a PNG holds: it is judged as it is.
    clf = _Coordinate(scale=10.0, centre=1.2)
    config = AttackConfig(optimizer="normalized", lr=0.05, robust_shift_px=0, shift_search_px=0, steps=100)
    result = LatentAttack(lambda ws: ws.unsqueeze(1), clf, config).run(torch.full((1, 1, 1), 1.0), 1)
    assert bool(result.reached[0]) and result.images_cf.max() > 1


def _tiny_generator(c_dim: int) -> Generator:
    torch.manual_seed(0)
    return Generator(z_dim=4, c_dim=c_dim, w_dim=4, img_resolution=16, img_channels=1, channel_base=64,
                     channel_max=4, num_layers=2, num_critical=1, margin_size=2).eval()


def test_class_means_of_a_conditional_generator_are_its_mapped_means():
    G = _tiny_generator(3)
    means = conditional_class_means(G, samples=64, seed=1)
    assert means.shape == (3, 4)
    z = torch.randn(64, 4, generator=torch.Generator().manual_seed(1))
    c = torch.zeros(64, 3)
    c[:, 2] = 1
    with torch.no_grad():
        expected = G.mapping(z, c)[:, 0].mean(0)
    torch.testing.assert_close(means[2], expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(conditional_class_means(G, samples=64, seed=1), means)  # seeded: the same every call
    assert torch.equal(class_mean_latents(G), conditional_class_means(G))  # no classifier: the class input


def _brightness(images):
    """Class 1 = brighter than the median sample, class 0 darker, class 2 never predicted."""
    v = images.flatten(1).mean(1)
    return torch.stack([-(v - v.median()), v - v.median(), torch.full_like(v, -math.inf)], dim=1)


def test_class_means_of_an_unconditional_generator_come_from_the_classifier():
    G = _tiny_generator(0)
    assert class_mean_latents(G) is None  # no class input, no classifier: unknown
    means = class_mean_latents(G, classifier=_brightness, num_classes=3)
    assert means.shape == (3, 4)
    assert torch.isfinite(means[:2]).all() and torch.isnan(means[2]).all()
    assert not torch.allclose(means[0], means[1])
    torch.testing.assert_close(means, labelled_class_means(G, _brightness, 3), equal_nan=True)


def test_class_means_label_the_samples_asked_for_in_batches_bounded_by_pixels(monkeypatch):
    import cfattack.stylegan.class_means as class_means

    G = _tiny_generator(0)
    batches: list[int] = []
    with torch.no_grad():  # the median brightness of the 20 samples: half of them each class
        z = torch.randn(20, G.z_dim, generator=torch.Generator().manual_seed(0))
        middle = G.synthesis(G.mapping(z, None), noise_mode="const").clamp(-1, 1).flatten(1).mean(1).median()

    def darker_or_brighter(images):  # per image, so batching cannot change a label
        batches.append(len(images))
        v = images.flatten(1).mean(1) - middle
        return torch.stack([-v, v], dim=1)

    monkeypatch.setattr(class_means, "_SYNTHESIS_PIXELS", 3 * 16 * 16)  # three 16 px images per batch
    small = class_mean_latents(G, classifier=darker_or_brighter, num_classes=2, samples=20)
    assert sum(batches) == 20 and max(batches) == 3
    monkeypatch.setattr(class_means, "_SYNTHESIS_PIXELS", 1 << 21)
    batches.clear()
    whole = class_mean_latents(G, classifier=darker_or_brighter, num_classes=2, samples=20)
    assert batches == [20]
    assert torch.isfinite(whole).all()
    torch.testing.assert_close(small, whole)  # the same samples, only batched differently
    for resolution, images in ((32, 256), (64, 256), (512, 8), (1024, 2)):  # the shipped bound
        assert class_means._synthesis_chunk(SimpleNamespace(img_resolution=resolution)) == images


def test_a_class_input_that_means_something_else_is_not_used():
    # The generator's 3 class inputs are not the brightness classifier's classes: its labels win.
    G = _tiny_generator(3)
    assert not class_input_matches(G, _brightness, 3)
    assert not class_input_matches(G, _brightness, 2)  # another class count can never match
    means = class_mean_latents(G, classifier=_brightness, num_classes=3)
    torch.testing.assert_close(means, labelled_class_means(G, _brightness, 3), equal_nan=True)
    assert not torch.allclose(torch.nan_to_num(means), conditional_class_means(G))
