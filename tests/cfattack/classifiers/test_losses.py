"""Training losses: known answers for Magnet/Latent Boost, LCC, semantic targets and the hierarchy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cfattack.classifiers import build_classifier
from cfattack.classifiers.hierarchy import FASHION_MNIST_HIERARCHY, ClassHierarchy, hierarchy_for
from cfattack.classifiers.lcc import (
    LatentClusterCorrection,
    knn_indices,
    match_clusters,
    plan_cluster_correction,
)
from cfattack.classifiers.losses import (
    LOSSES,
    CrossEntropy,
    LatentBoostLoss,
    SemanticLabelLoss,
    linear_ramp,
    magnet_terms,
    semantic_soft_targets,
)
from cfattack.config import ClassifierTrainingConfig
from cfattack.errors import InvalidInputError
from cfattack.training.data import FASHION_MNIST_CLASSES, ImageDataset

pytestmark = pytest.mark.usefixtures("one_thread")


# -- Magnet / Latent Boost ------------------------------------------------------------------------------


def _blobs(centres: list[list[float]], per: int = 8, spread: float = 0.1, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.cat([torch.tensor(c) + spread * torch.randn(per, len(c), generator=gen) for c in centres])
    y = torch.arange(len(centres)).repeat_interleave(per)
    return x, y


def test_magnet_is_zero_for_well_separated_clusters() -> None:
    x, y = _blobs([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    terms = magnet_terms(x, y, alpha=1.0)
    assert terms.shape == (24,) and torch.all(terms == 0)


def test_magnet_equals_alpha_when_classes_share_one_distribution() -> None:
    # Both classes are the same four points: equal means and variances, so every term is
    # relu(d/2s^2 + alpha - d/2s^2) = alpha.
    pts = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 2.0], [0.0, -2.0]])
    x, y = torch.cat([pts, pts]), torch.tensor([0] * 4 + [1] * 4)
    assert torch.allclose(magnet_terms(x, y, alpha=0.7), torch.full((8,), 0.7), atol=1e-6)
    # With alpha 0 the hinge makes it exactly zero.
    assert torch.allclose(magnet_terms(x, y, alpha=0.0), torch.zeros(8), atol=1e-6)


def test_magnet_known_value_with_per_cluster_variance() -> None:
    # 1-D. Class 0 at {-1, 1}: mean 0, variance (1 + 1) / (2 - 1) = 2. Class 1 at {3, 5}: mean 4, variance 2.
    x = torch.tensor([[-1.0], [1.0], [3.0], [5.0]])
    y = torch.tensor([0, 0, 1, 1])
    # Sample 1 (x = 1): pull 1/4, push -9/4 -> relu(1/4 + alpha - 9/4) = alpha - 2.
    terms = magnet_terms(x, y, alpha=2.5)
    assert float(terms[1]) == pytest.approx(0.5, abs=1e-6)
    assert float(terms[0]) == pytest.approx(max(0.0, 0.25 + 2.5 - 25 / 4), abs=1e-6)


def test_magnet_single_class_and_gradients() -> None:
    x = torch.randn(6, 3, requires_grad=True)
    single = magnet_terms(x, torch.zeros(6, dtype=torch.long), alpha=1.0)
    assert torch.equal(single, torch.zeros(6))
    single.sum().backward()
    assert torch.equal(x.grad, torch.zeros(6, 3))
    x.grad = None
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    magnet_terms(x, y, alpha=1.0).mean().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    # A class seen once falls back to the pooled variance and stays finite.
    z = torch.randn(5, 3, requires_grad=True)
    out = magnet_terms(z, torch.tensor([0, 0, 0, 1, 2]), alpha=1.0)
    out.mean().backward()
    assert torch.isfinite(out).all() and torch.isfinite(z.grad).all()


def test_latent_boost_schedules() -> None:
    assert linear_ramp(0.0, 1.0, 0, 4) == 0.0 and linear_ramp(0.0, 1.0, 2, 4) == 0.5
    assert linear_ramp(0.0, 1.0, 9, 4) == 1.0 and linear_ramp(3.0, 1.0, 1, 0) == 1.0
    loss = LatentBoostLoss(epochs=5, weight=0.5, warmup_epochs=2, alpha_start=0.0, alpha_end=1.0)
    x, y = _blobs([[0.0, 0.0], [0.5, 0.0]], spread=1.0)
    logits = torch.randn(16, 2)
    # Epoch 0: weight 0, pure cross-entropy.
    loss.on_epoch_start(model=None, data=None, epoch=0, rng=None)
    assert float(loss(logits, x, y)) == pytest.approx(float(F.cross_entropy(logits, y)))
    loss.on_epoch_start(model=None, data=None, epoch=1, rng=None)
    assert loss.metric_weight() == 0.25 and loss.alpha() == 0.25
    loss.on_epoch_start(model=None, data=None, epoch=4, rng=None)
    assert loss.metric_weight() == 0.5 and loss.alpha() == 1.0
    expected = F.cross_entropy(logits, y) + 0.5 * magnet_terms(x, y, 1.0).mean()
    assert float(loss(logits, x, y)) == pytest.approx(float(expected), rel=1e-5)
    assert set(loss.parts) == {"ce", "magnet"}
    assert loss.epoch_record() == {"magnet_weight": 0.5, "magnet_alpha": 1.0}
    # The epoch is a buffer, so it is checkpointed.
    assert int(loss.state_dict()["epoch"]) == 4


def test_latent_boost_pca_keeps_separated_clusters_separated() -> None:
    x, y = _blobs([[0.0] * 6, [10.0] + [0.0] * 5, [0.0, 10.0] + [0.0] * 4])
    loss = LatentBoostLoss(epochs=1, weight=1.0, warmup_epochs=0, alpha_start=1.0, alpha_end=1.0, pca_dim=2)
    reduced = loss._reduce(x)
    assert reduced.shape == (24, 2)
    # Distances within the top two principal directions: the clusters stay apart, the term stays 0.
    assert torch.all(magnet_terms(reduced, y, 1.0) == 0)


# -- LCC ----------------------------------------------------------------------------------------------------

# Class 0: a clique of six points near the origin. Class 1: six points around (100, 0).
# One class-0 point u sits at (100, 0), inside class 1's cluster: it is the only misclustered
# sample. Its five nearest correctly clustered class-0 points are the unit square's corners and
# centre (the sixth, at (-5, 0), is farther), so its target is their mean (0.5, 0.5).
LCC_A = [[0, 0], [0, 1], [1, 0], [1, 1], [0.5, 0.5], [-5, 0]]
LCC_B = [[99, 1], [99, -1], [101, 1], [101, -1], [100, 2], [100, -2]]
LCC_U = [[100, 0]]


def _lcc_example() -> tuple[torch.Tensor, torch.Tensor]:
    emb = torch.tensor(LCC_A + LCC_B + LCC_U, dtype=torch.float32)
    return emb, torch.tensor([0] * 6 + [1] * 6 + [0])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lcc_finds_the_misclustered_point_and_its_target(seed: int) -> None:
    emb, labels = _lcc_example()
    plan = plan_cluster_correction(emb, labels, num_classes=2, k=5, seed=seed)
    assert plan.clusters.tolist() == [0] * 6 + [1] * 7          # u joins class 1's community
    assert plan.cluster_class.tolist() == [0, 1]
    assert plan.correct.tolist() == [True] * 12 + [False]
    assert plan.index.tolist() == [12]
    assert torch.allclose(plan.targets, torch.tensor([[0.5, 0.5]]))


def test_lcc_target_is_the_nearest_matched_cluster() -> None:
    # Class 0 owns two clusters; the misclustered point's target comes from the nearer one.
    emb = torch.tensor([[0.0, 0.0], [0.0, 1.0], [10.0, 0.0], [10.0, 2.0], [5.0, 5.0], [12.0, 0.0]])
    labels = torch.tensor([0, 0, 0, 0, 1, 0])
    clusters = torch.tensor([0, 0, 1, 1, 2, 2])
    cluster_class = torch.tensor([0, 0, 1])
    from cfattack.classifiers.lcc import correction_targets

    index, targets = correction_targets(emb, labels, clusters, cluster_class, k=5)
    # Sample 5 (class 0, in class 1's cluster 2): cluster 0 mean (0, 0.5), cluster 1 mean (10, 1) -> nearer.
    assert index.tolist() == [5] and torch.allclose(targets, torch.tensor([[10.0, 1.0]]))
    # k = 1: the single nearest correct sample of each cluster, (0, 0) or (10, 0); (10, 0) is nearer.
    _, targets = correction_targets(emb, labels, clusters, cluster_class, k=1)
    assert torch.allclose(targets, torch.tensor([[10.0, 0.0]]))


def test_match_clusters_known_answers() -> None:
    # Majority vote where it covers every class: clusters 0, 1 -> class 0, cluster 2 -> class 1.
    clusters = np.array([0] * 5 + [1] * 4 + [2] * 4)
    labels = np.array([0] * 5 + [0, 0, 0, 1] + [1] * 4)
    assert match_clusters(clusters, labels, 2).tolist() == [0, 0, 1]
    # Both clusters are mostly class 0; class 1 must get one: the one losing least overlap (cluster 1: 4 - 1).
    clusters = np.array([0] * 5 + [1] * 5)
    labels = np.array([0] * 5 + [0, 0, 0, 0, 1])
    assert match_clusters(clusters, labels, 2).tolist() == [0, 1]
    # Fewer clusters than classes: each cluster still goes to one class; classes absent from the data get none.
    assert match_clusters(np.array([0, 0, 0]), np.array([2, 2, 1]), 5).tolist() == [2]


def test_knn_indices_known_answer() -> None:
    x = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    assert knn_indices(x, 1, chunk=2).tolist() == [[1], [0], [1], [2]]
    assert sorted(knn_indices(x, 2)[3].tolist()) == [1, 2]
    with pytest.raises(ValueError, match="k must be"):
        knn_indices(x, 4)


class _FixedEmbedding(nn.Module):
    """A "model" whose embedding of image i is image i flattened (the images are the embeddings)."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) + self.dummy * 0


