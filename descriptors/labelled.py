"""Labelled attributes: descriptors whose values come from a user's table instead of a function.

A CSV has one row per image: a column naming the image (default ``image``) and one numeric
column per attribute, e.g. CelebA's ``Smiling``, ``Eyeglasses`` (as 1 / -1) or a measured
``age``. Binary columns, all values in {0, 1} or in {-1, 1} (CelebA's convention), become 0/1;
other numeric columns are kept as they are. The attributes later serve as labels for latent
predictors, exactly like computed descriptors.

    attrs = LabelledAttributes.from_csv("attributes.csv")          # image,Smiling,Eyeglasses,age
    attrs.names()                                                  # ['Smiling', 'Eyeglasses', 'age']
    attrs.values(["000001.jpg", "000007.jpg"])                     # {'Smiling': array([1., 0.]), ...}
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from pathlib import Path, PurePath
from typing import Iterable, Mapping, Sequence

import numpy as np

__all__ = ["LabelledAttributes"]

_SHOW = 5  # how many offending items an error message lists


def _few(items: Sequence[str]) -> str:
    shown = ", ".join(repr(s) for s in items[:_SHOW])
    return shown + (f" and {len(items) - _SHOW} more" if len(items) > _SHOW else "")


class LabelledAttributes:
    """A table image name -> attribute values (float64), with binary attributes normalised to 0/1.

    Build it with `from_csv` or directly from ``image_names`` [N] and ``columns`` {name: [N]}.
    Image names are matched exactly; a name not in the table (say a full path) is also tried by
    its file name, so ``"data/000001.jpg"`` finds the row ``"000001.jpg"``.
    """

    def __init__(self, image_names: Sequence[str], columns: Mapping[str, Sequence[float]],
                 source: str = "table") -> None:
        names = [str(s) for s in image_names]
        duplicates = sorted(s for s, k in Counter(names).items() if k > 1)
        if duplicates:
            raise ValueError(f"{source}: image name(s) listed more than once: {_few(duplicates)}")
        if not columns:
            raise ValueError(f"{source}: no attribute columns")
        self._source = source
        self._rows = {s: i for i, s in enumerate(names)}
        self._image_names = names
        self._columns: dict[str, np.ndarray] = {}
        self._binary: dict[str, bool] = {}
        for col, raw in columns.items():
            values = np.asarray(raw, dtype=np.float64)
            if values.shape != (len(names),):
                raise ValueError(f"{source}: column {col!r} has {values.size} values for {len(names)} images")
            finite = values[np.isfinite(values)]
            uniq = set(np.unique(finite).tolist())
            binary = bool(finite.size) and (uniq <= {0.0, 1.0} or uniq <= {-1.0, 1.0})
            if binary and -1.0 in uniq:
                values = (values + 1.0) * 0.5       # CelebA's -1 / 1 -> 0 / 1
            self._columns[str(col)] = values
            self._binary[str(col)] = binary

    @classmethod
    def from_csv(cls, path: str | Path, image_column: str = "image", columns: Iterable[str] | None = None,
                 delimiter: str = ",") -> "LabelledAttributes":
        """Read a CSV with a header row: ``image_column`` plus numeric attribute columns.

        ``columns`` keeps only the named attributes (default: every column but the image's).
        Raises ``ValueError`` naming the file, row and column for a missing file or column,
        an empty or non-numeric cell, a duplicate column or image name, or a ragged row.
        """
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"attribute table {path} does not exist or is not a file")
        with path.open(newline="", encoding="utf-8-sig") as fh:   # -sig: tolerate a byte-order mark
            rows = list(csv.reader(fh, delimiter=delimiter))
        rows = [r for r in rows if any(cell.strip() for cell in r)]
        if not rows:
            raise ValueError(f"{path}: empty file, expected a header row naming {image_column!r} and attributes")
        header = [h.strip() for h in rows[0]]
        repeated = sorted({h for h in header if header.count(h) > 1})
        if repeated:
            raise ValueError(f"{path}: column name(s) repeated in the header: {_few(repeated)}")
        if image_column not in header:
            raise ValueError(f"{path}: no image column {image_column!r}; columns are: {', '.join(header)}")
        available = [h for h in header if h != image_column]
        wanted = available if columns is None else [str(c) for c in columns]
        missing = [c for c in wanted if c not in available]
        if missing:
            raise ValueError(f"{path}: missing attribute column(s) {_few(missing)}; "
                             f"available: {', '.join(available) or '(none)'}")
        if not wanted:
            raise ValueError(f"{path}: no attribute columns besides {image_column!r}")

        img_at = header.index(image_column)
        at = {c: header.index(c) for c in wanted}
        image_names: list[str] = []
        values: dict[str, list[float]] = {c: [] for c in wanted}
        for line, row in enumerate(rows[1:], start=2):
            if len(row) != len(header):
                raise ValueError(f"{path}, row {line}: {len(row)} cells for {len(header)} columns")
            name = row[img_at].strip()
            if not name:
                raise ValueError(f"{path}, row {line}: empty image name in column {image_column!r}")
            image_names.append(name)
            for c, i in at.items():
                cell = row[i].strip()
                try:
                    v = float(cell)
                except ValueError:
                    v = math.nan
                if not math.isfinite(v):
                    raise ValueError(f"{path}, row {line}, column {c!r}: {cell or '(empty)'!r} is not a finite "
                                     "number")
                values[c].append(v)
        if not image_names:
            raise ValueError(f"{path}: header only, no image rows")
        return cls(image_names, values, source=str(path))

    def names(self) -> list[str]:
        """Attribute names, in column order."""
        return list(self._columns)

    @property
    def image_names(self) -> list[str]:
        """Image names, in row order."""
        return list(self._image_names)

    def is_binary(self, name: str) -> bool:
        """Whether the attribute holds 0/1 labels (after normalising -1/1)."""
        self._check_names([name])
        return self._binary[name]

    def __len__(self) -> int:
        return len(self._image_names)

    def __repr__(self) -> str:
        return f"LabelledAttributes({len(self)} images; {', '.join(self._columns)})"

    def _check_names(self, names: Sequence[str]) -> None:
        unknown = [n for n in names if n not in self._columns]
        if unknown:
            raise ValueError(f"{self._source}: unknown attribute(s) {_few(unknown)}; "
                             f"valid names: {', '.join(self._columns)}")

    def _row_of(self, image_name: str) -> int | None:
        row = self._rows.get(image_name)
        if row is None:
            row = self._rows.get(PurePath(image_name).name)
        return row

    def values(self, image_names: Sequence[str], names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Image names [N] -> ``{attribute: float64 [N]}`` (all attributes, or just ``names``)."""
        if isinstance(image_names, str):
            raise ValueError("image_names must be a sequence of names, got a single string")
        chosen = self.names() if names is None else [str(n) for n in names]
        self._check_names(chosen)
        rows = [self._row_of(str(s)) for s in image_names]
        unknown = [str(s) for s, r in zip(image_names, rows) if r is None]
        if unknown:
            raise ValueError(f"{self._source}: {len(unknown)} image name(s) not in the table: {_few(unknown)}")
        index = np.asarray(rows, dtype=np.int64)
        return {n: self._columns[n][index].copy() for n in chosen}

    def describe(self) -> list[dict[str, object]]:
        """JSON-ready table like `DescriptorSet.describe`: name, unit, meaning, group, kind."""
        return [{"name": n, "unit": "0/1" if self._binary[n] else "value",
                 "meaning": f"labelled attribute {n!r} from {self._source}", "group": "labelled",
                 "kind": "binary" if self._binary[n] else "numeric"} for n in self._columns]
