"""Training losses for classifiers with an explicit embedding, chosen by name from `LOSSES`.

Every loss is an ``nn.Module`` called as ``loss_fn(logits [N, K], embedding [N, D], labels [N])``
returning a scalar. Optional parts of the protocol, which `cfattack.training.classifier` honours:

* ``wants_index = True``: the trainer also passes ``index=`` [N], the batch's rows in the
  training set (LCC looks up per-sample targets with it);
* ``on_epoch_start(model=, data=, epoch=, rng=)``: called before each epoch (schedules, LCC's
  reclustering);
* ``parts``: a dict of named float components of the last call, averaged into the history;
* ``epoch_record()``: extra per-epoch figures for the history (e.g. LCC's misclustered share);
* state that must survive a resume lives in buffers or ``get_extra_state``.

The losses (equations in each class's docstring):

``ce``            cross-entropy.
``latent_boost``  CE + a scheduled Magnet-style term on the embedding (Geissler et al., arXiv 2412.08515).
``lcc``           CE + Latent Cluster Correction (Ho Thanh, arXiv 2501.11919), see `cfattack.classifiers.lcc`.
``semantic``      CE + KL toward soft targets from a class hierarchy (Perotti et al., arXiv 2308.00607).

Build one from a training config with ``LOSSES[name](config, class_names)``; the builders read
the config's fields by name (``ce_weight``, ``latent_boost_*``, ``lcc_*``, ``semantic_*``).
"""

from __future__ import annotations

import importlib.util
import math
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cfattack.classifiers.hierarchy import HIERARCHIES, ClassHierarchy, hierarchy_for
from cfattack.classifiers.lcc import LatentClusterCorrection
from cfattack.errors import InvalidInputError

__all__ = [
    "CrossEntropy",
    "LatentBoostLoss",
    "LatentClusterCorrection",
    "SemanticLabelLoss",
    "magnet_terms",
    "semantic_soft_targets",
    "linear_ramp",
    "LOSSES",
]


class CrossEntropy(nn.Module):
    """Plain cross-entropy on the logits; ignores the embedding."""

    def forward(self, logits: torch.Tensor, embedding: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, labels)


# ---------------------------------------------------------------------------------------------
# Latent Boost: a Magnet-style distance term with per-cluster variance and schedules.


def linear_ramp(start: float, end: float, epoch: int, epochs: int) -> float:
    """``start`` at epoch 0 moving linearly to ``end`` at epoch ``epochs`` (held there after)."""
    if epochs <= 0:
        return float(end)
    t = min(max(epoch / epochs, 0.0), 1.0)
    return float(start + (end - start) * t)


def magnet_terms(embedding: torch.Tensor, labels: torch.Tensor, alpha: float, eps: float = 1e-6) -> torch.Tensor:
    """Per-sample Magnet terms with one cluster per class and per-cluster variance: [N] -> [N].

    For sample r of class C, with the batch means mu_c of the classes present and the
    (detached) variance sigma_c^2 = sum_{r in c} ||r - mu_c||^2 / (n_c - 1) of each cluster
    (the pooled variance of the batch for a class seen once)::

        term(r) = max(0, ||r - mu_C||^2 / (2 sigma_C^2) + alpha
                          + log sum_{c != C, c in batch} exp(-||r - mu_c||^2 / (2 sigma_c^2)))

    which is Magnet's max(0, -log(exp(-d_C / 2s^2 - alpha) / sum_{c != C} exp(-d_c / 2s^2)))
    with the variance taken per cluster. Zero for every sample when the clusters are far apart
    compared to their spread; exactly ``alpha`` for every sample when all classes share one
    distribution (same means and variances). All zeros (still connected to the graph) when the
    batch holds a single class.

    Args:
        embedding: [N, D] (gradients flow through the samples and the batch means).
        labels: [N] class indices.
        alpha: the margin.
    """
    assert embedding.ndim == 2 and labels.shape == embedding.shape[:1], (embedding.shape, labels.shape)
    classes, inverse = torch.unique(labels, return_inverse=True)
    if len(classes) < 2:
        return embedding.sum(dim=1) * 0.0
    n = embedding.shape[0]
    member = F.one_hot(inverse, len(classes)).to(embedding.dtype)           # [N, M]
    counts = member.sum(dim=0)                                              # [M]
    means = (member.T @ embedding) / counts[:, None]                        # [M, D]
    sq = (embedding[:, None, :] - means[None, :, :]).square().sum(dim=2)    # [N, M]
    own = sq.gather(1, inverse[:, None]).squeeze(1)                         # [N]
    with torch.no_grad():
        pooled = own.sum() / max(n - 1, 1)
        per_cluster = (member.T @ own) / (counts - 1).clamp_min(1)
        var = torch.where(counts > 1, per_cluster, pooled).clamp_min(eps)   # [M]
    scaled = sq / (2 * var[None, :])                                        # [N, M]
    pull = scaled.gather(1, inverse[:, None]).squeeze(1)
    push = torch.logsumexp((-scaled).masked_fill(member.bool(), -math.inf), dim=1)
    return F.relu(pull + alpha + push)


