"""Move first: does shifting the whole object, and nothing else, already give the target class?

Gradient ascent in W+ moves every latent coordinate at the rate its update rule allows. In a
generator trained on centred objects a change of position costs far more latent distance than
a change of shape, so for a classifier that decides by position the attack reshapes the object
(and the explanation, truthfully, reports reshaping). Before ascending, the attack therefore
tries the simplest change there is: it moves the object as a whole by 0.5, 1, 1.5, ...
``radius`` pixels along the axis and direction in which a 1-px move raises the objective most (then a
quarter and an eighth of a pixel either side of the best of those), and keeps the smallest
shift that already passes the stop criterion. Items that no such shift flips, and items whose
start already passes, start the ascent unchanged, so ordinary explanations are not touched.
The candidates are fixed per item (no random draws), so the outcome does not depend on the
batch an item shares.

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
                 step: float = 0.5, probe_px: float = 1.0) -> torch.Tensor:
    """The smallest shift per item (along its most promising axis, in ``step`` px increments) that passes, else zero.

    An item whose start already passes gets zero (its start is reported as past the threshold).

    Args:
        score: see ``Score``; called without a graph: 5 times to choose the direction, then
            at most ``radius / step + 4`` times.
        ws0: start latents [N, num_ws, w_dim].
        directions: [N, 2, w_dim], ws entry-0 changes that move each item one pixel right / down
            (`cfattack.stylegan.translation.translation_directions`).
        radius: the largest shift tried, in pixels.
        step: the spacing of the tried shifts: finer than a pixel, because a classifier that
            decides by position can have classes less than a pixel apart. Where none passes,
            four more tries at a half and a quarter step either side of the best-scoring one.
        probe_px: the shift of the four probes (right, left, down, up) whose best gain in the
            objective picks the axis and direction.

    Returns:
        [N, 2] float (x right, y down): the shift to apply, zero for items with none.
    """
    n = ws0.shape[0]
    chosen = torch.zeros(n, 2, dtype=ws0.dtype, device=ws0.device)
    if radius < 1 or n == 0:
        return chosen
    # 1. The axis and sign: the best of four 1-px probes. Not the gradient at the start: a
    # classifier that decides by position is flat or rough there (p(target) ~ 0, sharp edges),
    # and its gradient can point along the wrong axis.
    with torch.no_grad():
        unmoved, passes_unmoved = score(ws0)
        probes = []
        for axis_k, sign_k in ((0, 1.0), (0, -1.0), (1, 1.0), (1, -1.0)):
            probe = torch.zeros_like(chosen)
            probe[:, axis_k] = sign_k * probe_px
            probes.append(score(shift_entry0(ws0, probe, directions))[0].detach())
    gains = torch.stack(probes, dim=1) - unmoved.detach()[:, None]  # [n, 4]
    pick = gains.argmax(dim=1)
    axis, sign = pick // 2, 1.0 - 2.0 * (pick % 2).to(ws0.dtype)
    found = passes_unmoved.clone()  # already past: nothing to move
    rows = torch.arange(n, device=ws0.device)
    best = torch.full((n,), float("-inf"), dtype=ws0.dtype, device=ws0.device)
    best_px = torch.zeros(n, dtype=ws0.dtype, device=ws0.device)

    def attempt(px: torch.Tensor) -> None:
        """Score shifts of ``px`` [n] pixels along each item's axis; open items that pass take theirs."""
        candidate = torch.zeros_like(chosen)
        candidate[rows, axis] = sign * px
        with torch.no_grad():
            objective, passes = score(shift_entry0(ws0, candidate, directions))
        open_rows = ~found
        better = open_rows & (objective.detach() > best)
        best[better], best_px[better] = objective.detach()[better], px[better]
        take = passes & open_rows
        chosen[take] = candidate[take]
        found.copy_(found | take)

    # 2. Try step, 2 step, ... radius pixels that way; the first that passes wins.
    for k in torch.arange(1, int(radius / step) + 1).tolist():
        if bool(found.all()):
            break
        attempt(torch.full((n,), k * step, dtype=ws0.dtype, device=ws0.device))
    # 3. A class less than a step wide can lie between two tries: halve the step twice around the best.
    for fraction in (0.5, 0.25):
        for side in (-1.0, 1.0):
            if bool(found.all()):
                return chosen
            attempt((best_px + side * fraction * step).clamp(step * fraction, float(radius)))
    return chosen