def test_lcc_loss_pulls_only_the_misclustered_point() -> None:
    emb, labels = _lcc_example()
    data = ImageDataset(emb[:, :, None, None].contiguous(), labels, ("a", "b"), "toy", "train")
    loss = LatentClusterCorrection(ce_weight=1.0, weight=2.0, warmup_epochs=1, k=5)
    model = _FixedEmbedding().train()
    loss.on_epoch_start(model=model, data=data, epoch=0, rng=torch.Generator().manual_seed(0))
    assert loss.epoch_record() == {"lcc_active": False}
    loss.on_epoch_start(model=model, data=data, epoch=1, rng=torch.Generator().manual_seed(0))
    assert model.training  # restored after embedding in eval mode
    record = loss.epoch_record()
    assert record["lcc_active"] and record["lcc_clusters"] == 2 and record["lcc_targets"] == 1
    assert record["lcc_misclustered_share"] == pytest.approx(1 / 13)

    logits = torch.randn(13, 2)
    ce = F.cross_entropy(logits, labels)
    current = emb.clone().requires_grad_(True)
    # A batch without u: no correction. A batch with u: ||u - (0.5, 0.5)|| / sqrt(2), weighted by 2.
    no_u = torch.arange(12)
    assert float(loss(logits[no_u], current[no_u], labels[no_u], index=no_u).detach()) == pytest.approx(
        float(F.cross_entropy(logits[no_u], labels[no_u])))
    value = loss(logits, current, labels, index=torch.arange(13))
    expected_lcc = math.hypot(99.5, 0.5) / math.sqrt(2)
    assert float(value.detach()) == pytest.approx(float(ce) + 2 * expected_lcc, rel=1e-5)
    assert loss.parts["lcc"] == pytest.approx(expected_lcc, rel=1e-5)
    value.backward()
    # The correction's gradient reaches u only, pointing away from the target (descent moves u toward it).
    grad = current.grad
    assert torch.isfinite(grad).all() and torch.all(grad[:12] == 0)
    direction = (emb[12] - torch.tensor([0.5, 0.5])) / (emb[12] - torch.tensor([0.5, 0.5])).norm()
    assert torch.allclose(grad[12], 2 * direction / math.sqrt(2), atol=1e-5)
    # Without index (e.g. an evaluation call) it is plain CE.
    assert float(loss(logits, emb, labels)) == pytest.approx(float(ce))


