"""Classification heads that turn an embedding [N, D] into logits [N, K].

``LinearHead`` is the usual affine map. ``OffsetL2Head`` (Oursland, arXiv 2502.02103) scores
each class by a weighted distance to a learned prototype,

    y_i = || alpha_i ⊙ (x - mu_i) ||_2,      logits_i = -y_i,

so the classifier decides by which prototype is nearest, not by the size of an activation.
Following the paper's reference code, ``alpha`` (not ``alpha**2``) sits under the root,
prototypes start at N(0, 0.1**2) and ``alpha`` at one.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["LinearHead", "OffsetL2Head", "HEADS"]


class LinearHead(nn.Module):
    """logits = x @ W.T + b.

    Args:
        embedding_dim: D, the size of the embedding it reads.
        num_classes: K, the number of logits it writes.
    """

    def __init__(self, embedding_dim: int, num_classes: int) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        self.num_classes = num_classes
        self.linear = nn.Linear(embedding_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [N, D] -> logits [N, K]."""
        return self.linear(x)


class OffsetL2Head(nn.Module):
    """logits_i = -|| alpha_i ⊙ (x - mu_i) ||_2 for each class i.

    Args:
        embedding_dim: D.
        num_classes: K; ``mu`` and ``alpha`` are [K, D].
        init_std: standard deviation of the initial prototypes (0.1 in the paper).

    Example::

        head = OffsetL2Head(128, 10)
        logits = head(torch.randn(4, 128))        # [4, 10], all <= 0
        dist = head.distances(torch.randn(4, 128))  # [4, 10], all >= 0
    """

    # Floor under the squared distance before the root: the root's gradient is infinite at zero.
    _EPS = 1e-12

    def __init__(self, embedding_dim: int, num_classes: int, init_std: float = 0.1) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        self.num_classes = num_classes
        mu = torch.empty(num_classes, embedding_dim)
        if mu.device.type != "meta":  # a random draw on the meta device imports torch._dynamo (~1.5 s)
            mu.normal_(0.0, init_std)  # the same numbers as torch.randn(...) * init_std
        self.mu = nn.Parameter(mu)
        self.alpha = nn.Parameter(torch.ones(num_classes, embedding_dim))

    def distances(self, x: torch.Tensor) -> torch.Tensor:
        """x [N, D] -> y [N, K], the weighted distance of each sample to each prototype."""
        assert x.ndim == 2 and x.shape[1] == self.embedding_dim, x.shape
        # [N, 1, D] - [1, K, D] -> [N, K, D]; K and D are small (10 x 128), so memory is no issue.
        offsets = (x.unsqueeze(1) - self.mu.unsqueeze(0)) * self.alpha.unsqueeze(0)
        return offsets.square().sum(dim=2).clamp_min(self._EPS).sqrt()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [N, D] -> logits [N, K] = -distances."""
        return -self.distances(x)


HEADS: dict[str, type[nn.Module]] = {"linear": LinearHead, "offset_l2": OffsetL2Head}
"""Head classes by the name `build_classifier` accepts."""
