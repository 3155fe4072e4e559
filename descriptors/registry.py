"""The standard descriptor sets, chosen by image kind: objects on a plain background, or photos.

`descriptors.base` holds the record and the set; this module only assembles the descriptors
defined in `descriptors.shape`, `descriptors.tone` and `descriptors.photo`, so imports point one
way (registry -> shape/tone/photo -> base). The base names are re-exported for the old import path.
"""

from __future__ import annotations

from descriptors.base import GROUPS, Descriptor, DescriptorSet, as_image_batch, intensity, luminance
from descriptors.photo import photo_descriptors
from descriptors.shape import shape_descriptors
from descriptors.tone import colour_descriptors, tone_descriptors

__all__ = [
    "GROUPS",
    "IMAGE_KINDS",
    "Descriptor",
    "DescriptorSet",
    "default_descriptors",
    "as_image_batch",
    "intensity",
    "luminance",
]

# What a bundle's images show, which decides the descriptors that mean something on them.
IMAGE_KINDS: tuple[str, ...] = ("objects", "photos")


def default_descriptors(channels: int, kind: str = "objects", *, threshold: float = 0.0,
                        min_hole_area: int = 2, edge_threshold: float | None = None, min_chroma: float = 0.1,
                        texture_window: int = 5) -> DescriptorSet:
    """The standard set for grey (``channels=1``) or RGB (``channels=3``) images of one kind.

    ``kind="objects"`` (one object on a plain dark background, like Fashion-MNIST or MNIST):
    the shape descriptors (`descriptors.shape`, computed on the luminance of RGB images) and the
    tone and texture descriptors (`descriptors.tone`); RGB adds colourfulness and hue.
    ``threshold`` is the foreground threshold in [-1, 1] units, ``min_hole_area`` the smallest
    hole counted (px).

    ``kind="photos"`` (natural images: faces, animals, scenes): no shape descriptors, which
    assume a bright object on black; instead tone, texture, sharpness and edges
    (`descriptors.photo`), and for RGB saturation, colourfulness, hue and warmth.
    ``texture_window`` is the side of the local-contrast window (px).

    ``edge_threshold`` is the Sobel magnitude (intensity per px) that counts as an edge (default
    0.1 for objects, 0.05 for photos); ``min_chroma`` the chroma a pixel needs to take part in
    the mean hue.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels!r}")
    if kind not in IMAGE_KINDS:
        raise ValueError(f"image kind must be one of {', '.join(IMAGE_KINDS)}, got {kind!r}")
    if kind == "photos":
        return DescriptorSet(photo_descriptors(
            channels, edge_threshold=0.05 if edge_threshold is None else edge_threshold, min_chroma=min_chroma,
            texture_window=texture_window))
    items = [*shape_descriptors(threshold=threshold, min_hole_area=min_hole_area),
             *tone_descriptors(edge_threshold=0.1 if edge_threshold is None else edge_threshold)]
    if channels == 3:
        items += colour_descriptors(min_chroma=min_chroma)
    return DescriptorSet(items)
