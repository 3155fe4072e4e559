"""Light differentiable augmentation shared by the trainers."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["random_translate"]


def random_translate(x: torch.Tensor, max_px: int, rng: torch.Generator) -> torch.Tensor:
    """Shift each image of x [N, C, H, W] by a random whole number of pixels in [-max_px, max_px].

    Pixels shifted in from outside repeat the border (the black background for Fashion-MNIST).
    No flips: Fashion-MNIST's shoes all point one way, so a mirrored shoe is off the data.
    """
    if max_px <= 0:
        return x
    n, c, h, w = x.shape
    shifts = torch.randint(-max_px, max_px + 1, (n, 2), generator=rng).to(x.device)
    padded = F.pad(x, [max_px] * 4, mode="replicate")
    rows = torch.arange(h, device=x.device).view(1, h, 1) + (max_px - shifts[:, 0]).view(n, 1, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w) + (max_px - shifts[:, 1]).view(n, 1, 1)
    index = (rows * (w + 2 * max_px) + cols).view(n, 1, h * w).expand(-1, c, -1)
    return padded.flatten(2).gather(2, index).view(n, c, h, w)
