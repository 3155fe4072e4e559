"""The batch results as CSV: every record, in order, numbers that read back exactly.

A real job writes them: `tests/cfattack/batch/test_runner.py` compares the CSVs of interrupted,
resumed and sharded jobs with those of one uninterrupted run, and the browser tests read them.
"""

from __future__ import annotations

import csv

from cfattack.batch.store import ResultRecord
from cfattack.batch.table import TABLE_FILES, write_tables
from tests.cfattack.batch.test_global_explanation import known_records
from tests.cfattack.batch.test_store import failure


def _read(path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_tables_hold_every_record_exactly(tmp_path):
    records = known_records()
    records[0] = records[0].model_copy(update={"image": 'odd, "name".png', "source_probability": 0.1 + 0.2})
    paths = write_tables(tmp_path, records, [failure("f1", message="line, with a comma")])
    assert {p.name for p in paths.values()} == set(TABLE_FILES.values())
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]

    rows = _read(paths["results"])
    assert [r["key"] for r in rows] == [r.key for r in records]
    first = rows[0]
    assert first["image"] == 'odd, "name".png'
    assert float(first["source_probability"]) == 0.1 + 0.2  # repr: reads back to the same float
    assert first["reached"] == "True" and first["top1"] == "ink" and float(first["top1_sd"]) == 1.0
    assert set(ResultRecord.model_fields) - {"attributions"} <= set(first)
    assert rows[-1]["top2"] == "" and rows[-1]["top2_sd"] == ""  # k6 has one attribution

    long = _read(paths["attributions"])
    assert len(long) == sum(len(r.attributions) for r in records)
    assert [(a["key"], a["rank"], a["name"]) for a in long[:2]] == [("k1", "1", "ink"), ("k1", "2", "width")]
    assert _read(paths["failures"])[0]["message"] == "line, with a comma"