class LatentBoostLoss(nn.Module):
    """CE plus a scheduled Magnet term on the embedding (our reading of Latent Boost).

        loss = ce_weight * CE(logits, y) + lambda(e) * mean_r term_alpha(e)(r)

    with `magnet_terms` on the (optionally PCA-reduced) embedding, one cluster per class and
    per-cluster variance. Schedules over the epoch e (the paper's exact ones were not
    published; these are ours):

    * the weight lambda(e) rises linearly from 0 to ``weight`` over ``warmup_epochs`` (epoch 0
      is pure CE when warmup_epochs > 0), so cross-entropy shapes the embedding first;
    * the margin alpha(e) moves linearly from ``alpha_start`` to ``alpha_end`` over the run,
      asking for more separation once clusters exist.

    ``pca_dim``: measure the term in the batch's top principal directions (basis detached,
    recomputed each step), as Latent Boost does in a PCA-reduced latent space; None = full.
    """

    def __init__(self, epochs: int, ce_weight: float = 1.0, weight: float = 0.5, warmup_epochs: int = 1,
                 alpha_start: float = 0.0, alpha_end: float = 1.0, pca_dim: int | None = None) -> None:
        super().__init__()
        self.epochs, self.ce_weight, self.weight = epochs, ce_weight, weight
        self.warmup_epochs, self.pca_dim = warmup_epochs, pca_dim
        self.alpha_start, self.alpha_end = alpha_start, alpha_end
        self.register_buffer("epoch", torch.zeros((), dtype=torch.long))
        self.parts: dict[str, float] = {}

    def metric_weight(self) -> float:
        """lambda at the current epoch."""
        return linear_ramp(0.0, self.weight, int(self.epoch), self.warmup_epochs) if self.warmup_epochs else self.weight

    def alpha(self) -> float:
        """The margin at the current epoch."""
        return linear_ramp(self.alpha_start, self.alpha_end, int(self.epoch), max(self.epochs - 1, 1))

    def on_epoch_start(self, *, model: nn.Module, data: Any, epoch: int, rng: torch.Generator) -> None:
        self.epoch.fill_(epoch)

    def _reduce(self, embedding: torch.Tensor) -> torch.Tensor:
        if self.pca_dim is None or self.pca_dim >= min(embedding.shape):
            return embedding
        centred = embedding - embedding.mean(dim=0, keepdim=True)
        with torch.no_grad():
            _, _, vh = torch.linalg.svd(centred.detach().float(), full_matrices=False)
        return centred @ vh[: self.pca_dim].T.to(centred.dtype)

    def forward(self, logits: torch.Tensor, embedding: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        ce = F.cross_entropy(logits, labels)
        lam = self.metric_weight()
        if lam == 0:
            self.parts = {"ce": float(ce.detach()), "magnet": 0.0}
            return self.ce_weight * ce
        magnet = magnet_terms(self._reduce(embedding.float()), labels, self.alpha()).mean()
        self.parts = {"ce": float(ce.detach()), "magnet": float(magnet.detach())}
        return self.ce_weight * ce + lam * magnet

    def epoch_record(self) -> dict:
        return {"magnet_weight": self.metric_weight(), "magnet_alpha": self.alpha()}


# ---------------------------------------------------------------------------------------------
# Semantic label loss: soft targets from a class hierarchy.


def semantic_soft_targets(distances: torch.Tensor, temperature: float) -> torch.Tensor:
    """Soft targets [K, K] from class distances [K, K]: row y is softmax_c(-d(y, c) / temperature).

    Every row sums to one and puts the most mass on the class itself (distance 0), then on its
    siblings, decaying with the hierarchical distance.
    """
    if temperature <= 0:
        raise InvalidInputError(f"temperature must be positive, got {temperature}")
    return torch.softmax(-distances.double() / temperature, dim=1).float()


class SemanticLabelLoss(nn.Module):
    """CE plus a beta-weighted KL divergence toward hierarchy-derived soft targets.

        q_y = softmax_c(-d_LCA(y, c) / T)
        loss = ce_weight * CE(logits, y) + beta * KL(q_y || softmax(logits))

    (KL equals the cross-entropy toward q_y minus q_y's constant entropy: the same gradient,
    and zero when the prediction matches the soft target). Errors toward near classes cost
    less than errors toward far ones, which should lower the mistake severity.
    """

    def __init__(self, hierarchy: ClassHierarchy, ce_weight: float = 1.0, weight: float = 1.0,
                 temperature: float = 0.5) -> None:
        super().__init__()
        self.ce_weight, self.weight, self.temperature = ce_weight, weight, temperature
        distances = torch.from_numpy(hierarchy.distance_matrix())
        self.register_buffer("soft_targets", semantic_soft_targets(distances, temperature), persistent=False)
        self.parts: dict[str, float] = {}

    def forward(self, logits: torch.Tensor, embedding: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(logits.float(), dim=1)
        ce = F.nll_loss(log_p, labels)
        q = self.soft_targets[labels]
        kl = (q * (q.clamp_min(1e-30).log() - log_p)).sum(dim=1).mean()
        self.parts = {"ce": float(ce.detach()), "semantic_kl": float(kl.detach())}
        return self.ce_weight * ce + self.weight * kl


# ---------------------------------------------------------------------------------------------
# The registry.


def _ce(config: Any, class_names: Sequence[str]) -> nn.Module:
    return CrossEntropy()


def _latent_boost(config: Any, class_names: Sequence[str]) -> nn.Module:
    return LatentBoostLoss(
        epochs=config.epochs, ce_weight=config.ce_weight, weight=config.latent_boost_weight,
        warmup_epochs=config.latent_boost_warmup_epochs, alpha_start=config.latent_boost_alpha_start,
        alpha_end=config.latent_boost_alpha_end, pca_dim=config.latent_boost_pca_dim,
    )


def _lcc(config: Any, class_names: Sequence[str]) -> nn.Module:
    if importlib.util.find_spec("networkx") is None:
        raise InvalidInputError("loss 'lcc' needs networkx for Louvain communities: pip install 'cfattack[zoo]'")
    return LatentClusterCorrection(
        ce_weight=config.ce_weight, weight=config.lcc_weight, warmup_epochs=config.lcc_warmup_epochs,
        k=config.lcc_k, resolution=config.lcc_resolution, max_samples=config.lcc_max_samples,
        eval_batch=config.eval_batch,
    )


def _semantic(config: Any, class_names: Sequence[str]) -> nn.Module:
    hierarchy = hierarchy_for(class_names)
    if hierarchy is None:
        raise InvalidInputError(
            f"loss 'semantic' needs a class hierarchy; none is known for the classes {tuple(class_names)} "
            "(cfattack.classifiers.hierarchy.HIERARCHIES has: " + ", ".join(sorted(HIERARCHIES)) + ")")
    return SemanticLabelLoss(hierarchy, ce_weight=config.ce_weight, weight=config.semantic_weight,
                             temperature=config.semantic_temperature)


LOSSES: dict[str, Callable[[Any, Sequence[str]], nn.Module]] = {
    "ce": _ce,
    "latent_boost": _latent_boost,
    "lcc": _lcc,
    "semantic": _semantic,
}
"""Loss builders by name: ``LOSSES[config.loss](config, class_names) -> nn.Module``."""
