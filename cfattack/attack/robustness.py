"""Expectation over small translations: the attack must convince the classifier from every view.

A change that flips a classifier only at one exact pixel alignment is a non-robust pixel
pattern, the stuff adversarial examples are made of; other classifiers (and the same one on a
re-saved, re-cropped image) do not see it. Averaging the objective over the decoded image and
copies shifted by up to ``radius`` pixels left, right, up and down (and, with ``robust_stop``,
stopping only when every view passes the threshold) steers the attack toward changes that
survive being moved.
The set of views is fixed (no random draws), so an item's path does not depend on the batch
it shares or on a random state.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["shift_offsets", "shifted_views"]


def shift_offsets(radius: int) -> list[tuple[int, int]]:
    """The (dx, dy) shifts of the extra views: +-1..+-radius px along x and along y (4 * radius views)."""
    offsets = []
    for r in range(1, radius + 1):
        offsets += [(r, 0), (-r, 0), (0, r), (0, -r)]
    return offsets


def shifted_views(images: torch.Tensor, radius: int) -> torch.Tensor:
    """images [N, C, H, W] -> the shifted copies [4 * radius * N, C, H, W], view-major.

    Pixels that enter at an edge repeat the edge (a black background stays black; a photo's
    border is stretched by a pixel or two). Differentiable in ``images``.
    """
    if radius < 1:
        return images[:0]
    padded = F.pad(images, (radius, radius, radius, radius), mode="replicate")
    h, w = images.shape[-2:]
    views = [padded[..., radius - dy : radius - dy + h, radius - dx : radius - dx + w] for dx, dy in shift_offsets(radius)]
    return torch.cat(views, dim=0)
