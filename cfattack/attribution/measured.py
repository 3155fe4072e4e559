"""measured_changes: descriptor changes measured on the two decoded images (exact, no predictors).

The slower alternative to `LatentDescriptorModel.rank`: it computes the descriptors on the
original and counterfactual images themselves. Used in pixel space, for bundles without a
descriptor model, and beside the predicted rows to check them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from cfattack.attribution.changes import DescriptorChange, _sorted
from cfattack.errors import InvalidInputError

__all__ = ["measured_changes"]


def measured_changes(descriptors: Any, images0: Any, images_cf: Any, *,
                     std: Mapping[str, float] | None = None) -> list[list[DescriptorChange]]:
    """Descriptor changes measured on the images themselves (exact, one descriptor pass per image).

    Args:
        descriptors: a ``descriptors.DescriptorSet``.
        images0: originals ``[N, C, H, W]`` in [-1, 1] (tensor or array).
        images_cf: counterfactuals, same shape.
        std: ``{name: spread}`` used to standardise changes, normally ``model.std`` of the bundle's
            descriptor model. A descriptor without one is not standardised
            (``standardized_change == change``, in its own unit), so give ``std`` whenever you can.

    Returns:
        ``N`` lists of `DescriptorChange` rows (``source="measured"``, ``score=None``,
        ``reliable=True``) sorted by ``|standardized_change|``, largest first. Descriptors that
        are undefined (NaN) on either image of a pair are left out of that pair's list.
    """
    shape0, shape1 = getattr(images0, "shape", None), getattr(images_cf, "shape", None)
    if shape0 is None or shape1 is None or tuple(shape0) != tuple(shape1):
        raise InvalidInputError(f"images0 and images_cf must be image batches of the same shape, got "
                                f"{shape0 and list(shape0)} and {shape1 and list(shape1)}")
    std = dict(std or {})
    for name, value in std.items():
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise InvalidInputError(f"std[{name!r}] must be a positive number, got {value!r}")
    try:
        before = descriptors.compute(images0)
        after = descriptors.compute(images_cf)
    except ValueError as exc:
        raise InvalidInputError(str(exc)) from exc
    records = {d.name: d for d in descriptors}
    rows: list[list[DescriptorChange]] = []
    for i in range(int(shape0[0])):
        items = []
        for name, values0 in before.items():
            b, a = float(values0[i]), float(after[name][i])
            if not (math.isfinite(b) and math.isfinite(a)):
                continue
            d = records[name]
            items.append(DescriptorChange(
                name=name, unit=d.unit, meaning=d.meaning, higher_means=d.higher_means, before=b, after=a,
                change=a - b, standardized_change=(a - b) / float(std.get(name, 1.0)), score=None, reliable=True,
                source="measured"))
        rows.append(_sorted(items))
    return rows
