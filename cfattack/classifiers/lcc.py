"""Latent Cluster Correction (LCC; Ho Thanh, arXiv 2501.11919): pull misclustered embeddings home.

Once per epoch after a warm-up (`LatentClusterCorrection.on_epoch_start`):

1. embed the training images (eval mode, no gradients; optionally a random subset);
2. build the k-nearest-neighbour graph of the embeddings (k = 5; undirected, unweighted);
3. find its communities with Louvain (``networkx.community.louvain_communities``, resolution 1,
   seeded from the run's generator);
4. match classes to clusters one-to-many, each cluster to at most one class, maximising the
   total overlap |class and cluster| subject to every class getting a cluster (`match_clusters`);
5. a sample is *correctly clustered* if its cluster is matched to its class, else *misclustered*;
6. for a misclustered sample u of class c and each cluster j matched to c, t_j is the mean of
   u's k nearest correctly clustered samples in j; u's target is the t_j nearest to u.

During the epoch the loss of a batch is::

    loss = ce_weight * CE + weight * LCC,    LCC = mean over misclustered u in the batch of ||u - t_u||_2 / sqrt(D)

(0 when the batch holds none). Targets are fixed for the epoch; u is the sample's current
embedding, so the gradient moves it toward its target.

    plan = plan_cluster_correction(embeddings, labels, num_classes=10)
    plan.index, plan.targets          # misclustered rows with a target, and the targets [M, D]
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "knn_indices",
    "louvain_clusters",
    "match_clusters",
    "correction_targets",
    "ClusterCorrectionPlan",
    "plan_cluster_correction",
    "LatentClusterCorrection",
]


def knn_indices(x: torch.Tensor, k: int, chunk: int = 1024) -> torch.Tensor:
    """Indices [N, k] of each row's k nearest other rows of x [N, D] (Euclidean; self excluded).

    Brute force in chunks of ``chunk`` rows (memory chunk x N), on x's device.
    """
    n = x.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"k must be in [1, {n - 1}] for {n} points, got {k}")
    x = x.float()
    sq = x.square().sum(dim=1)
    out = []
    for start in range(0, n, chunk):
        block = x[start:start + chunk]
        d = sq[start:start + chunk, None] + sq[None, :] - 2 * block @ x.T          # [c, N]
        rows = torch.arange(block.shape[0], device=x.device)
        d[rows, rows + start] = math.inf                                           # not its own neighbour
        out.append(d.topk(k, dim=1, largest=False).indices)
    return torch.cat(out)


def louvain_clusters(neighbours: torch.Tensor, resolution: float = 1.0, seed: int = 0) -> np.ndarray:
    """Louvain communities of the undirected kNN graph given by ``neighbours`` [N, k]: ids [N].

    Community ids are numbered by their smallest member, so equal partitions get equal ids.
    """
    import networkx as nx

    nbrs = neighbours.cpu().numpy()
    n, k = nbrs.shape
    graph = nx.Graph()
    graph.add_nodes_from(range(n))
    graph.add_edges_from(zip(np.repeat(np.arange(n), k).tolist(), nbrs.reshape(-1).tolist()))
    communities = nx.community.louvain_communities(graph, resolution=resolution, seed=seed)
    clusters = np.empty(n, dtype=np.int64)
    for cid, members in enumerate(sorted(communities, key=min)):
        clusters[list(members)] = cid
    return clusters


def match_clusters(clusters: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """The class matched to each cluster [C] (-1: none), maximising total overlap.

    Each cluster goes to at most one class; a class may take several clusters; every class
    present gets at least one cluster while there are clusters enough. Optimal: a free
    assignment would give each cluster its majority class; the cheapest way to make it cover
    every class is a one-to-one matching (Hungarian) of classes to "representative" clusters at
    cost overlap(j, majority) - overlap(j, c), the other clusters keeping their majority class.
    """
    from scipy.optimize import linear_sum_assignment

    num_clusters = int(clusters.max()) + 1
    overlap = np.zeros((num_clusters, num_classes), dtype=np.int64)
    np.add.at(overlap, (clusters, labels), 1)
    assigned = overlap.argmax(axis=1)
    present = np.flatnonzero(overlap.sum(axis=0) > 0)
    cost = overlap.max(axis=1)[None, :] - overlap[:, present].T                 # [classes present, C]
    class_rows, cluster_cols = linear_sum_assignment(cost)
    assigned[cluster_cols] = present[class_rows]
    return assigned


def correction_targets(
    embeddings: torch.Tensor, labels: torch.Tensor, clusters: torch.Tensor, cluster_class: torch.Tensor,
    k: int = 5, chunk: int = 1024,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets of the misclustered samples: (index [M] long, targets [M, D]).

    For misclustered u of class c: over clusters j matched to c, t_j = mean of u's ``k`` (or
    all, if fewer) nearest correctly clustered samples in j; the target is the t_j nearest to
    u. Misclustered samples whose class has no matched cluster with a correct sample get none.

    Args:
        embeddings: [N, D]; labels: [N]; clusters: [N] cluster ids; cluster_class: [C] class of
            each cluster (-1 none).
    """
    correct = cluster_class[clusters] == labels
    index_parts, target_parts = [], []
    for c in torch.unique(labels).tolist():
        mis = torch.nonzero((labels == c) & ~correct).squeeze(1)
        if len(mis) == 0:
            continue
        best_dist = torch.full((len(mis),), math.inf)
        best = torch.zeros(len(mis), embeddings.shape[1])
        for j in torch.nonzero(cluster_class == c).squeeze(1).tolist():
            pool = embeddings[(clusters == j) & correct].float()
            if len(pool) == 0:
                continue
            kk = min(k, len(pool))
            for start in range(0, len(mis), chunk):
                u = embeddings[mis[start:start + chunk]].float()
                nearest = torch.cdist(u, pool).topk(kk, dim=1, largest=False).indices   # [m, kk]
                t = pool[nearest].mean(dim=1)                                           # [m, D]
                dist = (u - t).norm(dim=1)
                sl = slice(start, start + len(u))
                better = dist < best_dist[sl]
                best_dist[sl] = torch.where(better, dist, best_dist[sl])
                best[sl] = torch.where(better[:, None], t, best[sl])
        found = torch.isfinite(best_dist)
        index_parts.append(mis[found])
        target_parts.append(best[found])
    if not index_parts:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, embeddings.shape[1])
    return torch.cat(index_parts), torch.cat(target_parts)


