"""The batch journals as CSV, for spreadsheets and ``pandas.read_csv``: results, attributions, failures.

Written by rank 0 at the end of every run, beside the merged JSONL files and from the same
records, in item order, each file atomically:

- ``results.csv``: one row per finished item, every scalar field of `ResultRecord` plus the
  three largest changes (``top1`` ... ``top3`` and their standardised changes ``top1_sd`` ...);
- ``attributions.csv``: one row per item and descriptor (``key``, ``image``, ``rank``, then the
  fields of `AttributionRow`), the long form of every attribution;
- ``failures.csv``: one row per failed item, the fields of `FailureRecord`.

Empty cells are None; floats are written with ``repr`` (they read back exactly); booleans are
``True`` / ``False``. Only the standard library is used::

    paths = write_tables("report/", results, failures)   # {"results", "attributions", "failures"}
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any, Sequence

from cfattack.atomic import atomic_write_text
from cfattack.batch.store import AttributionRow, FailureRecord, ResultRecord

__all__ = ["TABLE_FILES", "TOP_COLUMNS", "results_rows", "attribution_rows", "write_tables"]

TABLE_FILES = {"results": "results.csv", "attributions": "attributions.csv", "failures": "failures.csv"}

TOP_COLUMNS = 3
"""Largest changes spelled out per item in results.csv."""


def _cell(value: Any) -> Any:
    return "" if value is None else repr(value) if isinstance(value, float) else value


def _scalar_fields(model: type) -> list[str]:
    return [name for name in model.model_fields if name != "attributions"]


def results_rows(results: Sequence[ResultRecord]) -> tuple[list[str], list[list[Any]]]:
    """The header and rows of results.csv."""
    fields = _scalar_fields(ResultRecord)
    tops = [c for k in range(1, TOP_COLUMNS + 1) for c in (f"top{k}", f"top{k}_sd")]
    rows = []
    for r in results:
        row = [_cell(getattr(r, f)) for f in fields]
        for k in range(TOP_COLUMNS):
            a = r.attributions[k] if k < len(r.attributions) else None
            row += [a.name, _cell(a.standardized_change)] if a is not None else ["", ""]
        rows.append(row)
    return fields + tops, rows


def attribution_rows(results: Sequence[ResultRecord]) -> tuple[list[str], list[list[Any]]]:
    """The header and rows of attributions.csv."""
    fields = list(AttributionRow.model_fields)
    rows = [[r.key, r.image, rank] + [_cell(getattr(a, f)) for f in fields]
            for r in results for rank, a in enumerate(r.attributions, 1)]
    return ["key", "image", "rank"] + fields, rows


def _failure_rows(failures: Sequence[FailureRecord]) -> tuple[list[str], list[list[Any]]]:
    fields = list(FailureRecord.model_fields)
    return fields, [[_cell(getattr(f, name)) for name in fields] for f in failures]


def _csv_text(header: list[str], rows: list[list[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def write_tables(
    directory: str | os.PathLike, results: Sequence[ResultRecord], failures: Sequence[FailureRecord]
) -> dict[str, Path]:
    """Write results.csv, attributions.csv and failures.csv into ``directory``; returns their paths."""
    directory = Path(directory)
    texts = {  # rendered first: a failure writes nothing
        "results": _csv_text(*results_rows(results)),
        "attributions": _csv_text(*attribution_rows(results)),
        "failures": _csv_text(*_failure_rows(failures)),
    }
    paths = {key: directory / name for key, name in TABLE_FILES.items()}
    for key, text in texts.items():
        atomic_write_text(paths[key], text)
    return paths
