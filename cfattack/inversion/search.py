"""Starting an inversion without an encoder: the best of many random latents, and the schedule.

Optimising ws from the average latent gets stuck at high resolution: the average image is a
grey blur, and a gradient from it rarely finds the pose or the layout of the input. Goldwasser
& Hooker invert without an encoder by decoding 128 random latents at truncation 0.7, keeping
the one closest to the image, then optimising. This module holds that search and the
resolution-dependent defaults of the whole schedule (search, then W steps, then W+ steps):

    schedule = schedule_for_resolution(G.img_resolution)     # starts, W steps, chunk size
    ws = candidate_ws(G, schedule.starts, 0.7, seed=0, c=None)
    best, score = best_candidates(decode, ws, score_fn, chunk=schedule.chunk)

The functions take callables and tensors; `cfattack.inversion.inverter.Inverter` composes them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = ["SearchSchedule", "schedule_for_resolution", "candidate_ws", "candidate_classes", "best_candidates"]


@dataclass(frozen=True)
class SearchSchedule:
    """Defaults of the encoder-free inversion at one resolution.

    Attributes:
        starts: random latents decoded and scored (the paper: 128).
        w_steps: Adam steps on one w per image after the search, before the W+ steps.
        chunk: latents decoded at once while searching (bounds memory, not the result).
        perceptual_weight: weight of the classifier-feature distance, in search and refinement.
    """

    starts: int
    w_steps: int
    chunk: int
    perceptual_weight: float


# (largest resolution, schedule). Small images: a few dozen starts already cover the layouts a
# 32-64 px generator makes, and 50 W steps settle; from 256 px on, the paper's 128 starts and
# hundreds of W steps (the coarse layout must be right before W+ adds detail), with chunks small
# enough that decoding a 1024 px chunk without gradients stays near 2-3 GB.
_SCHEDULES: tuple[tuple[int, SearchSchedule], ...] = (
    (64, SearchSchedule(starts=32, w_steps=50, chunk=32, perceptual_weight=0.1)),
    (128, SearchSchedule(starts=64, w_steps=100, chunk=16, perceptual_weight=0.1)),
    (256, SearchSchedule(starts=128, w_steps=200, chunk=8, perceptual_weight=0.1)),
    (512, SearchSchedule(starts=128, w_steps=300, chunk=4, perceptual_weight=0.1)),
)
_LARGEST = SearchSchedule(starts=128, w_steps=400, chunk=2, perceptual_weight=0.1)


def schedule_for_resolution(resolution: int) -> SearchSchedule:
    """The default `SearchSchedule` for a generator making ``resolution`` px images."""
    if resolution < 1:
        raise ValueError(f"resolution must be positive, got {resolution}")
    for largest, schedule in _SCHEDULES:
        if resolution <= largest:
            return schedule
    return _LARGEST


def candidate_classes(c_dim: int, count: int) -> torch.Tensor:
    """Class indices [count] cycling 0, 1, ..., c_dim - 1: starts spread over every class."""
    return torch.arange(count) % c_dim


def candidate_ws(
    G: torch.nn.Module,
    count: int,
    truncation_psi: float,
    seed: int,
    classes: torch.Tensor | None = None,
) -> torch.Tensor:
    """``count`` random latents ws [count, num_ws, w_dim] at truncation ``truncation_psi``.

    z are drawn from a CPU generator seeded with ``seed`` (the same candidates on every device
    and for every class). ``classes`` [count] (ints) label them for a conditional generator;
    it must be given exactly when ``G.c_dim > 0``.
    """
    z = torch.randn(count, G.z_dim, generator=torch.Generator().manual_seed(seed))
    device = G.mapping.w_avg.device
    c = None
    if G.c_dim > 0:
        assert classes is not None and classes.shape == (count,), "a conditional generator needs classes"
        c = torch.nn.functional.one_hot(classes.long().cpu(), G.c_dim).float().to(device)
    with torch.no_grad():
        return G.mapping(z.to(device), c, truncation_psi=truncation_psi).float()


def best_candidates(
    decode: Callable[[torch.Tensor], torch.Tensor],
    ws: torch.Tensor,
    score: Callable[[torch.Tensor], torch.Tensor],
    chunk: int,
    on_chunk: Callable[[], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """For each of N images, the candidate whose decoded image scores lowest.

    Args:
        decode: ws [B, num_ws, w_dim] -> images [B, C, R, R].
        ws: the candidates [K, num_ws, w_dim].
        score: images [B, C, R, R] -> distances [B, N] to the N images being inverted.
        chunk: candidates decoded at once.
        on_chunk: called after each chunk (progress).

    Returns:
        (best ws [N, num_ws, w_dim], its distance [N]); ties go to the earlier candidate.
    """
    best_score: torch.Tensor | None = None
    best_index: torch.Tensor | None = None
    with torch.no_grad():
        for first in range(0, ws.shape[0], chunk):
            distances = score(decode(ws[first:first + chunk]))  # [B, N]
            value, index = distances.min(dim=0)
            index = index + first
            if best_score is None or best_index is None:
                best_score, best_index = value, index
            else:
                better = value < best_score
                best_score = torch.where(better, value, best_score)
                best_index = torch.where(better, index, best_index)
            if on_chunk is not None:
                on_chunk()
    assert best_score is not None and best_index is not None, "no candidates"
    return ws[best_index.to(ws.device)].clone(), best_score
