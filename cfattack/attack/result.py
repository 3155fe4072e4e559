"""What an attack returns: `AttackResult` (tensors, on the CPU) and `AttackItemSummary` (one per item, JSON-ready).

Also the stop reasons (`AttackReason`) and the loop's integer codes for them, so the loop and
the result agree on one table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, overload

import torch
from pydantic import Field

from cfattack.config import AttackConfig, FrozenConfig

__all__ = ["AttackResult", "AttackItemSummary", "AttackReason"]

AttackReason = Literal["reached", "max_steps", "zero_gradient", "non_finite"]
_REASONS: tuple[AttackReason, ...] = ("reached", "max_steps", "zero_gradient", "non_finite")
# Per-item outcome codes inside the loop: 0 = still moving, else 1 + index into _REASONS.
_GOING, _REACHED, _MAX_STEPS, _ZERO_GRADIENT, _NON_FINITE = range(5)


class AttackItemSummary(FrozenConfig):
    """The scalar outcome of one item of an attack (JSON-ready); tensors stay in `AttackResult`."""

    index: int = Field(..., ge=0, description="Position of the item in the batch.")
    target: int = Field(..., ge=0, description="Target class index.")
    reached: bool = Field(..., description="The target probability passed the threshold.")
    reason: AttackReason = Field(..., description="Why the item stopped.")
    steps: int = Field(..., ge=0, description="Updates taken: the index of the final iterate (0 = the start).")
    target_probability: float = Field(..., description="Target probability at the final iterate.")
    source_class: int = Field(..., ge=0, description="Predicted class at the start iterate.")
    source_probability: float = Field(..., description="Probability of the source class at the start iterate.")
    latent_distance: float | None = Field(..., description="||ws_cf - ws0||_2 over all entries (None in pixel space).")
    latent_distance_per_entry: float | None = Field(
        ..., description="Mean over ws entries of ||ws_cf[k] - ws0[k]||_2 (None in pixel space)."
    )
    pixel_rms: float = Field(..., description="Root mean square difference of the start and final images.")
    pixel_l2: float = Field(..., description="L2 norm of the difference of the start and final images.")
    probability_curve: list[float] = Field(..., description="Target probability at iterates 0..steps.")
    frame_steps: list[int] = Field(..., description="The iterates kept as frames, first and last included.")
    shift_px: tuple[float, float] | None = Field(
        None, description="With shift_lr: (right, down) pixels the item was moved as a whole (first order)."
    )
    class_step: float | None = Field(
        None, description="With class_search_steps: the step along the class direction taken before the ascent."
    )


@dataclass(frozen=True)
class AttackResult:
    """Outcome of `LatentAttack.run` for N items; every tensor is detached and on the CPU.

    ``latent`` below is ws0's shape without the batch: ``[num_ws, w_dim]`` (or ``[D]``).
    Fields that do not exist in pixel space (ws_cf, frames_ws, latent distances) are None there.
    """

    config: AttackConfig
    target: torch.Tensor  # [N] long
    reached: torch.Tensor  # [N] bool
    reasons: list[AttackReason]  # N
    steps: torch.Tensor  # [N] long, index of each item's final iterate
    target_probability: torch.Tensor  # [N] float64, at the final iterate
    source_class: torch.Tensor  # [N] long, argmax at the start iterate
    source_probability: torch.Tensor  # [N] float64
    probability_curves: list[torch.Tensor]  # item i: [steps[i] + 1] float64
    ws0: torch.Tensor | None  # [N, *latent]
    ws_cf: torch.Tensor | None  # [N, *latent]
    images0: torch.Tensor  # [N, C, H, W]: decode(ws0), or the start image in pixel space
    images_cf: torch.Tensor  # [N, C, H, W]
    latent_distance: torch.Tensor | None  # [N]
    latent_distance_per_entry: torch.Tensor | None  # [N]
    pixel_rms: torch.Tensor  # [N]
    pixel_l2: torch.Tensor  # [N]
    frame_steps: torch.Tensor  # [N, num_frames] long
    frames_ws: torch.Tensor | None  # [N, num_frames, *latent]
    frames_images: torch.Tensor | None  # [N, num_frames, C, H, W]; None unless record_images (or pixel space)
    seconds: float  # wall-clock time of the whole run
    shift_px: torch.Tensor | None = None  # [N, 2] with shift_lr: (right, down) pixels the shift rule moved, first order
    class_step: torch.Tensor | None = None  # [N] with class_search_steps: the class-direction step taken first

    def __len__(self) -> int:
        return int(self.target.shape[0])

    @property
    def flip_rate(self) -> float:
        """Share of items whose target probability passed the threshold."""
        return float(self.reached.float().mean())

    def summary(self) -> list[AttackItemSummary]:
        """One validated, JSON-ready `AttackItemSummary` per item."""

        def maybe(values: torch.Tensor | None, i: int) -> float | None:
            return None if values is None else float(values[i])

        return [
            AttackItemSummary(
                index=i,
                target=int(self.target[i]),
                reached=bool(self.reached[i]),
                reason=self.reasons[i],
                steps=int(self.steps[i]),
                target_probability=float(self.target_probability[i]),
                source_class=int(self.source_class[i]),
                source_probability=float(self.source_probability[i]),
                latent_distance=maybe(self.latent_distance, i),
                latent_distance_per_entry=maybe(self.latent_distance_per_entry, i),
                pixel_rms=float(self.pixel_rms[i]),
                pixel_l2=float(self.pixel_l2[i]),
                probability_curve=self.probability_curves[i].tolist(),
                frame_steps=self.frame_steps[i].tolist(),
                shift_px=None if self.shift_px is None else (float(self.shift_px[i, 0]), float(self.shift_px[i, 1])),
                class_step=maybe(self.class_step, i),
            )
            for i in range(len(self))
        ]


@overload
def _cpu(tensor: torch.Tensor) -> torch.Tensor: ...
@overload
def _cpu(tensor: None) -> None: ...
def _cpu(tensor: torch.Tensor | None) -> torch.Tensor | None:
    """Detached CPU copy (None stays None)."""
    return None if tensor is None else tensor.detach().cpu()
