"""Shape descriptors of silhouettes and strokes: area, extent, slant, thickness, outline, symmetry, holes.

Every function takes a batch ``[N, C, H, W]`` in [-1, 1] (torch tensor or numpy array; RGB is
reduced to its luminance) and returns float64 ``[N]``.

**Foreground.** The object is the set of pixels brighter than ``threshold`` (in the images' own
[-1, 1] units; default 0 = mid-grey), which suits cfattack's data: bright garments and digits on
a black background. Pass a higher threshold for faint noise, a lower one for dim objects. The
image border counts as background, so an object cut by the border ends there. Foreground regions
connect through 8 neighbours, background regions (holes) through 4, the usual digital-topology
pairing that keeps a one-pixel diagonal outline closed.

**Weights.** Centroid, slant and symmetry weight each foreground pixel by its intensity in
[0, 1], so soft edges count partially and background noise not at all.

**Empty images** (no foreground pixel) get 0 for the quantities that measure how much is there
(`ink_area`, `width`, `height`, `perimeter`, `stroke_thickness`, `holes`) and NaN for those
that are undefined without an object (`aspect_ratio`, `slant`, `symmetry_lr`, `centroid_x`,
`centroid_y`). No function raises on them.

    from descriptors.shape import slant, holes
    slant(images)                        # float64 [N], degrees, positive = leaning right
    holes(images, threshold=0.2)         # enclosed background regions per image
"""

from __future__ import annotations

from functools import partial

import numpy as np

from descriptors.base import Descriptor, as_image_batch, luminance

__all__ = [
    "foreground",
    "ink_area",
    "width",
    "height",
    "aspect_ratio",
    "slant",
    "stroke_thickness",
    "perimeter",
    "symmetry_lr",
    "centroid_x",
    "centroid_y",
    "holes",
    "shape_descriptors",
]


# -- shared helpers ---------------------------------------------------------------------------------

