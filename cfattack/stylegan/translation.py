"""Translating a StyleGAN3 image through its latent: the two w directions of ws entry 0 that shift it.

In StyleGAN3 the first ws entry feeds only the Fourier input's affine ``(r_c, r_s, t_x, t_y)``,
divided by ``|(r_c, r_s)|``: a rotation and a translation of the whole image, which the
alias-free layers carry through. The translation is in image widths, so ``t / |r|`` times the
resolution is the shift in pixels. A generator trained on centred objects learns a large
``|r|`` there, and a step in w then moves the object very little (see training-runs/README.md),
so an attack that moves every coordinate alike (Adam) changes the object's shape long before
it moves it. These helpers expose the move directly, still as a change of ws:

    directions = translation_directions(G, ws)   # [N, 2, w_dim]: +1 px right, +1 px down
    shifted = translate_ws(G, ws, shift_px)      # ws with entry 0 moved to shift by shift_px [N, 2]

Keeping the move inside ws means every downstream part (descriptor predictors, paths, saved
latents) sees it like any other latent change.
"""

from __future__ import annotations

import torch

from cfattack.errors import InvalidInputError

__all__ = ["input_shift_px", "translation_directions", "translate_ws"]


def _input_affine(G: torch.nn.Module) -> torch.nn.Module:
    try:
        return G.synthesis.input.affine
    except AttributeError:
        raise InvalidInputError("translation needs a StyleGAN3 generator (synthesis.input.affine)") from None


def _check_ws(G: torch.nn.Module, ws: torch.Tensor) -> None:
    _input_affine(G)
    if not isinstance(ws, torch.Tensor) or ws.ndim != 3 or ws.shape[2] != G.w_dim:
        shape = list(ws.shape) if isinstance(ws, torch.Tensor) else type(ws).__name__
        raise InvalidInputError(f"ws must be [N, num_ws, {G.w_dim}], got {shape}")


def _input_pose(G: torch.nn.Module, w0: torch.Tensor) -> torch.Tensor:
    """Entry-0 latents [N, w_dim] -> (shift_x px, shift_y px, angle rad) of the input, [N, 3].

    The input layer samples its sinusoids at ``x - t`` (after the rotation), so the image
    content moves by ``+t``; ``t`` is in image widths.
    """
    t = _input_affine(G)(w0.float())
    shift = t[:, 2:] / t[:, :2].norm(dim=1, keepdim=True) * float(G.img_resolution)
    return torch.cat([shift, torch.atan2(t[:, 1], t[:, 0])[:, None]], dim=1)


def input_shift_px(G: torch.nn.Module, w0: torch.Tensor) -> torch.Tensor:
    """Entry-0 latents [N, w_dim] -> the input's translation in output pixels [N, 2] (x right, y down)."""
    return _input_pose(G, w0)[:, :2]


def _jacobian(G: torch.nn.Module, w0: torch.Tensor) -> torch.Tensor:
    """d (shift_x, shift_y, angle) / d w0, [N, 3, w_dim] (each item depends on its own row only)."""
    with torch.enable_grad():
        w = w0.detach().float().requires_grad_(True)
        outputs = _input_pose(G, w)
        rows = [torch.autograd.grad(outputs[:, k].sum(), w, retain_graph=k < 2)[0] for k in range(3)]
    return torch.stack(rows, dim=1)


def translation_directions(G: torch.nn.Module, ws: torch.Tensor) -> torch.Tensor:
    """The least-norm changes of ws entry 0 that shift each image by one pixel right and down.

    Returns [N, 2, w_dim] (first order at ``ws``): adding ``d @ directions[i]`` to
    ``ws[i, 0]`` shifts item i by about ``d`` = (dx, dy) pixels and leaves its rotation (and
    every other entry) as it was.
    """
    _check_ws(G, ws)
    jac = _jacobian(G, ws[:, 0]).double()
    # Right inverse jac^T (jac jac^T)^-1: its first two columns move the shift, not the angle.
    inverse = torch.linalg.solve(jac @ jac.transpose(1, 2), jac)  # [N, 3, w_dim] = ((jac jac^T)^-1 jac)
    return inverse[:, :2].to(ws.dtype).detach()


@torch.no_grad()
def translate_ws(G: torch.nn.Module, ws: torch.Tensor, shift_px: torch.Tensor, *, iterations: int = 3) -> torch.Tensor:
    """ws with entry 0 moved so each image shifts by ``shift_px`` [N, 2] pixels (x right, y down).

    A few Newton steps along `translation_directions` make the shift exact; the other entries
    and the rotation stay as they were.
    """
    _check_ws(G, ws)
    shift_px = torch.as_tensor(shift_px, dtype=torch.float32, device=ws.device)
    if shift_px.shape != (ws.shape[0], 2):
        raise InvalidInputError(f"shift_px must be [{ws.shape[0]}, 2], got {list(shift_px.shape)}")
    goal = input_shift_px(G, ws[:, 0]) + shift_px
    w0 = ws[:, 0].float().clone()
    for _ in range(iterations):
        miss = goal - input_shift_px(G, w0)
        w0 += torch.einsum("nk,nkd->nd", miss, translation_directions(G, w0.unsqueeze(1)).float())
    out = ws.clone()
    out[:, 0] = w0.to(ws.dtype)
    return out
