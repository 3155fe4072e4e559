"""Per-item state of the attack loop: who still moves, how each item ended, the path kept for frames.

`_Tracks` holds the outcome of every item as the loop goes; `_PathRecorder` keeps a thinned
copy of the path on the CPU so frames can be cut from it once an item ends.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def _frame_steps(end_step: int, num_frames: int) -> list[int]:
    """num_frames evenly spaced steps from 0 to end_step, both included (repeats if the path is short)."""
    return [math.floor(j * end_step / (num_frames - 1) + 0.5) for j in range(num_frames)]


class _PathRecorder:
    """Keeps iterates at steps 0, k, 2k, ... on the CPU; k doubles whenever more than ``capacity`` are kept.

    Memory stays bounded whatever the step budget. Frames are exactly the evenly spaced steps
    while the path is shorter than ``capacity`` steps and otherwise the nearest kept iterates
    (at most k / 2 steps away); `AttackResult.frame_steps` says which steps were used.
    """

    def __init__(self, capacity: int) -> None:
        self.stride = 1
        self.capacity = capacity
        self.steps: list[int] = []
        self.values: list[torch.Tensor] = []

    def record(self, step: int, values: torch.Tensor) -> None:
        if step % self.stride:
            return
        self.steps.append(step)
        self.values.append(values.detach().to("cpu", copy=True))
        if len(self.steps) > self.capacity:
            self.stride *= 2
            keep = [i for i, s in enumerate(self.steps) if s % self.stride == 0]
            self.steps = [self.steps[i] for i in keep]
            self.values = [self.values[i] for i in keep]

    def frames(self, item: int, end_step: int, end_value: torch.Tensor, num_frames: int) -> tuple[list[int], torch.Tensor]:
        """Item ``item``'s frames for a path that ended at ``end_step`` with value ``end_value``."""
        kept = torch.tensor(self.steps)
        steps, values = [], []
        for wanted in _frame_steps(end_step, num_frames)[:-1]:
            i = int((kept - wanted).abs().argmin())  # first of equals: the earlier step
            steps.append(self.steps[i])
            values.append(self.values[i][item])
        steps.append(end_step)
        values.append(end_value.detach().to("cpu"))
        return steps, torch.stack(values)


@dataclass
class _Tracks:
    """Per-item state of the loop: who still moves, how each item ended, what to report."""

    active: torch.Tensor  # [N] bool
    outcome: torch.Tensor  # [N] long: _GOING or 1 + index into _REASONS
    steps: torch.Tensor  # [N] long
    final_probability: torch.Tensor  # [N] float64, CPU (also where float64 is unsupported)
    curves: torch.Tensor  # [N, max_steps + 1] float64, CPU; NaN after each item's end
    source_class: torch.Tensor  # [N] long
    source_probability: torch.Tensor  # [N] float64, CPU
    frame_steps: torch.Tensor  # [N, num_frames] long, CPU
    frames: torch.Tensor  # [N, num_frames, *x0.shape[1:]], CPU
    images_cf: torch.Tensor | None = None  # [N, C, H, W], allocated at the first finished item

    @classmethod
    def empty(cls, x0: torch.Tensor, max_steps: int, num_frames: int) -> "_Tracks":
        n, device = x0.shape[0], x0.device
        return cls(
            active=torch.ones(n, dtype=torch.bool, device=device),
            outcome=torch.zeros(n, dtype=torch.long, device=device),
            steps=torch.zeros(n, dtype=torch.long, device=device),
            final_probability=torch.full((n,), math.nan, dtype=torch.float64),
            curves=torch.full((n, max_steps + 1), math.nan, dtype=torch.float64),
            source_class=torch.zeros(n, dtype=torch.long, device=device),
            source_probability=torch.zeros(n, dtype=torch.float64),
            frame_steps=torch.zeros(n, num_frames, dtype=torch.long),
            frames=torch.zeros(n, num_frames, *x0.shape[1:], dtype=x0.dtype),
        )

    def finish(self, items: torch.Tensor, codes: torch.Tensor, step: int, p: torch.Tensor, images: torch.Tensor) -> None:
        """Items [M] ended at ``step`` for ``codes`` [M] with target probability p [M] and images [M, ...]."""
        if self.images_cf is None:
            self.images_cf = torch.full(
                (self.active.shape[0], *images.shape[1:]), math.nan, dtype=images.dtype, device=images.device
            )
        self.active[items] = False
        self.outcome[items] = codes
        self.steps[items] = step
        self.final_probability[items.cpu()] = p.cpu().double()
        self.images_cf[items] = images
