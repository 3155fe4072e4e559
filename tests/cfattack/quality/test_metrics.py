"""Metrics: known answers for label metrics, mistake severity, embedding structure, the Fréchet distance and class coverage."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from cfattack.classifiers import build_classifier
from cfattack.classifiers.hierarchy import FASHION_MNIST_HIERARCHY
from cfattack.errors import InvalidInputError
from cfattack.quality.metrics import (
    accuracy,
    class_coverage,
    confusion_matrix,
    davies_bouldin,
    dead_units,
    embed_images,
    embedding_metrics,
    frechet_distance,
    knn_purity,
    macro_f1,
    mistake_severity,
    predict_probabilities,
    silhouette,
)


pytestmark = pytest.mark.usefixtures("one_thread")


# -- label metrics --------------------------------------------------------------------------------

Y_TRUE = [0, 0, 0, 1, 1, 2]
Y_PRED = [0, 0, 1, 1, 2, 2]


def test_accuracy() -> None:
    assert accuracy(Y_TRUE, Y_PRED) == pytest.approx(4 / 6)
    assert accuracy(torch.tensor(Y_TRUE), torch.tensor(Y_TRUE)) == 1.0
    assert accuracy(np.array([1, 2]), np.array([0, 0])) == 0.0


def test_confusion_matrix() -> None:
    cm = confusion_matrix(Y_TRUE, Y_PRED)
    assert cm.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert confusion_matrix([0], [1], num_classes=4).shape == (4, 4)
    with pytest.raises(InvalidInputError, match="num_classes"):
        confusion_matrix([0, 5], [0, 1], num_classes=3)


def test_macro_f1_known_answer() -> None:
    # class 0: P = 2/2, R = 2/3 -> F1 = 0.8; class 1: P = 1/2, R = 1/2 -> 0.5; class 2: P = 1/2, R = 1 -> 2/3.
    assert macro_f1(Y_TRUE, Y_PRED) == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert macro_f1(Y_TRUE, Y_TRUE) == 1.0
    # A class that is only ever predicted (never true) counts with F1 = 0, as in scikit-learn.
    assert macro_f1([0, 0], [0, 1]) == pytest.approx((2 / 3 + 0) / 2)
    # Classes absent from both arrays do not count.
    assert macro_f1([3, 3], [3, 3]) == 1.0


@pytest.mark.parametrize("y_true, y_pred, match", [
    ([0, 1], [0], "differ in length"),
    ([], [], "empty"),
    ([[0, 1]], [[0, 1]], "1-D"),
    ([0.5, 1.0], [0, 1], "integer"),
    ([-1, 0], [0, 0], "negative"),
])
def test_label_metrics_reject_bad_input(y_true, y_pred, match) -> None:
    with pytest.raises(InvalidInputError, match=match):
        accuracy(y_true, y_pred)


# -- Fréchet distance ------------------------------------------------------------------------------


def _with_exact_moments(n: int, mean: np.ndarray, cov: np.ndarray, seed: int) -> np.ndarray:
    """n samples whose sample mean and (unbiased) sample covariance are exactly mean and cov."""
    d = mean.shape[0]
    x = np.random.default_rng(seed).standard_normal((n, d))
    x -= x.mean(axis=0)
    x = x @ np.linalg.inv(np.linalg.cholesky(np.atleast_2d(np.cov(x, rowvar=False)))).T  # sample cov = I
    return x @ np.linalg.cholesky(cov).T + mean


def test_identical_sets_are_at_distance_zero() -> None:
    feats = np.random.default_rng(0).standard_normal((300, 16)) @ np.random.default_rng(1).standard_normal((16, 16))
    assert frechet_distance(feats, feats) == pytest.approx(0.0, abs=1e-8)
    assert frechet_distance(torch.from_numpy(feats).float(), torch.from_numpy(feats).float()) < 1e-3


def test_diagonal_gaussians_closed_form() -> None:
    # For commuting covariances: d^2 = ||mu_a - mu_b||^2 + sum (sqrt(a_i) - sqrt(b_i))^2.
    var_a, var_b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    mu_a, mu_b = np.array([0.0, 1.0, 2.0]), np.array([3.0, 1.0, -2.0])
    a = _with_exact_moments(500, mu_a, np.diag(var_a), seed=2)
    b = _with_exact_moments(400, mu_b, np.diag(var_b), seed=3)
    expected = (9 + 0 + 16) + (1 + 1 + 0)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(b, a) == pytest.approx(expected, rel=1e-9)


def test_full_covariances_match_the_definition() -> None:
    rng = np.random.default_rng(4)
    m_a, m_b = rng.standard_normal((5, 5)), rng.standard_normal((5, 5))
    cov_a, cov_b = m_a @ m_a.T + 0.1 * np.eye(5), m_b @ m_b.T + 0.1 * np.eye(5)
    mu_a, mu_b = rng.standard_normal(5), rng.standard_normal(5)
    a = _with_exact_moments(200, mu_a, cov_a, seed=5)
    b = _with_exact_moments(300, mu_b, cov_b, seed=6)
    root = scipy.linalg.sqrtm(cov_a @ cov_b).real
    expected = np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(root)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-8)


def test_singular_covariances_are_handled() -> None:
    rng = np.random.default_rng(7)
    # Fewer samples than dimensions, a dead (constant) unit, and duplicated columns.
    a = rng.standard_normal((10, 32))
    a[:, 0] = 0.0
    a[:, 1] = a[:, 2]
    b = rng.standard_normal((12, 32)) + 0.5
    b[:, 0] = 0.0
    d_ab, d_ba = frechet_distance(a, b), frechet_distance(b, a)
    assert np.isfinite(d_ab) and d_ab > 0 and d_ab == pytest.approx(d_ba, rel=1e-8)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)


def test_one_dimensional_features() -> None:
    a = _with_exact_moments(50, np.array([1.0]), np.array([[4.0]]), seed=8)
    b = _with_exact_moments(60, np.array([-1.0]), np.array([[1.0]]), seed=9)
    assert frechet_distance(a, b) == pytest.approx(4 + (2 - 1) ** 2)


@pytest.mark.parametrize("a, b, match", [
    (np.zeros((1, 3)), np.zeros((5, 3)), "at least 2"),
    (np.zeros((5, 3)), np.zeros((5, 4)), "feature sizes differ"),
    (np.zeros(5), np.zeros((5, 1)), r"\[N, D\]"),
    (np.full((3, 2), np.nan), np.zeros((3, 2)), "NaN"),
])
def test_frechet_rejects_bad_input(a, b, match) -> None:
    with pytest.raises(InvalidInputError, match=match):
        frechet_distance(a, b)


# -- classifier-driven metrics -----------------------------------------------------------------------


class _FirstPixels(torch.nn.Module):
    """Logits = the first K pixels times 10: predictions and confidences are set by the images."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k
        self.scale = torch.nn.Parameter(torch.tensor(10.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, :self.k] * self.scale


def test_class_coverage_known_answer() -> None:
    images = torch.zeros(8, 1, 4, 4)
    # 4 images confidently class 0, 2 confidently class 1, 2 unsure between classes 1 and 2.
    images[:4, 0, 0, 0] = 1.0
    images[4:6, 0, 0, 1] = 1.0
    images[6:, 0, 0, 1] = 0.05
    cov = class_coverage(_FirstPixels(3), images, class_names=["a", "b", "c"], batch=3)
    assert cov["num_samples"] == 8 and cov["threshold"] == 0.8
    assert cov["class_share"] == {"a": 0.5, "b": 0.5, "c": 0.0}
    assert cov["min_class_share"] == 0.0
    assert cov["confident_share"] == pytest.approx(6 / 8)
    assert cov["confident_share_per_class"] == {"a": 1.0, "b": 0.5, "c": 0.0}
    assert list(class_coverage(_FirstPixels(3), images)["class_share"]) == ["0", "1", "2"]
    with pytest.raises(InvalidInputError, match="class names"):
        class_coverage(_FirstPixels(3), images, class_names=["a"])


def test_predict_probabilities_sum_to_one() -> None:
    probs = predict_probabilities(_FirstPixels(4), torch.randn(7, 1, 4, 4), batch=2)
    assert probs.shape == (7, 4) and torch.allclose(probs.sum(1), torch.ones(7))


def test_embed_images_uses_eval_mode_and_restores_it() -> None:
    torch.manual_seed(0)
    model = build_classifier(3, width=8, embedding_dim=12).train()
    images = torch.rand(10, 1, 32, 32) * 2 - 1
    feats = embed_images(model, images, batch=4)
    assert model.training  # restored
    model.eval()
    with torch.no_grad():
        expected = model.embed(images)
    assert feats.shape == (10, 12) and feats.dtype == torch.float32
    assert torch.allclose(feats, expected, atol=1e-5)
    with pytest.raises(InvalidInputError, match="embed"):
        embed_images(_FirstPixels(3), images)
    with pytest.raises(InvalidInputError, match=r"\[N, C, H, W\]"):
        embed_images(model, images[0])


# -- mistake severity and embedding structure -------------------------------------------------------------


def test_mistake_severity_known_answer() -> None:
    d = np.array([[0, 1, 3], [1, 0, 3], [3, 3, 0]])
    # Errors: 0 -> 1 (distance 1), 2 -> 0 (3); the correct prediction does not count.
    assert mistake_severity([0, 2, 1], [1, 0, 1], d) == pytest.approx(2.0)
    assert mistake_severity([0, 1], [0, 1], d) == 0.0
    # With the Fashion-MNIST tree: shirt -> t-shirt is 1, bag -> sneaker is 3, dress -> coat is 2.
    names = FASHION_MNIST_HIERARCHY.class_names
    idx = names.index
    fm = FASHION_MNIST_HIERARCHY.distance_matrix()
    y_true = [idx("shirt"), idx("bag"), idx("dress"), idx("coat")]
    y_pred = [idx("t-shirt"), idx("sneaker"), idx("coat"), idx("coat")]
    assert mistake_severity(y_true, y_pred, fm) == pytest.approx((1 + 3 + 2) / 3)
    with pytest.raises(InvalidInputError, match="square"):
        mistake_severity([0], [1], np.zeros((2, 3)))
    with pytest.raises(InvalidInputError, match="no row"):
        mistake_severity([0], [5], d)


# 1-D: class 0 at {0, 1}, class 1 at {4, 5}.
TWO_PAIRS = np.array([[0.0], [1.0], [4.0], [5.0]])
TWO_PAIRS_LABELS = [0, 0, 1, 1]


def test_silhouette_known_answer() -> None:
    # s = (b - a) / max(a, b): outer points a = 1, b = 4.5 -> 7/9; inner points a = 1, b = 3.5 -> 5/7.
    assert silhouette(TWO_PAIRS, TWO_PAIRS_LABELS) == pytest.approx((7 / 9 + 5 / 7) / 2)
    assert silhouette(torch.tensor(TWO_PAIRS), torch.tensor(TWO_PAIRS_LABELS)) == pytest.approx((7 / 9 + 5 / 7) / 2)
    with pytest.raises(InvalidInputError, match="distinct labels"):
        silhouette(TWO_PAIRS, [0, 0, 0, 0])


def test_davies_bouldin_known_answer() -> None:
    # Centroids 0.5 and 4.5, mean distance to them 0.5 each: (0.5 + 0.5) / 4.
    assert davies_bouldin(TWO_PAIRS, TWO_PAIRS_LABELS) == pytest.approx(0.25)


def test_knn_purity_known_answer() -> None:
    x = np.array([[0.0], [1.0], [2.0], [10.0], [11.0], [5.9]])
    labels = [0, 0, 0, 1, 1, 1]
    # k = 1: nearest neighbours 1, 0 (tie 0/2 -> either is class 0), 1, 4, 3, and 2 (class 0) for the stray 5.9.
    assert knn_purity(x, labels, k=1) == pytest.approx(5 / 6)
    assert knn_purity(TWO_PAIRS, TWO_PAIRS_LABELS, k=1) == 1.0
    # k = 2 on the pairs: the partner and one point of the other class.
    assert knn_purity(TWO_PAIRS, TWO_PAIRS_LABELS, k=2, chunk=3) == pytest.approx(0.5)
    with pytest.raises(InvalidInputError, match="k must be"):
        knn_purity(TWO_PAIRS, TWO_PAIRS_LABELS, k=4)


def test_dead_units_known_answer() -> None:
    x = np.array([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 2.0, 1e-9], [0.0, 3.0, 0.0, 0.0]])
    assert dead_units(x) == 1  # column 0; column 3 is tiny but not zero
    assert dead_units(x, atol=1e-6) == 2
    assert dead_units(torch.zeros(5, 7)) == 7


def test_embedding_metrics_bundle_everything() -> None:
    out = embedding_metrics(TWO_PAIRS, TWO_PAIRS_LABELS, k=1)
    assert out == {"silhouette": pytest.approx((7 / 9 + 5 / 7) / 2), "davies_bouldin": pytest.approx(0.25),
                   "knn_purity": 1.0, "knn_k": 1, "dead_units": 0, "embedding_dim": 1}
