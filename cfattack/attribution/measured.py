"""measured_changes: descriptor changes measured on the two decoded images (exact, no predictors).

The slower alternative to `LatentDescriptorModel.rank`: it computes the descriptors on the
original and counterfactual images themselves. Used in pixel space, for bundles without a
descriptor model, and beside the predicted rows to check them. Changes are standardised by a
spread over generator samples (the descriptor model's, or `descriptor_spread`'s); a raw
difference is never passed off as standard deviations.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from cfattack.attribution.changes import DescriptorChange, _sorted
from cfattack.errors import InvalidInputError

__all__ = ["measured_changes"]


def _spread_table(std: Any) -> dict[str, float]:
    table = getattr(std, "std", std)            # a DescriptorSpread or a plain mapping
    if not isinstance(table, Mapping):
        raise InvalidInputError(
            "measured_changes needs each descriptor's spread to standardise its change: pass std= a "
            "DescriptorSpread (cfattack.attribution.spread.descriptor_spread(G, descriptors)) or "
            f"{{name: standard deviation}} such as a descriptor model's .std; got {type(std).__name__}")
    for name, value in table.items():
        if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
                and value > 0):
            raise InvalidInputError(f"std[{name!r}] must be a positive number, got {value!r}")
    return {str(k): float(v) for k, v in table.items()}


def measured_changes(descriptors: Any, images0: Any, images_cf: Any, *,
                     std: Any) -> list[list[DescriptorChange]]:
    """Descriptor changes measured on the images themselves (exact, one descriptor pass per image).

    Args:
        descriptors: a ``descriptors.DescriptorSet``.
        images0: originals ``[N, C, H, W]`` in [-1, 1] (tensor or array).
        images_cf: counterfactuals, same shape.
        std: each descriptor's spread over generator samples, which ``standardized_change``
            divides by: a `cfattack.attribution.spread.DescriptorSpread` or ``{name: spread}``
            (e.g. a descriptor model's ``.std``). Required: without a spread a change in pixels
            cannot be ranked against one in degrees. A descriptor without an entry is left out.

    Returns:
        ``N`` lists of `DescriptorChange` rows (``source="measured"``, ``score=None``,
        ``reliable=True``) sorted by ``|standardized_change|``, largest first. Circular
        descriptors (``period`` set, e.g. hue) change the shorter way round (350 -> 10 deg is
        +20). Descriptors that are undefined (NaN) on either image of a pair, or have no spread,
        are left out of that pair's list.
    """
    shape0, shape1 = getattr(images0, "shape", None), getattr(images_cf, "shape", None)
    if shape0 is None or shape1 is None or tuple(shape0) != tuple(shape1):
        raise InvalidInputError(f"images0 and images_cf must be image batches of the same shape, got "
                                f"{shape0 and list(shape0)} and {shape1 and list(shape1)}")
    spread = _spread_table(std)
    chosen = [d.name for d in descriptors if d.name in spread]
    try:
        before = descriptors.compute(images0, names=chosen)
        after = descriptors.compute(images_cf, names=chosen)
    except ValueError as exc:
        raise InvalidInputError(str(exc)) from exc
    records = {d.name: d for d in descriptors}
    change = {name: records[name].difference(before[name], after[name]) for name in chosen}
    rows: list[list[DescriptorChange]] = []
    for i in range(int(shape0[0])):
        items = []
        for name in chosen:
            b, a, delta = float(before[name][i]), float(after[name][i]), float(change[name][i])
            if not (math.isfinite(b) and math.isfinite(a)):
                continue
            d = records[name]
            items.append(DescriptorChange(
                name=name, unit=d.unit, meaning=d.meaning, higher_means=d.higher_means, before=b, after=a,
                change=delta, standardized_change=delta / spread[name], score=None, reliable=True,
                source="measured"))
        rows.append(_sorted(items))
    return rows
