"""Every released 512 px and 1024 px StyleGAN3 architecture through the own-models path, on random weights.

NVIDIA's init kwargs come from tests/data/golden/architectures.json (afhqv2 512, ffhq / ffhqu /
metfaces / metfacesu 1024, configs T and R; four distinct architectures). Each is built at full
width and put behind an ImageNet-style 224 px classifier through `Explainer(generator=...,
classifier=...)`. A backward pass at full width does not fit a CI machine (one 512 px config-T
step: 56 s and 13.8 GB on one CPU core, 1024 px about four times that), so the explanation itself
(one search start, one W step, one W+ step, at most one label-retry step, one class step from
class means of 8 labelled samples, one attack step) runs on the same architecture with thin
layers (channel_base 1024, channel_max / 64): real resolutions, layer counts, sampling rates,
filters, margins and config-R kernels. Marked ``slow``.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from cfattack.bundle.preprocess import IMAGENET
from cfattack.config import AttackConfig, InversionConfig
from cfattack.pipeline.explainer import Explainer
from cfattack.pipeline.explanation import ExplainConfig
from cfattack.stylegan.generator import Generator
from tests.golden import golden_file


def _release_architectures() -> dict[str, dict]:
    """``{pickle names: init kwargs}`` of the 512 and 1024 px releases, one entry per distinct architecture."""
    models = json.loads(golden_file("architectures.json").read_text())["models"]
    distinct: dict[str, tuple[list[str], dict]] = {}
    for model in models:
        if model["init_kwargs"]["img_resolution"] < 512:
            continue
        key = json.dumps(model["init_kwargs"], sort_keys=True)
        distinct.setdefault(key, ([], model["init_kwargs"]))[0].append(model["pickle"])
    return {"+".join(names): kwargs for names, kwargs in distinct.values()}


ARCHITECTURES = _release_architectures()
IDS = [names.split("+")[0].removesuffix(".pkl") for names in ARCHITECTURES]  # the first release of each


class _SmallImageNetNet(torch.nn.Module):
    """A 3 x 224 x 224 classifier with three classes (cat, dog, wild), random weights."""

    def __init__(self) -> None:
        super().__init__()
        self.features = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 7, stride=4, padding=3), torch.nn.ReLU(),
                                            torch.nn.Conv2d(8, 16, 3, stride=2, padding=1), torch.nn.ReLU())
        self.head = torch.nn.Linear(16 * 28 * 28, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


def test_every_512_and_1024_release_is_covered():
    names = "+".join(ARCHITECTURES)
    for release in ("t-afhqv2-512", "r-afhqv2-512", "t-ffhq-1024", "r-ffhq-1024", "r-metfaces-1024",
                    "t-metfaces-1024"):
        assert f"stylegan3-{release}x" in names
    assert len(ARCHITECTURES) == 4  # 512 T, 512 R, 1024 T, 1024 R


def _explainer(G: Generator, config: ExplainConfig | None = None) -> Explainer:
    return Explainer(generator=G, classifier=_SmallImageNetNet().eval(), class_names=["cat", "dog", "wild"],
                     config=config, input_size=224, normalization=IMAGENET)


@pytest.mark.slow
@pytest.mark.parametrize("releases", list(ARCHITECTURES), ids=IDS)
def test_release_architecture_at_full_width_behind_a_224px_classifier(releases):
    kwargs = ARCHITECTURES[releases]
    torch.manual_seed(0)
    G = Generator(**kwargs)
    explainer = _explainer(G)
    resolution = kwargs["img_resolution"]
    assert (explainer.bundle.spec.image.resolution, explainer.bundle.spec.image.kind) == (resolution, "photos")
    assert explainer.bundle.encoder is None and explainer.descriptor_model is None
    image = torch.rand(2, 3, resolution, resolution, requires_grad=True) * 2 - 1
    logits = explainer.bundle.classifier()(image)  # resized to 224 and normalised on the way
    assert logits.shape == (2, 3)
    logits.sum().backward()


@pytest.mark.slow
@pytest.mark.parametrize("releases", list(ARCHITECTURES), ids=IDS)
def test_release_architecture_runs_one_step_of_each_stage(releases):
    kwargs = dict(ARCHITECTURES[releases])
    kwargs["channel_base"] = 1024  # 32768 / 32 (config T) or 65536 / 64 (config R): every layer keeps channels
    kwargs["channel_max"] //= 64
    torch.manual_seed(0)
    G = Generator(**kwargs).eval()
    with torch.no_grad():  # random but non-degenerate input pose, as in a trained network
        G.synthesis.input.affine.weight.normal_(0, 0.01)
    config = ExplainConfig(
        attack=AttackConfig(steps=1, threshold=0.99, shift_search_px=0, robust_shift_px=0, class_search_steps=1,
                            class_mean_samples=8),
        inversion=InversionConfig(steps=1, search_starts=1, search_w_steps=1, search_batch=1, label_retry_steps=1),
        spread_samples=8, allow_same_class=True,
    )
    explainer = _explainer(G, config)
    resolution = G.img_resolution
    image = torch.rand(3, resolution, resolution) * 2 - 1
    exp = explainer.explain(image, target="dog")
    assert exp.steps == 1 and exp.inversion is not None
    assert exp.images.counterfactual.shape == (3, resolution, resolution)
    assert all(math.isfinite(a.standardized_change) for a in exp.attributions)
