"""Change class first: how far along the generator's own class direction must an item go?

The difference of two class means in W (`cfattack.stylegan.class_means`) is what the generator
learnt separates the classes. Before ascending, the attack tries adding 1/k, 2/k, ... of it to
every ws entry and starts from the smallest step that already passes the stop criterion; an
item that no step flips starts from the step its classifier liked best (none, if none helped).
The ascent then goes on from there. Starting on the generator's class path, rather than
wherever the classifier's gradient points first, gives counterfactuals that other classifiers
also see as the target and that look like the target class. The candidates are fixed per item
(no random draws), so the outcome does not depend on the batch an item shares.

    step = search_class_step(score, ws0, directions, tries=8, reach=1.0)   # [N] in [0, reach]
"""

from __future__ import annotations

import torch

from cfattack.attack.shift_search import Score

__all__ = ["add_class_step", "search_class_step"]


def add_class_step(ws: torch.Tensor, step: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """ws [N, num_ws, w_dim] plus ``step`` [N] times the per-item class direction [N, w_dim] on every entry."""
    return ws + (step.to(ws.dtype)[:, None] * directions)[:, None, :]


def search_class_step(score: Score, ws0: torch.Tensor, directions: torch.Tensor, tries: int,
                      reach: float = 1.0) -> torch.Tensor:
    """The smallest of ``reach * k / tries`` (k = 1..tries) that passes, per item; else the best scoring.

    Items whose start already passes, or whose direction is not finite, get 0.

    Args:
        score: ws -> (objective [n], passes the stop criterion [n]), called ``tries + 1`` times
            without a graph.
        ws0: start latents [N, num_ws, w_dim].
        directions: [N, w_dim], target class mean minus source class mean; a row that is not
            finite (a class the generator never made) is never moved.
        tries: candidate steps; reach: the largest, in units of the whole class difference.

    Returns:
        [N] step sizes (0 for items that no candidate improved).
    """
    n = ws0.shape[0]
    chosen = torch.zeros(n, dtype=ws0.dtype, device=ws0.device)
    if tries < 1 or n == 0:
        return chosen
    usable = torch.isfinite(directions).all(dim=1)
    directions = torch.where(usable[:, None], directions, torch.zeros_like(directions))
    with torch.no_grad():
        best, passes_unmoved = score(ws0)
        best = best.detach().clone()
        found = ~usable | passes_unmoved  # a start already past the threshold is reported as such, not moved
        for k in range(1, tries + 1):
            if bool(found.all()):
                break
            step = torch.full((n,), reach * k / tries, dtype=ws0.dtype, device=ws0.device)
            objective, passes = score(add_class_step(ws0, step, directions))
            open_rows = ~found
            better = open_rows & (objective.detach() > best)
            chosen[better] = step[better]
            best[better] = objective.detach()[better]
            take = open_rows & passes
            chosen[take] = step[take]
            found |= take
    return chosen
