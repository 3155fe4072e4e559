"""Lists of non-negative integers written as ``"0-7"`` or ``"1,3,5-6"`` (seeds, ws entries)."""

from __future__ import annotations

import re

from cfattack.errors import InvalidInputError

__all__ = ["parse_int_ranges"]


def parse_int_ranges(text: str, *, noun: str, example: str, maximum: int, max_count: int,
                     plural: str | None = None) -> list[int]:
    """Integers and inclusive ranges, in the order given, each once.

    Args:
        text: e.g. ``"0-7"`` or ``"1,3,5-6"``.
        noun: what the numbers are, for messages (``"seed"``).
        example: a valid text to suggest in messages.
        maximum: the largest value allowed.
        max_count: the most values allowed in all.
        plural: the plural of ``noun`` (default: ``noun + "s"``).

    Raises:
        InvalidInputError: malformed text, a value above ``maximum``, a reversed range or more
            than ``max_count`` values.
    """
    nouns = plural or f"{noun}s"
    values: dict[int, None] = {}  # ordered set
    parts = [p.strip() for p in str(text).split(",")]
    if not any(parts):
        raise InvalidInputError(f"no {nouns} given; use e.g. {example}")
    for part in parts:
        match = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", part)
        if match is None:
            raise InvalidInputError(
                f"cannot read {part!r} as a {noun} or range; use non-negative integers like {example}"
            )
        digits = max(len(match.group(1)), len(match.group(2) or ""))
        if digits > len(str(maximum)):  # refused before int(): Python will not convert 4300+ digits
            raise InvalidInputError(f"{noun} {part[:20]}... is too large; {nouns} go from 0 to {maximum}")
        start = int(match.group(1))
        stop = int(match.group(2)) if match.group(2) is not None else start
        if stop > maximum:
            raise InvalidInputError(f"{noun} {stop} is too large; {nouns} go from 0 to {maximum}")
        if stop < start:
            raise InvalidInputError(f"range {part!r} runs backwards; write it as {stop}-{start}")
        if len(values) + (stop - start + 1) > max_count:
            raise InvalidInputError(f"too many {nouns} (more than {max_count}); split the job into smaller ranges")
        values.update(dict.fromkeys(range(start, stop + 1)))
    return list(values)
