"""Move first: does shifting the whole object, and nothing else, already give the target class?

Gradient ascent in W+ moves every latent coordinate at the rate its update rule allows. In a
generator trained on centred objects a change of position costs far more latent distance than
a change of shape, so for a classifier that decides by position the attack reshapes the object
(and the explanation, truthfully, reports reshaping). Before ascending, the attack therefore
tries the simplest change there is: it moves the object as a whole by 0.5, 1, 1.5, ...
``radius`` pixels along the axis and direction in which the objective rises fastest, and keeps the
smallest shift that already passes the stop criterion. Items that no such shift flips, and
items whose start already passes, start the ascent unchanged, so ordinary explanations are not touched. The candidates are fixed per
item (no random draws), so the outcome does not depend on the batch an item shares.

    shift = search_shift(score, ws0, directions, radius=4)   # [N, 2] px, zeros where none passes
"""

from __future__ import annotations

from typing import Callable

import torch

__all__ = ["search_shift", "shift_entry0"]

# ws [n, num_ws, w_dim] -> (objective [n] with a graph to ws, passes the stop criterion [n] bool)
Score = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def shift_entry0(ws: torch.Tensor, shift_px: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """ws with entry 0 moved along the per-item pixel directions [N, 2, w_dim] by shift_px [N, 2]."""
    out = ws.clone()
    out[:, 0] = ws[:, 0] + torch.einsum("nk,nkd->nd", shift_px.to(ws.dtype), directions)
    return out


def search_shift(score: Score, ws0: torch.Tensor, directions: torch.Tensor, radius: int,
                 step: float = 0.5) -> torch.Tensor:
    """The smallest shift per item (along its steepest axis, in ``step`` px increments) that passes, else zero.

    An item whose start already passes gets zero (its start is reported as past the threshold).

    Args:
        score: see ``Score``; called once with a graph (for the direction) and at most
            ``radius / step`` times without.
        ws0: start latents [N, num_ws, w_dim].
        directions: [N, 2, w_dim], ws entry-0 changes that move each item one pixel right / down
            (`cfattack.stylegan.translation.translation_directions`).
        radius: the largest shift tried, in pixels.
        step: the spacing of the tried shifts: finer than a pixel, because a classifier that
            decides by position can have classes less than a pixel apart.

    Returns:
        [N, 2] float (x right, y down): the shift to apply, zero for items with none.
    """
    n = ws0.shape[0]
    chosen = torch.zeros(n, 2, dtype=ws0.dtype, device=ws0.device)
    if radius < 1 or n == 0:
        return chosen
    # 1. The steepest axis and its sign: d objective / d (shift_x, shift_y) at the start.
    with torch.enable_grad():
        origin = torch.zeros(n, 2, dtype=ws0.dtype, device=ws0.device, requires_grad=True)
        objective, passes_unmoved = score(shift_entry0(ws0.detach(), origin, directions))
        (slope,) = torch.autograd.grad(objective.sum(), origin)
    axis = slope.abs().argmax(dim=1)
    sign = slope.gather(1, axis[:, None]).squeeze(1).sign()
    found = (sign == 0) | passes_unmoved  # no slope, or already past: nothing to move
    rows = torch.arange(n, device=ws0.device)
    # 2. Try step, 2 step, ... radius pixels that way; the first that passes wins.
    for k in torch.arange(1, int(radius / step) + 1).tolist():
        if bool(found.all()):
            break
        candidate = torch.zeros_like(chosen)
        candidate[rows, axis] = sign * (k * step)
        with torch.no_grad():
            _, passes = score(shift_entry0(ws0, candidate, directions))
        take = passes & ~found
        chosen[take] = candidate[take]
        found |= take
    return chosen