def test_lcc_state_survives_a_state_dict_round_trip() -> None:
    emb, labels = _lcc_example()
    data = ImageDataset(emb[:, :, None, None].contiguous(), labels, ("a", "b"), "toy", "train")
    loss = LatentClusterCorrection(warmup_epochs=0)
    loss.on_epoch_start(model=_FixedEmbedding(), data=data, epoch=0, rng=torch.Generator().manual_seed(0))
    fresh = LatentClusterCorrection(warmup_epochs=0)
    fresh.load_state_dict(loss.state_dict())
    logits, index = torch.randn(13, 2), torch.arange(13)
    assert float(fresh(logits, emb, labels, index=index)) == float(loss(logits, emb, labels, index=index))
    assert fresh.epoch_record() == loss.epoch_record()


def test_lcc_subset_is_drawn_from_the_generator() -> None:
    x, y = _blobs([[0.0, 0.0], [10.0, 0.0]], per=20)
    data = ImageDataset(x[:, :, None, None].contiguous(), y, ("a", "b"), "toy", "train")
    loss = LatentClusterCorrection(warmup_epochs=0, max_samples=15)
    loss.on_epoch_start(model=_FixedEmbedding(), data=data, epoch=0, rng=torch.Generator().manual_seed(0))
    assert loss.epoch_record()["lcc_clustered_samples"] == 15


