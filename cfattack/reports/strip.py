"""The strip of an explanation: original | reconstruction | frames of the path | counterfactual | difference.

Panels are enlarged by an integer factor with nearest-neighbour sampling (a 32x32 image becomes
128x128, pixels stay crisp), grey images stay grey, and the signed difference
counterfactual - start is drawn blue (darker) / white (unchanged) / red (brighter) on a scale
symmetric about zero. Panels are separated by a thin white gap::

    pixels = render_strip(exp)                       # uint8 [H, W, 3]
    panels = strip_panels(exp)                       # the same panels with captions, for HTML
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from cfattack.errors import InvalidInputError
from cfattack.reports.pixels import diverging_rgb, to_display_rgb, upscale_nearest

if TYPE_CHECKING:  # reports build on the explanation; only the type is needed here
    from cfattack.pipeline.explanation import Explanation

__all__ = ["Panel", "DEFAULT_PANEL_HEIGHT", "DEFAULT_GAP", "DEFAULT_MAX_FRAMES", "display_scale", "pick_frames",
           "strip_panels", "compose_strip", "render_strip"]

DEFAULT_PANEL_HEIGHT = 128
DEFAULT_GAP = 4
DEFAULT_MAX_FRAMES = 6


@dataclass(frozen=True)
class Panel:
    """One picture of the strip at its native size: uint8 ``pixels`` [H, W, 3] and its caption."""

    caption: str
    pixels: np.ndarray
    kind: str  # "original", "reconstruction", "frame", "counterfactual" or "difference"


def display_scale(height: int, target_height: int = DEFAULT_PANEL_HEIGHT) -> int:
    """The integer enlargement that brings ``height`` closest to ``target_height`` (never shrinks)."""
    return max(1, round(target_height / max(height, 1)))


def pick_frames(frame_steps: list[int], steps: int, max_frames: int) -> list[int]:
    """Indices of the frames strictly between the start (step 0) and the counterfactual (step ``steps``).

    The start and end iterates are already shown as the reconstruction (or original) and the
    counterfactual; a step repeated (a path shorter than the frame count) is shown once; at most
    ``max_frames`` of the rest are kept, evenly spaced.
    """
    first_of_step: dict[int, int] = {}
    for i, s in enumerate(frame_steps):
        if 0 < s < steps:
            first_of_step.setdefault(s, i)
    inner = [first_of_step[s] for s in sorted(first_of_step)]
    if len(inner) <= max_frames:
        return inner
    if max_frames <= 0:
        return []
    if max_frames == 1:
        return [inner[len(inner) // 2]]
    positions = np.linspace(0, len(inner) - 1, max_frames).round().astype(int)
    return [inner[p] for p in sorted(set(positions.tolist()))]


def first_move_frames(explanation: Explanation, frame_count: int, max_frames: int) -> list[int]:
    """Inner frames of a path made by the first move alone, else none.

    A counterfactual reached by the class step or the whole-object shift before any ascent step
    (``steps == 0``) has frames on the straight line from the reconstruction to it
    (`cfattack.attack.latent_attack`); all are "step 0", so `pick_frames` shows none of them.
    """
    shifted = explanation.shift_px is not None and any(abs(v) > 0 for v in explanation.shift_px)
    if explanation.steps != 0 or not (explanation.class_step or shifted) or frame_count < 3 or max_frames <= 0:
        return []
    inner = list(range(1, frame_count - 1))
    if len(inner) <= max_frames:
        return inner
    positions = np.linspace(0, len(inner) - 1, max_frames).round().astype(int)
    return [inner[p] for p in sorted(set(positions.tolist()))]


def strip_panels(explanation: Explanation, max_frames: int = DEFAULT_MAX_FRAMES) -> list[Panel]:
    """The panels of the strip, left to right, at native resolution.

    original | reconstruction (skipped in pixel space) | up to ``max_frames`` intermediate frames |
    counterfactual | difference. Captions name the attack step of every frame.

    Raises:
        InvalidInputError: the explanation has no images, or they are malformed (shape, NaN).
    """
    if not explanation.has_images:
        raise InvalidInputError("this explanation has no images (it was read from JSON); a report needs them")
    images = explanation.images
    frames = images.frames
    if not isinstance(frames, torch.Tensor) or frames.ndim != 4:
        shape = list(frames.shape) if hasattr(frames, "shape") else type(frames).__name__
        raise InvalidInputError(f"explanation frames must be a tensor [F, C, H, W]; got {shape}")
    # Frames whose steps are unknown (a count that differs from frame_steps) cannot be captioned:
    # the strip then goes straight from the start to the counterfactual.
    frame_steps = list(explanation.frame_steps) if frames.shape[0] == len(explanation.frame_steps) else []

    # In pixel space the attack starts from the original itself: it is step 0.
    latent = images.reconstruction is not None
    panels = [Panel("original" if latent else "original (step 0)", to_display_rgb(images.original, "original image"),
                    "original")]
    if latent:
        panels.append(Panel("reconstruction (step 0)", to_display_rgb(images.reconstruction, "reconstruction"),
                            "reconstruction"))
    for i in pick_frames(frame_steps, explanation.steps, max_frames):
        panels.append(Panel(f"step {frame_steps[i]}", to_display_rgb(frames[i], f"frame {i}"), "frame"))
    last = frames.shape[0] - 1
    for i in first_move_frames(explanation, frames.shape[0], max_frames):
        panels.append(Panel(f"first move {i}/{last}", to_display_rgb(frames[i], f"frame {i}"), "frame"))
    panels.append(Panel(f"counterfactual (step {explanation.steps})",
                        to_display_rgb(images.counterfactual, "counterfactual"), "counterfactual"))

    start = images.reconstruction if latent else images.original
    if tuple(start.shape) != tuple(images.counterfactual.shape):
        raise InvalidInputError(
            f"the counterfactual {list(images.counterfactual.shape)} and the start image {list(start.shape)} "
            "must have the same shape to be compared"
        )
    difference = images.difference.detach().to("cpu", torch.float32)
    signed = difference.mean(dim=0).numpy()  # channel mean: brighter > 0, darker < 0
    scale = float(np.abs(signed[np.isfinite(signed)]).max(initial=0.0))
    panels.append(Panel(f"difference (\u00b1{scale:.2f})", diverging_rgb(signed, scale), "difference"))
    return panels


def compose_strip(
    panels: list[Panel],
    target_height: int = DEFAULT_PANEL_HEIGHT,
    gap: int = DEFAULT_GAP,
    background: int = 255,
) -> np.ndarray:
    """Enlarge the panels (one integer factor for all) and place them left to right.

    Every panel gets a cell of the largest enlarged size (a smaller panel is centred in it), and
    cells are ``gap`` pixels apart, filled with grey level ``background``.

    Returns:
        uint8 [H, W, 3] with ``W = n * cell_w + (n - 1) * gap``.
    """
    if not panels:
        raise InvalidInputError("compose_strip needs at least one panel")
    if gap < 0:
        raise InvalidInputError(f"gap must be >= 0; got {gap}")
    scale = display_scale(max(p.pixels.shape[0] for p in panels), target_height)
    enlarged = [upscale_nearest(p.pixels, scale) for p in panels]
    cell_h = max(e.shape[0] for e in enlarged)
    cell_w = max(e.shape[1] for e in enlarged)
    n = len(enlarged)
    canvas = np.full((cell_h, n * cell_w + (n - 1) * gap, 3), background, dtype=np.uint8)
    for i, e in enumerate(enlarged):
        top = (cell_h - e.shape[0]) // 2
        left = i * (cell_w + gap) + (cell_w - e.shape[1]) // 2
        canvas[top : top + e.shape[0], left : left + e.shape[1]] = e
    return canvas


def render_strip(
    explanation: Explanation,
    target_height: int = DEFAULT_PANEL_HEIGHT,
    gap: int = DEFAULT_GAP,
    max_frames: int = DEFAULT_MAX_FRAMES,
) -> np.ndarray:
    """The strip of ``explanation`` as uint8 [H, W, 3]; see `strip_panels` and `compose_strip`."""
    return compose_strip(strip_panels(explanation, max_frames), target_height, gap)
