"""Tone, texture and colour descriptors: brightness, contrast, edges, fine texture, colourfulness, hue.

Every function takes a batch ``[N, C, H, W]`` in [-1, 1] (torch tensor or numpy array) and
returns float64 ``[N]``. Tone and texture use the grey intensity in [0, 1] (the BT.601 luminance
of RGB images); colourfulness and hue need RGB. Derivatives replicate the border pixels, so a
constant image has no edges and no texture. Pure numpy: nothing here imports scipy.

    from descriptors.tone import contrast, hue
    contrast(images)                     # float64 [N], std of the intensity
    hue(rgb_images)                      # degrees in [0, 360), NaN for images without colour
"""

from __future__ import annotations

from functools import partial

import numpy as np

from descriptors.base import Descriptor, as_image_batch, intensity, luminance

__all__ = [
    "mean_intensity",
    "contrast",
    "sobel_magnitude",
    "edge_density",
    "texture_energy",
    "colourfulness",
    "hue",
    "tone_descriptors",
    "colour_descriptors",
]


# -- tone -------------------------------------------------------------------------------------------

def mean_intensity(images: object) -> np.ndarray:
    """Mean grey intensity in [0, 1] (0 = black, 1 = white)."""
    return luminance(as_image_batch(images)).mean(axis=(1, 2))


def contrast(images: object) -> np.ndarray:
    """RMS contrast: standard deviation of the grey intensity in [0, 1] units (0 for a constant image)."""
    u = luminance(as_image_batch(images))
    # Shifted by one pixel's value: the same std, exactly 0 for a constant image (no rounding residue).
    return (u - u[:, :1, :1]).std(axis=(1, 2))


# -- texture ----------------------------------------------------------------------------------------

def _padded(u: np.ndarray) -> np.ndarray:
    return np.pad(u, ((0, 0), (1, 1), (1, 1)), mode="edge")


