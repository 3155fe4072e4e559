"""The encoder-free start: the search keeps the closest candidate; the schedule follows resolution."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cfattack.config import InversionConfig
from cfattack.inversion.inverter import Inverter
from cfattack.inversion.perceptual import ClassifierFeatures
from cfattack.inversion.search import best_candidates, candidate_classes, candidate_ws, schedule_for_resolution
from cfattack.stylegan.generator import Generator


def _tiny_generator(c_dim: int = 0) -> Generator:
    torch.manual_seed(0)
    G = Generator(z_dim=8, c_dim=c_dim, w_dim=8, img_resolution=16, img_channels=1, channel_base=128, channel_max=8,
                  num_layers=3, num_critical=1, margin_size=2).eval().requires_grad_(False)
    c = torch.eye(c_dim)[torch.arange(500) % c_dim] if c_dim else None
    with torch.no_grad():
        G.mapping.w_avg.copy_(G.mapping(torch.randn(500, 8), c)[:, 0].mean(0))
    return G


def _decode(G, ws):
    with torch.no_grad():
        return G.synthesis(ws, noise_mode="const").clamp(-1, 1)


class _TinyClassifier(nn.Module):
    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.conv1, self.conv2 = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 4, 3, stride=2, padding=1)
        self.fc = nn.Linear(4, classes)

    def forward(self, x):
        return self.fc(torch.relu(self.conv2(torch.relu(self.conv1(x)))).mean(dim=[2, 3]))


def test_schedule_for_resolution():
    small, mid, large, huge = (schedule_for_resolution(r) for r in (32, 256, 512, 1024))
    assert schedule_for_resolution(64) == small and schedule_for_resolution(65) != small
    assert small.starts < 128 and small.w_steps <= 50
    assert mid.starts == large.starts == huge.starts == 128  # the paper's 128 starts from 256 px on
    assert small.w_steps < mid.w_steps < large.w_steps < huge.w_steps
    assert small.chunk > mid.chunk > large.chunk > huge.chunk >= 1
    assert schedule_for_resolution(4096) == huge
    with pytest.raises(ValueError):
        schedule_for_resolution(0)


def test_best_candidates_finds_the_generating_latent_across_chunks():
    G = _tiny_generator()
    ws = candidate_ws(G, 12, 0.7, seed=3)
    assert torch.equal(ws, candidate_ws(G, 12, 0.7, seed=3))  # seeded: the same candidates again
    targets = _decode(G, ws[[9, 5]])
    chunks = []

    def mse(images):
        return (images.unsqueeze(1) - targets.unsqueeze(0)).square().mean(dim=[2, 3, 4])

    best, score = best_candidates(lambda w: _decode(G, w), ws, mse, chunk=5, on_chunk=lambda: chunks.append(1))
    assert len(chunks) == 3
    assert torch.equal(best, ws[[9, 5]]) and float(score.max()) < 1e-10


def test_inverter_search_keeps_the_candidate_of_least_distance():
    G, clf = _tiny_generator(), _TinyClassifier()
    config = InversionConfig(search_starts=16, search_batch=6, search_seed=4, perceptual_weight=0.5)
    inverter = Inverter(G, None, clf, config)
    candidates = candidate_ws(G, 16, config.search_truncation, config.search_seed)
    exact = _decode(G, candidates[[3]])
    noisy = (_decode(G, candidates[[11]]) + 0.3 * torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(0)))
    images = torch.cat([exact, noisy.clamp(-1, 1)])
    start = inverter.start(images)
    assert torch.equal(start[0], candidates[3])
    # Brute force: the score of every candidate against every image, as the search defines it.
    decoded = _decode(G, candidates)
    features = ClassifierFeatures(clf)
    with torch.no_grad():
        scores = torch.stack([
            (decoded - image).square().mean(dim=[1, 2, 3])
            + 0.5 * ClassifierFeatures.distance(features(decoded), features(image.expand_as(decoded)))
            for image in images], dim=1)
    chosen = [int((candidates == start[i]).all(dim=2).all(dim=1).nonzero()) for i in range(2)]
    assert chosen == scores.argmin(dim=0).tolist()
    assert torch.allclose(scores[chosen, [0, 1]], scores.min(dim=0).values)


def test_conditional_generator_searches_the_predicted_class_or_every_class():
    G = _tiny_generator(c_dim=3)
    assert candidate_classes(3, 7).tolist() == [0, 1, 2, 0, 1, 2, 0]
    images = _decode(G, candidate_ws(G, 3, 0.7, seed=1, classes=torch.tensor([0, 1, 2])))

    def predicts(labels):
        return lambda x: torch.nn.functional.one_hot(torch.tensor(labels[: len(x)]), 3).float() * 10

    config = InversionConfig(search_starts=6, search_seed=1, perceptual_weight=0)
    inverter = Inverter(G, None, predicts([2, 2, 0]), config)
    groups = inverter._search_groups(images, 6)
    assert sorted((g[0].tolist(), g[1].unique().tolist()) for g in groups) == [([0, 1], [2]), ([2], [0])]
    # Candidates of the predicted class only: image 2 (predicted class 0) starts from a class-0 latent.
    class0 = candidate_ws(G, 6, 0.7, seed=1, classes=torch.zeros(6, dtype=torch.long))
    start = inverter.start(images)
    assert any(torch.equal(start[2], w) for w in class0)
    # A classifier whose outputs are not the generator's classes: starts spread over every class.
    spread = Inverter(G, None, lambda x: torch.zeros(len(x), 5), config)._search_groups(images, 6)
    assert len(spread) == 1 and spread[0][1].tolist() == [0, 1, 2, 0, 1, 2]
