"""The descriptor record, named sets of descriptors, and the image-batch input contract.

A `Descriptor` is a named, documented function ``images [N, C, H, W] -> float64 [N]``; a
`DescriptorSet` holds uniquely named descriptors and computes any of them on a batch. The
descriptor modules (`descriptors.shape`, `descriptors.tone`) build on this one; the standard
sets are assembled in `descriptors.registry`:

    ds = default_descriptors(channels=1)
    values = ds.compute(images)                  # {"ink_area": float64 [N], "width": ..., ...}
    ds.compute(images, names=["slant", "holes"]) # just these two
    ds.describe()                                # JSON-ready table: name, unit, meaning, ...

Input contract (`as_image_batch`): a torch tensor or numpy array ``[N, C, H, W]``, C = 1 (grey)
or 3 (RGB), float in [-1, 1] the way cfattack stores images (-1 = black). Values outside the
range (a generator's overshoot) are clipped to it; NaN or inf is refused. Descriptors that need
one grey plane use the luminance ``Y = 0.299 R + 0.587 G + 0.114 B`` (ITU-R BT.601) of RGB images.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Literal, Sequence

import numpy as np

__all__ = [
    "GROUPS",
    "Descriptor",
    "DescriptorSet",
    "as_image_batch",
    "circular_difference",
    "intensity",
    "luminance",
]

Group = Literal["shape", "tone", "texture", "colour", "labelled"]
GROUPS: tuple[str, ...] = ("shape", "tone", "texture", "colour", "labelled")
_NAME = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
_BT601 = np.array([0.299, 0.587, 0.114])


# -- input contract ---------------------------------------------------------------------------------

def as_image_batch(images: object) -> np.ndarray:
    """Validate an image batch and return it as float64 numpy ``[N, C, H, W]`` in [-1, 1].

    Accepts a torch tensor (any float dtype, any device) or a float numpy array. Raises
    ``ValueError`` naming the problem for a non-float dtype (integers are probably 0-255 pixels),
    a wrong rank, a channel count other than 1 or 3, an empty image plane, or non-finite values.
    Values outside [-1, 1] (a generator's overshoot) are clipped.
    """
    # torch is only looked up, never imported: a tensor can only exist if torch is loaded.
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(images, torch.Tensor):
        if not images.is_floating_point():
            raise ValueError(f"images must be floats in [-1, 1], got a {images.dtype} tensor "
                             "(for 0-255 pixels use x / 127.5 - 1)")
        images = images.detach().to(device="cpu", dtype=torch.float64).numpy()
    arr = np.asarray(images)
    if not np.issubdtype(arr.dtype, np.floating):
        # Integers are most likely 0-255 pixels, which clipping would silently turn into garbage.
        raise ValueError(f"images must be floats in [-1, 1], got dtype {arr.dtype} "
                         "(for 0-255 pixels use x / 127.5 - 1)")
    if arr.ndim != 4:
        raise ValueError(f"images must have shape [N, C, H, W], got shape {tuple(arr.shape)}")
    if arr.shape[1] not in (1, 3):
        raise ValueError(f"images must have 1 (grey) or 3 (RGB) channels, got C={arr.shape[1]} "
                         f"in shape {tuple(arr.shape)}")
    if arr.shape[2] < 1 or arr.shape[3] < 1:
        raise ValueError(f"images must have at least one pixel, got shape {tuple(arr.shape)}")
    arr = arr.astype(np.float64, copy=False)
    if arr.size == 0:
        return arr
    # Two reductions instead of a mask: NaN propagates into min/max, inf shows as itself.
    lo, hi = float(arr.min()), float(arr.max())
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError("images contain NaN or infinite values")
    return np.clip(arr, -1.0, 1.0) if lo < -1.0 or hi > 1.0 else arr


def intensity(batch: np.ndarray) -> np.ndarray:
    """[-1, 1] values -> [0, 1] intensity (0 = black, 1 = white), same shape."""
    return (batch + 1.0) * 0.5


def luminance(batch: np.ndarray) -> np.ndarray:
    """A validated batch ``[N, C, H, W]`` in [-1, 1] -> grey intensity ``[N, H, W]`` in [0, 1].

    Grey images are passed through; RGB images are weighted with BT.601 luma coefficients.
    """
    assert batch.ndim == 4 and batch.shape[1] in (1, 3), batch.shape
    u = intensity(batch)
    if u.shape[1] == 1:
        return u[:, 0]
    return np.einsum("nchw,c->nhw", u, _BT601)


def circular_difference(delta: np.ndarray, period: float) -> np.ndarray:
    """Differences of a circular quantity wrapped into [-period/2, period/2): 350 -> 10 deg is +20, not -340."""
    half = 0.5 * float(period)
    return (np.asarray(delta, dtype=np.float64) + half) % float(period) - half


# -- the record -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Descriptor:
    """A named image descriptor: ``fn(images [N, C, H, W] in [-1, 1]) -> float64 [N]``.

    Attributes:
        name: unique snake_case name, e.g. ``"stroke_thickness"``.
        unit: the unit of the values, e.g. ``"px"``, ``"fraction"``, ``"deg"``, ``"count"``.
        meaning: one line saying what is measured and how.
        group: ``"shape"``, ``"tone"``, ``"texture"``, ``"colour"`` or ``"labelled"``.
        channels: the channel counts it applies to: ``(1,)``, ``(3,)`` or ``(1, 3)``.
        fn: the function; it accepts a raw batch (tensor or array) and returns float64 [N].
        higher_means: optional short reading of a larger value, e.g. ``"thicker strokes"``.
        period: for a circular quantity, the value after which it wraps (360 for a hue in
            degrees); changes are then read as the shorter way round (`circular_difference`).
            None (the default) for ordinary quantities.
    """

    name: str
    unit: str
    meaning: str
    group: Group
    channels: tuple[int, ...]
    fn: Callable[[object], np.ndarray]
    higher_means: str = ""
    period: float | None = None

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"descriptor name must be snake_case (e.g. 'ink_area'), got {self.name!r}")
        if self.group not in GROUPS:
            raise ValueError(f"descriptor {self.name!r}: group must be one of {', '.join(GROUPS)}; "
                             f"got {self.group!r}")
        channels = tuple(self.channels)
        if not channels or any(c not in (1, 3) for c in channels) or len(set(channels)) != len(channels):
            raise ValueError(f"descriptor {self.name!r}: channels must be (1,), (3,) or (1, 3); "
                             f"got {self.channels!r}")
        object.__setattr__(self, "channels", tuple(sorted(channels)))
        if not self.unit.strip():
            raise ValueError(f"descriptor {self.name!r}: unit is empty")
        if not self.meaning.strip() or "\n" in self.meaning:
            raise ValueError(f"descriptor {self.name!r}: meaning must be one non-empty line")
        if not callable(self.fn):
            raise ValueError(f"descriptor {self.name!r}: fn is not callable")
        if self.period is not None:
            if not (isinstance(self.period, (int, float)) and np.isfinite(self.period) and self.period > 0):
                raise ValueError(f"descriptor {self.name!r}: period must be a positive number or None, "
                                 f"got {self.period!r}")
            object.__setattr__(self, "period", float(self.period))

    def applies_to(self, channels: int) -> bool:
        """Whether the descriptor is defined for images with this many channels."""
        return channels in self.channels

    def __call__(self, images: object) -> np.ndarray:
        """Compute on a batch ``[N, C, H, W]`` in [-1, 1] -> float64 ``[N]``."""
        batch = as_image_batch(images)
        if not self.applies_to(batch.shape[1]):
            raise ValueError(f"descriptor {self.name!r} applies to images with {self._channels_text()} "
                             f"channel(s), got C={batch.shape[1]}")
        values = np.asarray(self.fn(batch), dtype=np.float64)
        assert values.shape == (batch.shape[0],), (self.name, values.shape, batch.shape)
        return values

    def difference(self, before: np.ndarray, after: np.ndarray) -> np.ndarray:
        """``after - before``; for a circular descriptor the shorter way round, in [-period/2, period/2)."""
        delta = np.asarray(after, dtype=np.float64) - np.asarray(before, dtype=np.float64)
        return delta if self.period is None else circular_difference(delta, self.period)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready row: name, unit, meaning, group, channels, higher_means, period."""
        return {"name": self.name, "unit": self.unit, "meaning": self.meaning, "group": self.group,
                "channels": list(self.channels), "higher_means": self.higher_means, "period": self.period}

    def _channels_text(self) -> str:
        return " or ".join(str(c) for c in self.channels)


# -- the set ----------------------------------------------------------------------------------------

class DescriptorSet:
    """An ordered collection of uniquely named descriptors.

    ``compute(images, names=None)`` validates the batch once and returns ``{name: float64 [N]}`` in
    the set's order (or the order of ``names``). A name the set lacks raises ``ValueError`` listing
    the valid names; so does asking for a descriptor that does not apply to the images' channel
    count (``for_channels(c)`` gives the applicable subset).
    """

    def __init__(self, descriptors: Iterable[Descriptor]) -> None:
        self._items: dict[str, Descriptor] = {}
        for d in descriptors:
            if not isinstance(d, Descriptor):
                raise ValueError(f"DescriptorSet holds Descriptor records, got {type(d).__name__}")
            if d.name in self._items:
                raise ValueError(f"descriptor name {d.name!r} appears twice; names must be unique")
            self._items[d.name] = d

    def names(self) -> list[str]:
        """The descriptor names, in order."""
        return list(self._items)

    def get(self, name: str) -> Descriptor:
        """The descriptor called ``name``; ``ValueError`` listing the valid names if none is."""
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise ValueError(f"unknown descriptor {name!r}; valid names: {', '.join(self._items) or '(none)'}") \
                from None

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Descriptor]:
        return iter(self._items.values())

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __repr__(self) -> str:
        return f"DescriptorSet({', '.join(self._items)})"

    def select(self, names: Sequence[str]) -> "DescriptorSet":
        """A new set with just these descriptors, in this order."""
        if isinstance(names, str):
            names = [names]
        return DescriptorSet(self.get(n) for n in names)

    def for_channels(self, channels: int) -> "DescriptorSet":
        """The subset that applies to images with ``channels`` channels (1 or 3)."""
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels!r}")
        return DescriptorSet(d for d in self if d.applies_to(channels))

    def compute(self, images: object, names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Images ``[N, C, H, W]`` in [-1, 1] (tensor or array) -> ``{name: float64 [N]}``."""
        chosen = list(self) if names is None else list(self.select(names))
        batch = as_image_batch(images)
        c = batch.shape[1]
        wrong = [d.name for d in chosen if not d.applies_to(c)]
        if wrong:
            raise ValueError(f"descriptor(s) {', '.join(wrong)} do not apply to images with C={c}; "
                             f"use .for_channels({c}) or pass names from: "
                             f"{', '.join(self.for_channels(c).names())}")
        return {d.name: d(batch) for d in chosen}

    def describe(self) -> list[dict[str, object]]:
        """JSON-ready table, one row per descriptor (see `Descriptor.to_dict`)."""
        return [d.to_dict() for d in self]
