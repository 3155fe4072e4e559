"""Descriptors of natural images (photos): saturation, warmth, sharpness and texture, vectorised numpy.

The shape descriptors (`descriptors.shape`) assume a bright object on a black background and
mean nothing on a photo of a cat. A photo is described instead by its tone (brightness and
contrast, `descriptors.tone`), its detail (`texture`: local contrast; `sharpness`: how much of
the detail is fine; `edge_density`) and its colour (`saturation`, `warmth`, and
`colourfulness` and `hue` from `descriptors.tone`). `photo_descriptors` assembles the set.

Every function takes a batch ``[N, C, H, W]`` in [-1, 1] (torch tensor or numpy array) and
returns float64 ``[N]``; each is a few whole-batch array operations (no Python loop over
pixels). scipy (for the box filter of `texture`) is imported on first use.

    from descriptors.photo import sharpness, saturation
    sharpness(images)        # in [0, 1]: falls when the image is blurred, unchanged by contrast
    saturation(rgb_images)   # mean chroma in [0, 1]: 0 for grey
"""

from __future__ import annotations

from functools import partial

import numpy as np

from descriptors.base import Descriptor, as_image_batch, luminance
from descriptors.tone import _laplacian, _rgb, colour_descriptors, tone_descriptors

__all__ = [
    "saturation",
    "warmth",
    "sharpness",
    "texture",
    "photo_descriptors",
]


# -- colour -----------------------------------------------------------------------------------------

def saturation(images: object) -> np.ndarray:
    """Mean chroma, ``max(R, G, B) - min(R, G, B)`` per pixel in [0, 1]: 0 grey, 1 pure colours only.

    Chroma rather than HSV saturation ``(max - min) / max``: the latter calls a nearly black
    pixel with a trace of colour fully saturated, so sensor noise in shadows would dominate.
    """
    u = _rgb(images, "saturation")
    return (u.max(axis=1) - u.min(axis=1)).mean(axis=(1, 2))


def warmth(images: object) -> np.ndarray:
    """Warm/cool balance: mean of R - B in [0, 1] intensity units, in [-1, 1] (> 0 warm: red, orange; < 0 cool: blue)."""
    u = _rgb(images, "warmth")
    return (u[:, 0] - u[:, 2]).mean(axis=(1, 2))


# -- detail -----------------------------------------------------------------------------------------

def sharpness(images: object) -> np.ndarray:
    """Share of the image's gradient energy that is fine detail, in [0, 1]; contrast-invariant.

    ``mean(L^2) / (8 mean(dx^2 + dy^2))`` with L the 5-point Laplacian and dx, dy forward
    differences of the grey intensity (border replicated). L is the sum of the four differences
    to the neighbours, so ``L^2 <= 4 x`` their squares and the ratio never exceeds 1 (a
    one-pixel checkerboard). Blurring by a Gaussian of sigma px scales it by about 1 / sigma^2;
    scaling the contrast leaves it unchanged, so it does not just repeat `contrast`.
    Reference values (away from the border): a sharp straight step 0.25, pixel noise about 0.6,
    a linear ramp 0; a flat image gives exactly 0.
    """
    u = luminance(as_image_batch(images))
    u = u - u[:, :1, :1]            # an exactly constant image gives exactly 0 below
    dx, dy = np.diff(u, axis=2), np.diff(u, axis=1)
    grad = (dx * dx).sum(axis=(1, 2)) + (dy * dy).sum(axis=(1, 2))
    lap = _laplacian(u)
    fine = (lap * lap).sum(axis=(1, 2))
    return np.where(grad > 0, fine / (8.0 * np.where(grad > 0, grad, 1.0)), 0.0)


def texture(images: object, window: int = 5) -> np.ndarray:
    """Local contrast: the standard deviation of the grey intensity in ``window x window`` px windows, averaged.

    In [0, 0.5] intensity units: 0 for a flat image, high for fine texture and busy detail; a
    smooth gradient or a single large shape adds little, so it separates a textured image from a
    merely contrasty one (`contrast` is the standard deviation over the whole image).
    """
    if not (isinstance(window, (int, np.integer)) and window >= 3 and window % 2 == 1):
        raise ValueError(f"window must be an odd number of pixels >= 3, got {window!r}")
    from scipy.ndimage import uniform_filter     # lazily: importing descriptors loads numpy only

    u = luminance(as_image_batch(images))
    u = u - u[:, :1, :1]            # smaller values, less rounding in E[u^2] - E[u]^2; a flat image gives 0
    size = (1, int(window), int(window))
    var = uniform_filter(u * u, size=size, mode="nearest") - uniform_filter(u, size=size, mode="nearest") ** 2
    return np.sqrt(np.maximum(var, 0.0)).mean(axis=(1, 2))


# -- the descriptor records -------------------------------------------------------------------------

def photo_descriptors(channels: int, *, edge_threshold: float = 0.05, min_chroma: float = 0.1,
                      texture_window: int = 5) -> list[Descriptor]:
    """Descriptors for natural images: tone, detail and (for RGB) colour, as records.

    Grey: ``mean_intensity`` and ``contrast`` (tone), ``texture``, ``sharpness`` and
    ``edge_density`` (texture); RGB adds ``saturation``, ``colourfulness``, ``hue`` (circular)
    and ``warmth``. ``edge_threshold`` is the Sobel gradient (intensity per px) that counts as an
    edge: lower than for objects on a plain background, since photos at 256-1024 px spread an edge
    over several pixels.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels!r}")
    if not (isinstance(texture_window, (int, np.integer)) and texture_window >= 3 and texture_window % 2 == 1):
        raise ValueError(f"texture_window must be an odd number of pixels >= 3, got {texture_window!r}")
    tone = {d.name: d for d in tone_descriptors(edge_threshold=edge_threshold)}
    both = (1, 3)
    items = [
        tone["mean_intensity"], tone["contrast"],
        Descriptor("texture", "intensity [0,1]",
                   f"local contrast: std of the grey intensity in {int(texture_window)}x{int(texture_window)} "
                   "px windows, averaged", "texture", both, partial(texture, window=int(texture_window)),
                   "more texture and fine detail"),
        Descriptor("sharpness", "fraction",
                   "fine share of the detail: mean squared Laplacian / (8 x mean squared gradient); "
                   "contrast-invariant", "texture", both, sharpness, "crisper, less blurred"),
        tone["edge_density"],
    ]
    if channels == 3:
        colour = {d.name: d for d in colour_descriptors(min_chroma=min_chroma)}
        items += [
            Descriptor("saturation", "chroma [0,1]", "mean chroma, max - min of R, G, B per pixel",
                       "colour", (3,), saturation, "more saturated colours"),
            colour["colourfulness"], colour["hue"],
            Descriptor("warmth", "intensity [-1,1]", "warm/cool balance: mean of R - B", "colour", (3,), warmth,
                       "warmer (redder), less blue"),
        ]
    return items
