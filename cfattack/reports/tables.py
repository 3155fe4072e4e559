"""Results as pandas tables (the optional extra ``table``), for `Explanation.to_dataframe`.

One row per descriptor change, ranked as in the explanation (rank 1 = largest standardised
change), columns in the order of `cfattack.attribution.changes.DescriptorChange`::

    df = exp.to_dataframe()              # index "rank"; name, unit, before, after, change, ...
    df[df.reliable].head(3)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from cfattack.reports.optional import require

if TYPE_CHECKING:
    from cfattack.attribution.changes import DescriptorChange

__all__ = ["CHANGE_COLUMNS", "changes_dataframe"]

CHANGE_COLUMNS = ("name", "unit", "before", "after", "change", "standardized_change", "score", "reliable", "source",
                  "meaning", "higher_means")


def changes_dataframe(rows: Sequence[DescriptorChange], feature: str = "Explanation.to_dataframe") -> Any:
    """``rows`` -> a ``pandas.DataFrame`` indexed by rank (1, 2, ...), columns `CHANGE_COLUMNS`.

    Raises:
        MissingDependencyError: pandas is not installed (extra ``table``).
    """
    pandas = require("pandas", extra="table", feature=feature)
    records = [{column: getattr(r, column) for column in CHANGE_COLUMNS} for r in rows]
    frame = pandas.DataFrame.from_records(records, columns=list(CHANGE_COLUMNS))
    frame.index = pandas.RangeIndex(1, len(records) + 1, name="rank")
    return frame
