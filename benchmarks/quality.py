"""Explanation quality benchmark: `cfattack evaluate` on the default bundle, saved under benchmarks/results.

Runs the evaluation (held-out Fashion-MNIST test images toward their near targets; validity on
the saved image, independent validity by judges the attack never used, realism, proximity,
stability) and prints its table. The table in docs/benchmarks.md ("Explanation quality") came
from this script.

    python benchmarks/quality.py                          # 200 images, methods w+ (with stability), paper, pixel
    python benchmarks/quality.py --images 40 --methods w+,paper --no-stability
"""

from __future__ import annotations

import sys
from pathlib import Path

from cfattack.cli.root import main

RESULTS = Path(__file__).resolve().parent / "results" / "quality"


def run(argv: list[str]) -> int:
    """``cfattack evaluate`` with this benchmark's defaults; later arguments win."""
    defaults = ["--images", "200", "--methods", "w+,paper,pixel", "--out", str(RESULTS), "--device", "cpu"]
    return main(["evaluate", *defaults, *argv])


if __name__ == "__main__":
    raise SystemExit(run(sys.argv[1:]))
