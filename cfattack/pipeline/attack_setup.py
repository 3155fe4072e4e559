"""How the explainer wires the attack to the generator: decode, progress, whole-object directions.

Small pieces of `cfattack.pipeline.explainer`, kept apart so the explainer reads as the pipeline.
"""

from __future__ import annotations

from typing import Callable

import torch

from cfattack.errors import InvalidInputError
from cfattack.stylegan.translation import translation_directions

__all__ = ["attack_progress", "clamp_straight_through", "shift_directions_or_none"]


def attack_progress(on_progress: Callable[[str, int, int], None] | None) -> Callable[[int, int, int], None] | None:
    """`LatentAttack`'s per-step callback as an ``on_progress("attack", finished items, items)`` call."""
    if on_progress is None:
        return None
    return lambda step, done, total: on_progress("attack", done, total)


def shift_directions_or_none(G: torch.nn.Module, ws: torch.Tensor, required: bool) -> torch.Tensor | None:
    """`translation_directions`, or None when the generator cannot shift (a degenerate input pose, e.g.
    a freshly initialised config-R input layer): the shift search is then skipped; --shift-lr fails."""
    try:
        return translation_directions(G, ws)
    except torch.linalg.LinAlgError:
        if required:
            raise InvalidInputError("this generator cannot shift its image (its input pose does not depend on w); "
                                    "drop --shift-lr") from None
        return None


def clamp_straight_through(images: torch.Tensor) -> torch.Tensor:
    """Clamp to [-1, 1] in the forward pass, identity in the backward pass.

    The classifier must judge the image a user will see (saved images are clamped, and so is
    the inverter's reconstruction), but a hard clamp would zero the gradient of every
    saturated pixel, e.g. the whole background, so the attack could never add ink there.
    """
    return images + (images.clamp(-1, 1) - images).detach()