def _grey_and_mask(images: object, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Batch -> (intensity [N, H, W] in [0, 1], foreground mask [N, H, W] bool)."""
    if not -1.0 <= float(threshold) < 1.0:
        raise ValueError(f"threshold is in the images' [-1, 1] units and must lie in [-1, 1), got {threshold!r}")
    u = luminance(as_image_batch(images))
    return u, u > (float(threshold) + 1.0) * 0.5


def _stack_padded(mask: np.ndarray) -> np.ndarray:
    """[N, H, W] -> [N * (H + 2), W + 2]: each image ringed by one pixel of background, stacked.

    The ring lets one scipy call treat the whole batch: no foreground pixel or hole can reach a
    neighbouring image without crossing background, and the image border acts as background.
    """
    n, h, w = mask.shape
    return np.pad(mask, ((0, 0), (1, 1), (1, 1))).reshape(n * (h + 2), w + 2)


def _weighted_moments(u: np.ndarray, fg: np.ndarray) -> dict[str, np.ndarray]:
    """Intensity-weighted foreground moments: mass, centroid (cx, cy) and central mu20, mu02, mu11.

    Coordinates are pixel centres in px: x = column (0 at the left), y = row (0 at the top).
    Centroid and central moments are NaN where the mass is 0.
    """
    wgt = u * fg
    n, h, w = wgt.shape
    ys = np.arange(h, dtype=np.float64)[None, :, None]
    xs = np.arange(w, dtype=np.float64)[None, None, :]
    mass = wgt.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        inv = np.where(mass > 0, 1.0 / mass, np.nan)
        cx = (wgt * xs).sum(axis=(1, 2)) * inv
        cy = (wgt * ys).sum(axis=(1, 2)) * inv
        dx = xs - np.nan_to_num(cx)[:, None, None]
        dy = ys - np.nan_to_num(cy)[:, None, None]
        mu20 = (wgt * dx * dx).sum(axis=(1, 2)) * inv
        mu02 = (wgt * dy * dy).sum(axis=(1, 2)) * inv
        mu11 = (wgt * dx * dy).sum(axis=(1, 2)) * inv
    return {"mass": mass, "cx": cx, "cy": cy, "mu20": mu20, "mu02": mu02, "mu11": mu11}


def foreground(images: object, threshold: float = 0.0) -> np.ndarray:
    """Foreground mask bool ``[N, H, W]``: pixels (luminance for RGB) brighter than ``threshold``."""
    return _grey_and_mask(images, threshold)[1]


# -- area and extent --------------------------------------------------------------------------------

def ink_area(images: object, threshold: float = 0.0) -> np.ndarray:
    """Fraction of the image's pixels in the foreground, in [0, 1]; 0 for an empty image."""
    fg = foreground(images, threshold)
    return fg.mean(axis=(1, 2), dtype=np.float64)


def _extent(mask_lines: np.ndarray) -> np.ndarray:
    """[N, L] bool (any foreground per row or column) -> span in px from first to last True; 0 if none."""
    length = mask_lines.shape[1]
    first = np.argmax(mask_lines, axis=1)
    last = length - 1 - np.argmax(mask_lines[:, ::-1], axis=1)
    return np.where(mask_lines.any(axis=1), last - first + 1, 0).astype(np.float64)


def width(images: object, threshold: float = 0.0) -> np.ndarray:
    """Width of the foreground's bounding box in px (columns from leftmost to rightmost); 0 if empty."""
    return _extent(foreground(images, threshold).any(axis=1))


def height(images: object, threshold: float = 0.0) -> np.ndarray:
    """Height of the foreground's bounding box in px (rows from top to bottom); 0 if empty."""
    return _extent(foreground(images, threshold).any(axis=2))


def aspect_ratio(images: object, threshold: float = 0.0) -> np.ndarray:
    """Bounding-box height / width (> 1 = taller than wide); NaN if empty."""
    fg = foreground(images, threshold)
    h, w = _extent(fg.any(axis=2)), _extent(fg.any(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(w > 0, h / np.where(w > 0, w, 1.0), np.nan)


def centroid_x(images: object, threshold: float = 0.0) -> np.ndarray:
    """Intensity-weighted foreground centroid, px from the left edge (pixel centres at 0 .. W-1); NaN if empty."""
    return _weighted_moments(*_grey_and_mask(images, threshold))["cx"]


def centroid_y(images: object, threshold: float = 0.0) -> np.ndarray:
    """Intensity-weighted foreground centroid, px from the top edge (pixel centres at 0 .. H-1); NaN if empty."""
    return _weighted_moments(*_grey_and_mask(images, threshold))["cy"]


# -- orientation and symmetry -----------------------------------------------------------------------

def slant(images: object, threshold: float = 0.0) -> np.ndarray:
    """Lean of the foreground in degrees from vertical, in (-90, 90); positive = top leaning right.

    From the intensity-weighted central moments: ``slant = atan(-mu11 / mu02)``, the angle of the
    horizontal shear ``x -> x + (mu11 / mu02) (y - cy)`` that makes the shape upright (the
    classic deskewing of handwriting; y grows downward, hence the sign). For a straight stroke
    this is exactly the angle between the stroke and the vertical, the principal axis' angle;
    unlike the principal axis it stays continuous for shapes wider than tall, whose axis would
    flip between +90 and -90. A shape with no vertical extent gets 0; an empty image NaN.
    """
    m = _weighted_moments(*_grey_and_mask(images, threshold))
    mu02, mu11 = m["mu02"], m["mu11"]
    with np.errstate(invalid="ignore", divide="ignore"):
        flat = ~(mu02 > 1e-12)
        deg = np.degrees(np.arctan(-mu11 / np.where(flat, 1.0, mu02)))
    return np.where(np.isnan(m["cx"]), np.nan, np.where(flat, 0.0, deg))


def symmetry_lr(images: object, threshold: float = 0.0) -> np.ndarray:
    """Left-right mirror symmetry about the vertical line through the foreground centroid, in [0, 1].

    ``1 - sum|I - M| / sum(I + M)`` over the image, where I is the intensity in [0, 1] and M its
    mirror image about ``x = centroid_x`` (rounded to the nearest half pixel; mirrored pixels
    that fall outside the image are 0). 1 = perfectly symmetric, 0 = no overlap with the mirror
    image. Measured about the object's own axis, so shifting an object does not change it. NaN if
    empty.
    """
    u, fg = _grey_and_mask(images, threshold)
    cx = _weighted_moments(u, fg)["cx"]
    n, h, w = u.shape
    axis2 = np.rint(2.0 * np.nan_to_num(cx)).astype(np.int64)      # mirror column j -> axis2 - j
    src = axis2[:, None] - np.arange(w)[None, :]                     # [N, W]
    inside = (src >= 0) & (src < w)
    src = np.clip(src, 0, w - 1)
    mirror = np.take_along_axis(u, np.broadcast_to(src[:, None, :], u.shape), axis=2) * inside[:, None, :]
    num = np.abs(u - mirror).sum(axis=(1, 2))
    den = (u + mirror).sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        sym = 1.0 - num / den
    return np.where(np.isnan(cx) | (den <= 0), np.nan, sym)


# -- outline, thickness, topology -------------------------------------------------------------------

def perimeter(images: object, threshold: float = 0.0) -> np.ndarray:
    """Boundary length in px: the number of foreground/background pixel edges (4-neighbours).

    The image border counts as background; hole outlines count too. A filled h x w rectangle has
    perimeter 2 (h + w); a staircase (diagonal) outline is counted along its steps, up to
    sqrt(2) times its Euclidean length at 45 degrees. 0 if empty.
    """
    fg = np.pad(foreground(images, threshold), ((0, 0), (1, 1), (1, 1)))
    vertical = (fg[:, 1:, :] != fg[:, :-1, :]).sum(axis=(1, 2))
    horizontal = (fg[:, :, 1:] != fg[:, :, :-1]).sum(axis=(1, 2))
    return (vertical + horizontal).astype(np.float64)


def stroke_thickness(images: object, threshold: float = 0.0) -> np.ndarray:
    """Mean stroke width in px: ``4 * mean(d - 1/2)`` over foreground pixels.

    d is each foreground pixel's Euclidean distance to the nearest background pixel (the border
    counts as background), so ``d - 1/2`` approximates its distance to the outline. Across a
    band of width w that distance averages w / 4, hence the factor 4: a long band of even width
    w gives w exactly, odd w gives w + 1/w, whatever the band's direction (the distance is
    Euclidean). A compact blob gives about 2/3 of its diameter. No skeleton is computed. 0 if
    empty.
    """
    from scipy import ndimage  # deferred: importing the package stays light

    fg = foreground(images, threshold)
    n, h, w = fg.shape
    if n == 0:
        return np.zeros(0)
    dist = ndimage.distance_transform_edt(_stack_padded(fg)).reshape(n, h + 2, w + 2)[:, 1:-1, 1:-1]
    count = fg.sum(axis=(1, 2))
    total = (dist * fg).sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, 4.0 * (total / np.maximum(count, 1) - 0.5), 0.0)


def holes(images: object, threshold: float = 0.0, min_hole_area: int = 2) -> np.ndarray:
    """Number of holes: background regions (4-connected) that do not touch the image border.

    A ring has 1, an '8' has 2. Holes smaller than ``min_hole_area`` pixels are ignored: the
    default 2 skips single-pixel pinholes, which dark texture inside garments and generator noise
    produce in numbers (on Fashion-MNIST they double the mean count); use 1 to count every hole,
    more to keep only clear openings. 0 if empty.
    """
    from scipy import ndimage  # deferred: importing the package stays light

    if int(min_hole_area) < 1:
        raise ValueError(f"min_hole_area must be >= 1 pixel, got {min_hole_area!r}")
    fg = foreground(images, threshold)
    n, h, w = fg.shape
    if n == 0:
        return np.zeros(0)
    # Background of all images, each ringed: the rings and every border-touching region form one
    # component (they touch across stacked images); every other component is a hole.
    labels, count = ndimage.label(~_stack_padded(fg))
    labels = labels.ravel()
    outside = labels[0]
    image_of_pixel = np.repeat(np.arange(n), (h + 2) * (w + 2))
    image_of_label = np.zeros(count + 1, dtype=np.int64)
    image_of_label[labels] = image_of_pixel          # a hole lies inside one image only
    sizes = np.bincount(labels, minlength=count + 1)
    keep = sizes >= int(min_hole_area)
    keep[0] = keep[outside] = False
    return np.bincount(image_of_label[keep], minlength=n).astype(np.float64)


# -- the descriptor records -------------------------------------------------------------------------

def shape_descriptors(threshold: float = 0.0, min_hole_area: int = 2) -> list[Descriptor]:
    """The shape descriptors as records, with ``threshold`` (and ``min_hole_area``) bound."""
    if not -1.0 <= float(threshold) < 1.0:
        raise ValueError(f"threshold is in the images' [-1, 1] units and must lie in [-1, 1), got {threshold!r}")
    t = float(threshold)
    fg = f"pixels brighter than {t:g} in [-1, 1]"

    def rec(name: str, unit: str, meaning: str, fn, higher: str, **kw) -> Descriptor:
        return Descriptor(name=name, unit=unit, meaning=meaning, group="shape", channels=(1, 3),
                          fn=partial(fn, threshold=t, **kw), higher_means=higher)

    return [
        rec("ink_area", "fraction", f"share of the image's pixels in the foreground ({fg})", ink_area,
            "more ink / a larger object"),
        rec("width", "px", "width of the foreground's bounding box", width, "wider object"),
        rec("height", "px", "height of the foreground's bounding box", height, "taller object"),
        rec("aspect_ratio", "ratio", "bounding-box height / width", aspect_ratio, "taller and narrower"),
        rec("slant", "deg", "lean from vertical by the moments' deskewing shear, atan(-mu11 / mu02)", slant,
            "leaning further right"),
        rec("stroke_thickness", "px", "mean stroke width, 4 x mean(distance to the outline) over the foreground",
            stroke_thickness, "thicker strokes or a bulkier body"),
        rec("perimeter", "px", "outline length, counted as foreground/background pixel edges (holes included)",
            perimeter, "longer or more ragged outline"),
        rec("symmetry_lr", "fraction", "left-right mirror symmetry about the centroid, 1 - sum|I - M| / sum(I + M)",
            symmetry_lr, "more symmetric"),
        rec("centroid_x", "px", "intensity-weighted foreground centroid, from the left edge", centroid_x,
            "object further right"),
        rec("centroid_y", "px", "intensity-weighted foreground centroid, from the top edge", centroid_y,
            "object further down"),
        rec("holes", "count", f"enclosed background regions of at least {int(min_hole_area)} px", holes,
            "more enclosed holes", min_hole_area=int(min_hole_area)),
    ]
