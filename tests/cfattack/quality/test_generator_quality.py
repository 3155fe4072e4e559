"""Generator quality numbers: Fréchet distance in a classifier embedding, coverage; `cfattack metrics fd`."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from cfattack.classifiers import build_classifier
from cfattack.classifiers.checkpoint import save_classifier_checkpoint
from cfattack.cli.root import cli
from cfattack.stylegan.generator import Generator
from cfattack.quality.generator_quality import generate_images, generator_quality
from cfattack.stylegan.checkpoint import save_generator_checkpoint
from cfattack.training.data import FASHION_MNIST_DIR, load_fashion_mnist


@pytest.fixture(scope="module")
def tiny_models():
    torch.manual_seed(0)
    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=32, img_channels=1, channel_base=128, channel_max=8,
                  num_layers=3, num_critical=1, margin_size=2).eval()
    clf = build_classifier(10, embedding_dim=16, width=8).eval()
    return G, clf


def test_generate_images_is_seeded(tiny_models):
    G, _ = tiny_models
    a, b = generate_images(G, 5, seed=3), generate_images(G, 5, seed=3, batch=2)
    assert a.shape == (5, 1, 32, 32) and torch.allclose(a, b, atol=1e-6)
    assert not torch.allclose(a, generate_images(G, 5, seed=4))


def test_real_images_score_near_their_floor_and_noise_far_above(tiny_models):
    """Sanity of the measure itself: real-vs-real is small, generator noise is far."""
    G, clf = tiny_models
    gen = torch.Generator().manual_seed(0)
    real_a = torch.rand(300, 1, 32, 32, generator=gen) * 0.2 - 1  # dark images
    real_b = torch.rand(300, 1, 32, 32, generator=gen) * 0.2 - 1
    q = generator_quality(G, clf, real_a, real_b, [str(i) for i in range(10)], num=300)
    assert q["frechet_distance_val_vs_test"] < q["frechet_distance_generated_vs_test"]
    assert q["frechet_ratio"] > 1
    assert abs(sum(q["coverage_class_share"].values()) - 1) < 1e-6


@pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="apt-get install dataset-fashion-mnist")
def test_metrics_fd_command(tmp_path, tiny_models):
    G, clf = tiny_models
    save_generator_checkpoint(G, tmp_path / "G.pt")
    save_classifier_checkpoint(clf, tmp_path / "clf.pt", metadata={"class_names": list(load_fashion_mnist("val").class_names)})
    result = CliRunner().invoke(cli, ["metrics", "fd", "--network", str(tmp_path / "G.pt"), "--classifier",
                                      str(tmp_path / "clf.pt"), "--num", "200", "--json", str(tmp_path / "q.json")])
    assert result.exit_code == 0, result.output
    assert "floor, real val vs test" in result.output
    saved = json.loads((tmp_path / "q.json").read_text())
    assert saved["num_generated"] == 200 and saved["frechet_distance_val_vs_test"] >= 0


def test_conditional_generator_reports_label_agreement(tiny_models):
    """The labels a conditional G is sampled with are reproducible, and agreement is measured on them."""
    from cfattack.quality.generator_quality import sample_labels
    from cfattack.quality.metrics import predict_probabilities

    _, clf = tiny_models
    torch.manual_seed(1)
    G = Generator(z_dim=8, c_dim=10, w_dim=8, img_resolution=32, img_channels=1, channel_base=128, channel_max=8,
                  num_layers=3, num_critical=1, margin_size=2).eval()
    labels = sample_labels(G, 200, seed=5)
    assert labels.shape == (200,) and len(labels.unique()) == 10
    fake = generate_images(G, 200, seed=5)
    assert torch.equal(fake, generate_images(G, 200, seed=5, class_labels=labels))
    real = torch.rand(200, 1, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    q = generator_quality(G, clf, real, real.flip(0), [str(i) for i in range(10)], num=200, seed=5)
    expected = (predict_probabilities(clf, fake).argmax(1) == labels).float().mean().item()
    assert q["label_agreement"] == pytest.approx(expected)
    assert "label_agreement" not in generator_quality(tiny_models[0], clf, real, real, [str(i) for i in range(10)],
                                                      num=50)
