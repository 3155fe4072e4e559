"""measured_changes: descriptor changes measured on two decoded images, standardised by a spread (never by 1)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cfattack.attribution.measured import measured_changes
from cfattack.attribution.spread import DescriptorSpread
from cfattack.errors import InvalidInputError
from descriptors import default_descriptors

pytestmark = pytest.mark.usefixtures("one_thread")


def _squares():
    small, large = -torch.ones(1, 1, 16, 16), -torch.ones(1, 1, 16, 16)
    small[..., 6:8, 6:8] = 1.0                                       # 4 px of ink
    large[..., 4:10, 4:10] = 1.0                                     # 36 px
    return small, large


def test_measured_changes_on_two_squares():
    small, large = _squares()
    ds = default_descriptors(channels=1)
    spread = {"ink_area": 0.1, "width": 2.0, "mean_intensity": 0.05}
    (rows,) = measured_changes(ds, small, large, std=spread)
    by_name = {r.name: r for r in rows}
    assert set(by_name) == set(spread)                               # only what can be standardised
    ink = by_name["ink_area"]
    assert (ink.before, ink.after) == pytest.approx((4 / 256, 36 / 256))
    assert ink.change == pytest.approx(32 / 256) and ink.standardized_change == pytest.approx(32 / 256 / 0.1)
    assert ink.source == "measured" and ink.score is None and ink.reliable
    assert by_name["width"].change == 4.0 and by_name["width"].standardized_change == 2.0
    assert by_name["mean_intensity"].change == pytest.approx(32 / 256)
    assert [abs(r.standardized_change) for r in rows] == sorted((abs(r.standardized_change) for r in rows),
                                                                reverse=True)
    (back,) = measured_changes(ds, large, small, std=spread)
    assert {r.name: r.change for r in back}["ink_area"] == pytest.approx(-32 / 256)


def test_a_spread_record_is_accepted_and_raw_differences_are_refused():
    small, large = _squares()
    ds = default_descriptors(channels=1)
    record = DescriptorSpread(generator_fingerprint="0" * 16, key="k", num_samples=256, truncation_psi=1.0, seed=0,
                              std={"perimeter": 8.0}, mean={"perimeter": 30.0}, dropped={}, seconds=0.0)
    (rows,) = measured_changes(ds, small, large, std=record)
    assert [(r.name, r.change, r.standardized_change) for r in rows] == [("perimeter", 16.0, 2.0)]
    # The "perimeter 388 -> 0 px (-388.00 sd)": without a spread there is no "sd" to report.
    with pytest.raises(InvalidInputError, match="needs each descriptor's spread.*descriptor_spread"):
        measured_changes(ds, small, large, std=None)
    with pytest.raises(InvalidInputError, match="same shape"):
        measured_changes(ds, small, large[..., :8, :8], std=spread_of(1.0))
    with pytest.raises(InvalidInputError, match="positive"):
        measured_changes(ds, small, large, std={"ink_area": 0.0})


def spread_of(value: float) -> dict[str, float]:
    return {name: value for name in default_descriptors(1).names()}


def test_hue_changes_the_shorter_way_round():
    """350 deg -> 10 deg is +20 deg, not -340: hue is circular (the record's period)."""
    def of_hue(deg: float) -> np.ndarray:                # a fully saturated colour of this HSV hue
        k = (np.array([5.0, 3.0, 1.0]) + deg / 60.0) % 6.0
        rgb = 1.0 - np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
        return np.broadcast_to((rgb * 2 - 1)[None, :, None, None], (1, 3, 8, 8)).copy()

    ds = default_descriptors(3, kind="photos")
    (rows,) = measured_changes(ds, of_hue(350.0), of_hue(10.0), std={"hue": 10.0})
    (hue,) = rows
    assert (hue.before, hue.after) == pytest.approx((350.0, 10.0))
    assert hue.change == pytest.approx(20.0) and hue.standardized_change == pytest.approx(2.0)
