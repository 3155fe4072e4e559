"""The perceptual term: zero for identical images, positive otherwise, from the classifier's own layers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cfattack.classifiers.backbone import build_classifier
from cfattack.errors import InvalidInputError
from cfattack.inversion.perceptual import ClassifierFeatures, feature_layers


def _plain_cnn(size: int = 24) -> nn.Module:
    """A plain CNN for [N, 3, size, size] with six convolutions and two Linear layers."""
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    channels = 3
    for width in (4, 4, 8, 8, 8, 8):
        layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU()]
        channels = width
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 16), nn.ReLU(),
                         nn.Linear(16, 5)).eval()


def test_identical_images_are_at_distance_zero_and_different_ones_are_not():
    net = _plain_cnn()
    features = ClassifierFeatures(net)
    gen = torch.Generator().manual_seed(1)
    a = torch.rand(3, 3, 24, 24, generator=gen) * 2 - 1
    b = a.clone()
    b[1] += 0.3 * torch.randn(3, 24, 24, generator=gen)
    b[2] = torch.rand(3, 24, 24, generator=gen) * 2 - 1
    with torch.no_grad():
        d = ClassifierFeatures.distance(features(a), features(b))
        pairs = ClassifierFeatures.pairwise(features(a), features(b))
    assert d.shape == (3,)
    assert float(d[0]) == pytest.approx(0.0, abs=1e-6)
    assert 0 < float(d[1]) < float(d[2]) <= 4
    # The pairwise form agrees with the per-image form on the diagonal.
    assert pairs.shape == (3, 3)
    assert torch.allclose(pairs.diagonal(), d, atol=1e-5)


def test_plain_module_gets_spread_conv_hooks_that_are_removed_afterwards():
    net = _plain_cnn()
    names = [n for n, _ in feature_layers(net)]
    convs = [n for n, m in net.named_modules() if isinstance(m, nn.Conv2d)]
    assert len(names) == 4 and names[-1] == convs[-1] and names[0] != convs[0]  # spread, last one included
    features = ClassifierFeatures(net)
    out = features(torch.zeros(2, 3, 24, 24))
    assert len(out.flat) == 4 and out.positions == [24 * 24] * 4
    assert all(not m._forward_hooks for m in net.modules())  # nothing stays attached to the classifier


def test_gradients_reach_the_images():
    net = _plain_cnn()
    features = ClassifierFeatures(net)
    target = features(torch.rand(1, 3, 24, 24) * 2 - 1)
    x = torch.zeros(1, 3, 24, 24, requires_grad=True)
    ClassifierFeatures.distance(features(x), target).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_cfattack_classifier_uses_its_conv_stages_and_embedding():
    clf = build_classifier(10).eval()
    names = [n for n, _ in feature_layers(clf)]
    assert names == ["backbone.features.0", "backbone.features.1", "backbone.features.2", "backbone"]
    out = ClassifierFeatures(clf)(torch.zeros(2, 1, 32, 32))
    assert out.positions == [16 * 16, 8 * 8, 4 * 4, 1]


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_mlp_scripted_and_exported_classifiers():
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 8), nn.Linear(8, 3)).eval()
    assert [n for n, _ in feature_layers(mlp)] == ["1", "3"]  # every Linear but the logits
    scripted = torch.jit.script(_plain_cnn())
    assert feature_layers(scripted) == []  # a TorchScript program takes no hooks: its logits are used
    features = ClassifierFeatures(scripted)
    assert features.layer_names == ["logits"]
    x = torch.rand(2, 3, 24, 24) * 2 - 1
    with torch.no_grad():
        assert float(ClassifierFeatures.distance(features(x), features(x)).abs().max()) < 1e-6
        assert float(ClassifierFeatures.distance(features(x), features(x.flip(0))).min()) > 0
    exported = torch.export.export(_plain_cnn(), (x,)).module()  # its modules hold weights, never run
    assert feature_layers(exported) == [] and ClassifierFeatures(exported)(x).positions == [1]


def test_named_layers_and_a_preprocess_for_another_input_size():
    net = _plain_cnn(size=48)
    seen = []

    def to_48(images):
        seen.append(images.shape[-1])
        return torch.nn.functional.interpolate(images, size=48, mode="bilinear", antialias=True)

    features = ClassifierFeatures(net, preprocess=to_48, layers=("0", "4"))
    out = features(torch.zeros(1, 3, 16, 16))
    assert seen == [16] and out.positions == [48 * 48, 48 * 48]
    with pytest.raises(InvalidInputError, match="no module named"):
        ClassifierFeatures(net, layers=("layer9",))
    with pytest.raises(InvalidInputError, match="takes no forward hooks"):
        ClassifierFeatures(lambda x: x.mean(dim=[2, 3]), layers=("0",))
