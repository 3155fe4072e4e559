"""DescriptorChange, the row every attribution is made of, and the per-image ranking by standardised change.

Both the latent predictors (`cfattack.attribution.predictors`) and the measurement on decoded
images (`cfattack.attribution.measured`) report their results as these rows, sorted the same
way: by ``|standardized_change|``, largest first. Keeping the record and the order here lets
either producer be used without the other.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from cfattack.config import FrozenConfig

__all__ = ["DescriptorChange"]


class DescriptorChange(FrozenConfig):
    """One ranked row of an explanation: how much one descriptor changed from ws0 to ws_cf."""

    name: str = Field(description="Descriptor name, e.g. 'ink_area'.")
    unit: str = Field(description="Unit of before / after / change, e.g. 'px' or 'fraction'.")
    meaning: str = Field(description="One line saying what the descriptor measures.")
    higher_means: str = Field("", description="Short reading of a larger value, e.g. 'thicker strokes'.")
    before: float = Field(description="Value for the original (predicted or measured), in the descriptor's unit.")
    after: float = Field(description="Value for the counterfactual, in the descriptor's unit.")
    change: float = Field(
        description="after - before, in the descriptor's unit (the shorter way round for a circular one such as hue)."
    )
    standardized_change: float = Field(
        description="change / the descriptor's standard deviation over generator samples (the ranking key)."
    )
    score: float | None = Field(
        description="Held-out R^2 (ridge) or accuracy (logistic) of the predictor; None for measured rows."
    )
    reliable: bool = Field(description="Whether the predictor met the quality bar (always True when measured).")
    source: Literal["predicted", "measured"] = Field(
        description="'predicted' from latents by the descriptor model, 'measured' on the decoded images."
    )


def _sorted(rows: list[DescriptorChange]) -> list[DescriptorChange]:
    return sorted(rows, key=lambda r: -abs(r.standardized_change))
