"""The shipped default bundle loads offline and its pieces work together."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

import cfattack
from cfattack.cli.root import cli
from cfattack.training.data import FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, load_fashion_mnist

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def bundle():
    return cfattack.load_bundle("default")


def test_default_bundle_loads_with_all_parts(bundle):
    assert bundle.class_names == FASHION_MNIST_CLASSES
    assert bundle.default_classifier == "baseline" and bundle.encoder is not None
    assert bundle.class_index("Ankle boot") == 9 and bundle.class_index("T-shirt/top") == 0
    G = bundle.generator
    assert (G.img_resolution, G.img_channels, G.c_dim) == (32, 1, 10)  # conditional: one-hot class labels
    with torch.no_grad():
        img = G(torch.randn(4, G.z_dim), torch.eye(10)[[0, 1, 8, 9]], noise_mode="const")
        ws = bundle.encoder(img.clamp(-1, 1))
        logits = bundle.classifier()(img.clamp(-1, 1))
    assert img.shape == (4, 1, 32, 32) and torch.isfinite(img).all()
    assert ws.shape == (4, G.num_ws, G.w_dim) and logits.shape == (4, 10)


@pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="apt-get install dataset-fashion-mnist")
def test_default_classifier_accuracy_on_test_subset(bundle):
    test = load_fashion_mnist("test")
    with torch.no_grad():
        pred = bundle.classifier()(test.images[:1000]).argmax(1)
    assert float((pred == test.labels[:1000]).float().mean()) >= 0.9


def test_generate_from_default(tmp_path):
    result = CliRunner().invoke(cli, ["generate", "--network", "default", "--seeds", "0-3", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert len(list(tmp_path.glob("seed*.png"))) == 4
