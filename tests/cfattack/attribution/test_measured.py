"""measured_changes: descriptor changes measured on two decoded images."""

from __future__ import annotations

import pytest
import torch

from cfattack.attribution.measured import measured_changes
from cfattack.errors import InvalidInputError
from descriptors import default_descriptors

pytestmark = pytest.mark.usefixtures("one_thread")


def test_measured_changes_on_two_squares():
    small, large = -torch.ones(1, 1, 16, 16), -torch.ones(1, 1, 16, 16)
    small[..., 6:8, 6:8] = 1.0                                       # 4 px of ink
    large[..., 4:10, 4:10] = 1.0                                     # 36 px
    ds = default_descriptors(channels=1)
    (rows,) = measured_changes(ds, small, large, std={"ink_area": 0.1})
    by_name = {r.name: r for r in rows}
    ink = by_name["ink_area"]
    assert (ink.before, ink.after) == pytest.approx((4 / 256, 36 / 256))
    assert ink.change == pytest.approx(32 / 256) and ink.standardized_change == pytest.approx(32 / 256 / 0.1)
    assert ink.source == "measured" and ink.score is None and ink.reliable
    assert by_name["width"].change == 4.0 and by_name["mean_intensity"].change == pytest.approx(32 / 256)
    assert [abs(r.standardized_change) for r in rows] == sorted((abs(r.standardized_change) for r in rows),
                                                                reverse=True)
    (back,) = measured_changes(ds, large, small)
    assert {r.name: r.change for r in back}["ink_area"] == pytest.approx(-32 / 256)
    with pytest.raises(InvalidInputError, match="same shape"):
        measured_changes(ds, small, large[..., :8, :8])
    with pytest.raises(InvalidInputError, match="positive"):
        measured_changes(ds, small, large, std={"ink_area": 0.0})