@dataclass(frozen=True)
class ClusterCorrectionPlan:
    """One reclustering: cluster ids [N], each cluster's class [C], correctness [N], targets."""

    clusters: torch.Tensor
    cluster_class: torch.Tensor
    correct: torch.Tensor
    index: torch.Tensor
    targets: torch.Tensor

    @property
    def num_clusters(self) -> int:
        return int(self.cluster_class.shape[0])


def plan_cluster_correction(
    embeddings: torch.Tensor, labels: torch.Tensor, num_classes: int, k: int = 5,
    resolution: float = 1.0, seed: int = 0,
) -> ClusterCorrectionPlan:
    """Steps 2-6 of LCC on embeddings [N, D] (CPU) with labels [N]."""
    embeddings = embeddings.detach().float().cpu()
    labels = labels.detach().long().cpu()
    neighbours = knn_indices(embeddings, min(k, embeddings.shape[0] - 1))
    clusters = louvain_clusters(neighbours, resolution=resolution, seed=seed)
    cluster_class = match_clusters(clusters, labels.numpy(), num_classes)
    clusters_t, cluster_class_t = torch.from_numpy(clusters), torch.from_numpy(cluster_class)
    index, targets = correction_targets(embeddings, labels, clusters_t, cluster_class_t, k=k)
    correct = cluster_class_t[clusters_t] == labels
    return ClusterCorrectionPlan(clusters_t, cluster_class_t, correct, index, targets)