# -- semantic targets and the hierarchy ------------------------------------------------------------------


def test_fashion_mnist_hierarchy_distances() -> None:
    h = FASHION_MNIST_HIERARCHY
    assert h.class_names == FASHION_MNIST_CLASSES and h.depth == 3
    assert h.distance("shirt", "shirt") == 0
    assert h.distance("shirt", "t-shirt") == h.distance("coat", "pullover") == 1
    assert h.distance("sneaker", "ankle-boot") == h.distance("sandal", "sneaker") == 1
    assert h.distance("dress", "coat") == h.distance("trouser", "dress") == h.distance("trouser", "shirt") == 2
    assert h.distance("bag", "sneaker") == h.distance("sandal", "t-shirt") == h.distance("bag", "dress") == 3
    d = h.distance_matrix()
    assert d.shape == (10, 10) and np.array_equal(d, d.T) and np.all(np.diag(d) == 0)
    assert np.all(d[~np.eye(10, dtype=bool)] >= 1)


def test_hierarchy_lookup_and_validation() -> None:
    shuffled = list(reversed(FASHION_MNIST_CLASSES))
    h = hierarchy_for(shuffled)
    assert h is not None and h.class_names == tuple(shuffled)
    i, j = shuffled.index("shirt"), shuffled.index("t-shirt")
    assert h.distance_matrix()[i, j] == 1
    assert hierarchy_for([str(d) for d in range(10)]) is None
    assert hierarchy_for(FASHION_MNIST_CLASSES[:9]) is None
    with pytest.raises(ValueError, match="same length"):
        ClassHierarchy({"a": ("x",), "b": ("x", "y")})


