"""Named, documented image descriptors: image batch ``[N, C, H, W]`` in [-1, 1] -> float64 values ``[N]``.

Shape (silhouettes and strokes: area, extent, slant, thickness, outline, symmetry, centroid,
holes) in `descriptors.shape`; tone, texture and colour in `descriptors.tone`; what describes a
natural photo (saturation, warmth, sharpness, local texture) in `descriptors.photo`; attributes read
from a user's table in `descriptors.labelled`; the `Descriptor` record and `DescriptorSet` in
`descriptors.base`; the standard sets in `descriptors.registry`. Each descriptor has a
snake_case name, a unit and a one-line meaning.

    from descriptors import default_descriptors
    ds = default_descriptors(channels=1)          # grey set; channels=3 adds colourfulness and hue
    photos = default_descriptors(3, kind="photos")  # no shape: tone, texture, sharpness, colour
    values = ds.compute(images)                   # {"ink_area": float64 [N], "slant": [N], ...}
    table = ds.describe()                         # [{"name", "unit", "meaning", "group", ...}, ...]
    thick = ds.get("stroke_thickness")(images)    # one descriptor -> float64 [N]

Importing the package loads numpy only; scipy is imported by the two descriptors that need it.
"""

from descriptors.labelled import LabelledAttributes
from descriptors.base import GROUPS, Descriptor, DescriptorSet, as_image_batch
from descriptors.photo import photo_descriptors
from descriptors.registry import IMAGE_KINDS, default_descriptors
from descriptors.shape import shape_descriptors
from descriptors.tone import colour_descriptors, tone_descriptors

__all__ = [
    "Descriptor",
    "DescriptorSet",
    "default_descriptors",
    "IMAGE_KINDS",
    "photo_descriptors",
    "shape_descriptors",
    "tone_descriptors",
    "colour_descriptors",
    "LabelledAttributes",
    "as_image_batch",
    "GROUPS",
]