class LatentClusterCorrection(nn.Module):
    """``ce_weight * CE + weight * LCC``, reclustered every epoch from ``warmup_epochs`` on.

    Args:
        ce_weight, weight: w_ce and w_lcc (paper defaults 1 and 1).
        warmup_epochs: epochs of plain CE before the first reclustering.
        k: neighbours of the kNN graph and of the target means (5 in the paper).
        resolution: Louvain resolution (1.0).
        max_samples: cluster a random subset of this many training images each epoch (others
            get no target that epoch); None = all. Louvain in networkx is pure Python, so this
            bounds the per-epoch cost on big datasets.
        eval_batch: images per forward pass when embedding the training set.
    """

    wants_index = True

    def __init__(self, ce_weight: float = 1.0, weight: float = 1.0, warmup_epochs: int = 3, k: int = 5,
                 resolution: float = 1.0, max_samples: int | None = None, eval_batch: int = 500) -> None:
        super().__init__()
        self.ce_weight, self.weight, self.warmup_epochs = ce_weight, weight, warmup_epochs
        self.k, self.resolution, self.max_samples, self.eval_batch = k, resolution, max_samples, eval_batch
        self._slot: torch.Tensor | None = None      # [N_train] row into _targets, -1 = none
        self._targets = torch.zeros(0, 0)           # [M, D]
        self._stats: dict[str, Any] = {}
        self.parts: dict[str, float] = {}

    # -- resumable state ---------------------------------------------------------------------------

    def get_extra_state(self) -> dict:
        return {"slot": self._slot, "targets": self._targets, "stats": dict(self._stats)}

    def set_extra_state(self, state: dict) -> None:
        self._slot = None if state["slot"] is None else state["slot"].cpu()
        self._targets = state["targets"].cpu()
        self._stats = dict(state["stats"])

    # -- once per epoch ----------------------------------------------------------------------------

    @torch.no_grad()
    def _embed(self, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        try:
            return torch.cat([model.embed(images[i:i + self.eval_batch].to(device)).float().cpu()
                              for i in range(0, len(images), self.eval_batch)])
        finally:
            model.train(was_training)

    def on_epoch_start(self, *, model: nn.Module, data: Any, epoch: int, rng: torch.Generator) -> None:
        n = len(data)
        if epoch < self.warmup_epochs:
            self._slot, self._targets, self._stats = None, torch.zeros(0, 0), {"lcc_active": False}
            return
        start = time.perf_counter()
        if self.max_samples is not None and self.max_samples < n:
            rows = torch.randperm(n, generator=rng)[: self.max_samples].sort().values
        else:
            rows = torch.arange(n)
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=rng))
        embeddings = self._embed(model, data.images[rows])
        plan = plan_cluster_correction(embeddings, data.labels[rows], data.num_classes, k=self.k,
                                       resolution=self.resolution, seed=seed)
        slot = torch.full((n,), -1, dtype=torch.long)
        slot[rows[plan.index]] = torch.arange(len(plan.index))
        self._slot, self._targets = slot, plan.targets
        self._stats = {
            "lcc_active": True, "lcc_clusters": plan.num_clusters,
            "lcc_misclustered_share": float((~plan.correct).float().mean()),
            "lcc_targets": int(len(plan.index)), "lcc_clustered_samples": int(len(rows)),
            "lcc_seconds": round(time.perf_counter() - start, 2),
        }

    def epoch_record(self) -> dict:
        return dict(self._stats)

    # -- per batch -----------------------------------------------------------------------------------

    def correction(self, embedding: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """LCC term of a batch: mean ||u - t_u|| / sqrt(D) over its rows with a target (0 if none)."""
        if self._slot is None:
            return embedding.sum() * 0.0
        slot = self._slot[index.cpu()]
        rows = torch.nonzero(slot >= 0).squeeze(1)
        if len(rows) == 0:
            return embedding.sum() * 0.0
        targets = self._targets[slot[rows]].to(embedding.device, embedding.dtype)
        diff = embedding[rows.to(embedding.device)] - targets
        # Tiny floor under the root: its gradient is infinite at zero distance.
        return (diff.square().sum(dim=1) + 1e-12).sqrt().mean() / math.sqrt(embedding.shape[1])

    def forward(self, logits: torch.Tensor, embedding: torch.Tensor, labels: torch.Tensor,
                index: torch.Tensor | None = None) -> torch.Tensor:
        ce = F.cross_entropy(logits, labels)
        if index is None:
            self.parts = {"ce": float(ce.detach()), "lcc": 0.0}
            return self.ce_weight * ce
        lcc = self.correction(embedding, index)
        self.parts = {"ce": float(ce.detach()), "lcc": float(lcc.detach())}
        return self.ce_weight * ce + self.weight * lcc