def test_semantic_soft_targets_sum_to_one_and_favour_siblings() -> None:
    d = torch.from_numpy(FASHION_MNIST_HIERARCHY.distance_matrix())
    q = semantic_soft_targets(d, temperature=0.5)
    assert q.shape == (10, 10) and torch.allclose(q.sum(dim=1), torch.ones(10))
    names = FASHION_MNIST_CLASSES
    shirt = q[names.index("shirt")]
    # Known answer: weights exp(-2 d) over 1 self, 3 siblings (d 1), 2 other garments (d 2), 4 far (d 3).
    z = 1 + 3 * math.exp(-2) + 2 * math.exp(-4) + 4 * math.exp(-6)
    assert float(shirt[names.index("shirt")]) == pytest.approx(1 / z, rel=1e-6)
    assert float(shirt[names.index("t-shirt")]) == pytest.approx(math.exp(-2) / z, rel=1e-6)
    assert float(shirt[names.index("bag")]) == pytest.approx(math.exp(-6) / z, rel=1e-6)
    # Siblings get more mass than cousins, cousins more than strangers; the bag has no siblings at all.
    assert shirt[names.index("coat")] > shirt[names.index("dress")] > shirt[names.index("sneaker")]
    bag = q[names.index("bag")]
    assert float(bag[names.index("bag")]) == pytest.approx(1 / (1 + 9 * math.exp(-6)), rel=1e-6)
    with pytest.raises(InvalidInputError, match="temperature"):
        semantic_soft_targets(d, 0.0)


def test_semantic_loss_value_and_grading() -> None:
    loss = SemanticLabelLoss(FASHION_MNIST_HIERARCHY, ce_weight=1.0, weight=1.0, temperature=0.5)
    names = FASHION_MNIST_CLASSES
    labels = torch.tensor([names.index("shirt")])
    # Predicting the soft target exactly: KL = 0, the loss is the CE of that prediction.
    logits = loss.soft_targets[labels].log()
    assert float(loss(logits, torch.zeros(1, 4), labels)) == pytest.approx(float(F.cross_entropy(logits, labels)), abs=1e-5)
    assert loss.parts["semantic_kl"] == pytest.approx(0.0, abs=1e-6)
    # The same confident mistake costs less toward a sibling (t-shirt) than toward a stranger (bag).
    def confident(name: str) -> torch.Tensor:
        out = torch.zeros(1, 10)
        out[0, names.index(name)] = 5.0
        return out
    near, far = loss(confident("t-shirt"), torch.zeros(1, 4), labels), loss(confident("bag"), torch.zeros(1, 4), labels)
    assert float(near) < float(far)


# -- the registry: every loss with every head -------------------------------------------------------------


def test_registry_names() -> None:
    assert set(LOSSES) == {"ce", "latent_boost", "lcc", "semantic"}
    config = ClassifierTrainingConfig()
    assert isinstance(LOSSES["ce"](config, FASHION_MNIST_CLASSES), CrossEntropy)
    with pytest.raises(InvalidInputError, match="hierarchy"):
        LOSSES["semantic"](config, tuple(str(d) for d in range(10)))


@pytest.mark.parametrize("head", ["linear", "offset_l2"])
@pytest.mark.parametrize("name", ["ce", "latent_boost", "lcc", "semantic"])
def test_every_loss_gives_finite_gradients_with_every_head(name: str, head: str) -> None:
    torch.manual_seed(0)
    config = ClassifierTrainingConfig(epochs=2, latent_boost_warmup_epochs=0, lcc_warmup_epochs=0, lcc_k=3)
    loss_fn = LOSSES[name](config, FASHION_MNIST_CLASSES)
    model = build_classifier(10, embedding_dim=8, head=head, width=4).train()
    images = torch.rand(40, 1, 32, 32) * 2 - 1
    labels = torch.arange(40) % 10
    data = ImageDataset(images, labels, FASHION_MNIST_CLASSES, "toy", "train")
    hook = getattr(loss_fn, "on_epoch_start", None)
    if hook is not None:
        hook(model=model, data=data, epoch=1, rng=torch.Generator().manual_seed(0))
    logits, embedding = model.forward_with_embedding(images)
    kwargs = {"index": torch.arange(40)} if getattr(loss_fn, "wants_index", False) else {}
    value = loss_fn(logits, embedding, labels, **kwargs)
    assert value.ndim == 0 and torch.isfinite(value)
    value.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