def _sobel_xy(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Grey planes ``[N, H, W]`` -> Sobel derivatives (gx, gy) ``[N, H, W]`` in intensity per px (kernels / 8)."""
    p = _padded(u)
    rows_smooth = p[:, :-2, :] + 2.0 * p[:, 1:-1, :] + p[:, 2:, :]          # [N, H, W + 2]
    cols_smooth = p[:, :, :-2] + 2.0 * p[:, :, 1:-1] + p[:, :, 2:]          # [N, H + 2, W]
    return (rows_smooth[:, :, 2:] - rows_smooth[:, :, :-2]) / 8.0, (cols_smooth[:, 2:, :] - cols_smooth[:, :-2, :]) / 8.0


def _laplacian(u: np.ndarray) -> np.ndarray:
    """Grey planes ``[N, H, W]`` -> 5-point Laplacian (4 neighbours - 4 x the pixel) ``[N, H, W]``, border replicated."""
    p = _padded(u)
    return p[:, :-2, 1:-1] + p[:, 2:, 1:-1] + p[:, 1:-1, :-2] + p[:, 1:-1, 2:] - 4.0 * p[:, 1:-1, 1:-1]


def sobel_magnitude(images: object) -> np.ndarray:
    """Gradient magnitude ``[N, H, W]`` in intensity per px, from 3x3 Sobel kernels divided by 8.

    Divided by 8 the Sobel kernel is a central difference smoothed across the edge, so a
    linear ramp of slope s gives s, and a sharp 0 -> 1 step gives 0.5 on the two pixels beside it.
    """
    return np.hypot(*_sobel_xy(luminance(as_image_batch(images))))


def edge_density(images: object, edge_threshold: float = 0.1) -> np.ndarray:
    """Share of pixels whose Sobel gradient magnitude exceeds ``edge_threshold`` (intensity per px), in [0, 1].

    The default 0.1 counts any step of at least 0.2 in intensity across two pixels.
    """
    if not float(edge_threshold) >= 0.0:
        raise ValueError(f"edge_threshold must be >= 0 (intensity per px), got {edge_threshold!r}")
    return (sobel_magnitude(images) > float(edge_threshold)).mean(axis=(1, 2), dtype=np.float64)


def texture_energy(images: object) -> np.ndarray:
    """Mean squared 5-point Laplacian of the intensity, in (intensity / px^2)^2.

    The Laplacian (sum of the 4 neighbours minus 4 x the pixel) responds to fine detail and
    curvature, not to smooth gradients: 0 for a flat image or a linear ramp, 16 inside a
    one-pixel black-and-white checkerboard. Over the whole image, so outlines contribute too.
    """
    lap = _laplacian(luminance(as_image_batch(images)))
    return (lap * lap).mean(axis=(1, 2))


# -- colour -----------------------------------------------------------------------------------------

def _rgb(images: object, what: str) -> np.ndarray:
    batch = as_image_batch(images)
    if batch.shape[1] != 3:
        raise ValueError(f"{what} needs RGB images [N, 3, H, W], got C={batch.shape[1]}")
    return intensity(batch)


def colourfulness(images: object) -> np.ndarray:
    """Hasler & Suesstrunk (2003) colourfulness M, on their 0-255 scale.

    With rg = R - G and yb = (R + G) / 2 - B over the image's pixels,
    ``M = sqrt(std(rg)^2 + std(yb)^2) + 0.3 sqrt(mean(rg)^2 + mean(yb)^2)``. Computed on [0, 1]
    channels and multiplied by 255 so the paper's reading holds: about 0 not colourful, 15
    slightly, 33 moderately, 45 averagely, 59 quite, 82 highly, 109 extremely colourful. Grey
    images give 0; a uniform pure red 0.3 x 255 x sqrt(1.25) = 85.5.
    """
    u = _rgb(images, "colourfulness")
    r, g, b = u[:, 0], u[:, 1], u[:, 2]
    rg = r - g
    yb = 0.5 * (r + g) - b
    sigma = np.sqrt(rg.var(axis=(1, 2)) + yb.var(axis=(1, 2)))
    mu = np.sqrt(rg.mean(axis=(1, 2)) ** 2 + yb.mean(axis=(1, 2)) ** 2)
    return 255.0 * (sigma + 0.3 * mu)


def _hsv_hue_deg(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RGB [N, 3, H, W] in [0, 1] -> (HSV hue in degrees [N, H, W], chroma max - min [N, H, W])."""
    r, g, b = u[:, 0], u[:, 1], u[:, 2]
    mx, mn = u.max(axis=1), u.min(axis=1)
    chroma = mx - mn
    c = np.where(chroma > 0, chroma, 1.0)
    # The hexcone: which channel is largest picks the 120-degree sector.
    h = np.where(mx == r, ((g - b) / c) % 6.0, np.where(mx == g, (b - r) / c + 2.0, (r - g) / c + 4.0))
    return 60.0 * h, chroma


def hue(images: object, min_chroma: float = 0.1) -> np.ndarray:
    """Chroma-weighted circular mean HSV hue, in degrees [0, 360): 0 red, 120 green, 240 blue.

    Each pixel with chroma (max - min of R, G, B in [0, 1]) of at least ``min_chroma`` votes
    for its hue with a weight equal to its chroma, so vivid pixels count more than muted ones;
    grey, near-black and near-white pixels have no stable hue and do not vote. NaN when no pixel
    is coloured enough, or when the hues cancel out (e.g. half red, half cyan). Hue is circular:
    compare two values by their difference wrapped into [-180, 180) (the record's ``period``).
    """
    if not 0.0 < float(min_chroma) <= 1.0:
        raise ValueError(f"min_chroma must lie in (0, 1], got {min_chroma!r}")
    # float32 per pixel (the trigonometry runs about 5x faster; hue to ~1e-5 deg), float64 sums.
    h, chroma = _hsv_hue_deg(_rgb(images, "hue").astype(np.float32))
    weight = np.where(chroma >= np.float32(min_chroma), chroma, np.float32(0.0))
    rad = np.radians(h)
    s = (np.sin(rad) * weight).sum(axis=(1, 2), dtype=np.float64)
    c = (np.cos(rad) * weight).sum(axis=(1, 2), dtype=np.float64)
    total = weight.sum(axis=(1, 2), dtype=np.float64)
    # A resultant shorter than 1e-6 of the total weight means the hues cancel: no mean direction.
    undefined = (total <= 0) | (np.hypot(s, c) <= 1e-6 * total)
    return np.where(undefined, np.nan, np.degrees(np.arctan2(s, c)) % 360.0)


# -- the descriptor records -------------------------------------------------------------------------

def tone_descriptors(edge_threshold: float = 0.1) -> list[Descriptor]:
    """Tone and texture descriptors (grey and RGB) as records."""
    if not float(edge_threshold) >= 0.0:
        raise ValueError(f"edge_threshold must be >= 0 (intensity per px), got {edge_threshold!r}")
    both = (1, 3)
    return [
        Descriptor("mean_intensity", "intensity [0,1]", "mean grey intensity (BT.601 luminance for RGB)",
                   "tone", both, mean_intensity, "brighter image"),
        Descriptor("contrast", "intensity [0,1]", "RMS contrast: standard deviation of the grey intensity",
                   "tone", both, contrast, "more contrast"),
        Descriptor("edge_density", "fraction",
                   f"share of pixels whose Sobel gradient exceeds {float(edge_threshold):g} intensity/px",
                   "texture", both, partial(edge_density, edge_threshold=float(edge_threshold)),
                   "more edges"),
        Descriptor("texture_energy", "(intensity/px^2)^2", "mean squared 5-point Laplacian of the intensity",
                   "texture", both, texture_energy, "more fine detail"),
    ]


def colour_descriptors(min_chroma: float = 0.1) -> list[Descriptor]:
    """Colour descriptors (RGB only) as records."""
    if not 0.0 < float(min_chroma) <= 1.0:
        raise ValueError(f"min_chroma must lie in (0, 1], got {min_chroma!r}")
    return [
        Descriptor("colourfulness", "H&S M (0-255 scale)",
                   "Hasler-Suesstrunk colourfulness: std + 0.3 x mean of the rg/yb opponent channels",
                   "colour", (3,), colourfulness, "more colourful"),
        Descriptor("hue", "deg", f"chroma-weighted circular mean HSV hue of pixels with chroma >= "
                   f"{float(min_chroma):g}; NaN if none", "colour", (3,), partial(hue, min_chroma=float(min_chroma)),
                   "circular: 0 red, 120 green, 240 blue", period=360.0),
    ]
