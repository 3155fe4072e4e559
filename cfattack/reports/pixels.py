"""Tensors -> display pixels for reports: grey/RGB to RGB, nearest upscaling, a diverging colour map, PNG data URIs.

Everything here works on uint8 ``[H, W, 3]`` arrays, the form a report draws with; tensors enter
through `cfattack.images._to_uint8_hwc`, so reports and ``save_image`` map values identically::

    uri = image_data_uri(exp.images.counterfactual)          # "data:image/png;base64,..."
    rgb = diverging_rgb(diff.mean(0).numpy())                  # blue < 0, white = 0, red > 0
"""

from __future__ import annotations

import base64
import io

import numpy as np
import torch
from PIL import Image

from cfattack.errors import InvalidInputError
from cfattack.images import _to_uint8_hwc

__all__ = ["NEGATIVE_RGB", "POSITIVE_RGB", "to_display_rgb", "upscale_nearest", "diverging_rgb", "png_bytes",
           "png_data_uri", "image_data_uri"]

# The ends of the diverging map (ColorBrewer RdBu's darkest blue and red); the charts reuse them
# so that "red = went up, blue = went down" reads the same everywhere in a report.
NEGATIVE_RGB = (33, 102, 172)
POSITIVE_RGB = (178, 24, 43)


def to_display_rgb(image: torch.Tensor | np.ndarray, what: str = "image") -> np.ndarray:
    """float [C, H, W] in [-1, 1] (C = 1 or 3) -> uint8 [H, W, 3]; grey stays grey (channels repeated)."""
    pixels = _to_uint8_hwc(image, what)
    return np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels


def upscale_nearest(pixels: np.ndarray, factor: int) -> np.ndarray:
    """uint8 [H, W, C] -> [H * factor, W * factor, C], each pixel a factor x factor block (no smoothing)."""
    if factor < 1:
        raise InvalidInputError(f"factor must be >= 1; got {factor}")
    return pixels.repeat(factor, axis=0).repeat(factor, axis=1)


def diverging_rgb(values: np.ndarray, scale: float | None = None) -> np.ndarray:
    """Signed values [H, W] -> uint8 [H, W, 3]: blue for negative, white for zero, red for positive.

    The scale is symmetric: ``-scale`` is full blue, ``+scale`` full red; None uses ``max |values|``.
    All-zero values (or scale 0) give a white image; non-finite values are drawn white.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2:
        raise InvalidInputError(f"values must be a 2-D array [H, W]; got shape {list(values.shape)}")
    finite = np.where(np.isfinite(values), values, 0.0)
    if scale is None:
        scale = float(np.abs(finite).max(initial=0.0))
    t = np.clip(finite / scale, -1.0, 1.0) if scale > 0 else np.zeros_like(finite)
    white = np.array([255.0, 255.0, 255.0])
    positive, negative = np.array(POSITIVE_RGB, dtype=np.float64), np.array(NEGATIVE_RGB, dtype=np.float64)
    end = np.where((t >= 0)[..., None], positive, negative)
    rgb = white + np.abs(t)[..., None] * (end - white)  # linear from white to the end of the sign's side
    return np.rint(rgb).clip(0, 255).astype(np.uint8)


def png_bytes(pixels: np.ndarray) -> bytes:
    """uint8 [H, W, 1|3] (or [H, W]) -> the bytes of a PNG file (mode "L" or "RGB")."""
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    if not (pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] == 3)):
        raise InvalidInputError(f"pixels must have shape [H, W], [H, W, 1] or [H, W, 3]; got {list(pixels.shape)}")
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def png_data_uri(pixels: np.ndarray) -> str:
    """uint8 [H, W, 1|3] -> ``data:image/png;base64,...``, for an ``<img src>`` that needs no file."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(pixels)).decode("ascii")


def image_data_uri(image: torch.Tensor | np.ndarray, scale: int = 1) -> str:
    """float [C, H, W] in [-1, 1] (C = 1 or 3) -> PNG data URI, optionally upscaled by ``scale`` (nearest).

    Grey images stay single-channel PNGs. Browsers smooth small images when they enlarge them;
    either pass ``scale`` or show the image with CSS ``image-rendering: pixelated``.
    """
    return png_data_uri(upscale_nearest(_to_uint8_hwc(image, "image"), scale))
