"""The standard descriptor sets: shape, tone and texture for grey images, plus colour for RGB.

`descriptors.base` holds the record and the set; this module only assembles the descriptors
defined in `descriptors.shape` and `descriptors.tone`, so imports point one way
(registry -> shape/tone -> base). The base names are re-exported for the old import path.
"""

from __future__ import annotations

from descriptors.base import GROUPS, Descriptor, DescriptorSet, as_image_batch, intensity, luminance
from descriptors.shape import shape_descriptors
from descriptors.tone import colour_descriptors, tone_descriptors

__all__ = [
    "GROUPS",
    "Descriptor",
    "DescriptorSet",
    "default_descriptors",
    "as_image_batch",
    "intensity",
    "luminance",
]


def default_descriptors(channels: int, *, threshold: float = 0.0, min_hole_area: int = 2,
                        edge_threshold: float = 0.1, min_chroma: float = 0.1) -> DescriptorSet:
    """The standard set for grey (``channels=1``) or RGB (``channels=3``) images.

    Grey: the shape descriptors (`descriptors.shape`) and the tone and texture descriptors
    (`descriptors.tone`); RGB adds colourfulness and hue. Shape descriptors of RGB images are
    computed on the luminance. ``threshold`` is the foreground threshold in [-1, 1] units,
    ``min_hole_area`` the smallest hole counted (px), ``edge_threshold`` the Sobel magnitude
    (intensity per px) that counts as an edge, ``min_chroma`` the chroma a pixel needs to take
    part in the mean hue.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels!r}")
    items = [*shape_descriptors(threshold=threshold, min_hole_area=min_hole_area),
             *tone_descriptors(edge_threshold=edge_threshold)]
    if channels == 3:
        items += colour_descriptors(min_chroma=min_chroma)
    return DescriptorSet(items)
