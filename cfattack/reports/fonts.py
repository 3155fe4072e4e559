"""Text widths for SVG charts, measured with the font the charts ask for instead of guessed.

An SVG cannot size itself to its text, so the charts reserve room for labels before a browser
draws them. The charts name ``DejaVu Sans`` first in their font list (Verdana, metrically close,
next), and this module measures text with the same face through Pillow's FreeType binding. The
font file is looked up, in order: ``CFATTACK_FONT`` (a .ttf path), the usual system locations of
DejaVu Sans (Debian's ``fonts-dejavu-core``, Fedora, Arch, Homebrew) and of Verdana (macOS,
Windows), and the copy matplotlib ships when it is installed (found without importing it).

Only when none exists does `text_width` fall back to an estimate: 0.62 em per character,
0.68 em in bold: DejaVu Sans averages 0.50-0.58 em (bold 0.57-0.66) over chart labels and numbers,
rounded up so that estimated text is rarely clipped. `font_source` says which was used::

    text_width("standardised change", 12)      # 125.9 (DejaVu Sans) or 141.4 (estimate)
"""

from __future__ import annotations

import importlib.util
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = ["FONT_FAMILY", "ESTIMATE_EM_PER_CHAR", "font_path", "font_source", "text_width"]

FONT_FAMILY = "'DejaVu Sans', Verdana, 'Bitstream Vera Sans', sans-serif"
"""The CSS font list of the charts: the measured face first, then faces of nearly the same widths."""

ESTIMATE_EM_PER_CHAR = 0.62
"""Width of one character in em when no font file is found (bold: 0.68)."""

_BOLD_EM_PER_CHAR = 0.68

_CANDIDATES = (
    # (regular, bold)
    ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"),
    ("/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf", "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans-Bold.ttf"),
    ("/usr/share/fonts/TTF/DejaVuSans.ttf", "/usr/share/fonts/TTF/DejaVuSans-Bold.ttf"),
    ("/usr/share/fonts/dejavu/DejaVuSans.ttf", "/usr/share/fonts/dejavu/DejaVuSans-Bold.ttf"),
    ("/usr/local/share/fonts/DejaVuSans.ttf", "/usr/local/share/fonts/DejaVuSans-Bold.ttf"),
    ("/opt/homebrew/share/fonts/DejaVuSans.ttf", "/opt/homebrew/share/fonts/DejaVuSans-Bold.ttf"),
    ("/Library/Fonts/Verdana.ttf", "/Library/Fonts/Verdana Bold.ttf"),
    ("/System/Library/Fonts/Supplemental/Verdana.ttf", "/System/Library/Fonts/Supplemental/Verdana Bold.ttf"),
    ("C:/Windows/Fonts/verdana.ttf", "C:/Windows/Fonts/verdanab.ttf"),
)


def _matplotlib_fonts() -> tuple[str, str] | None:
    """matplotlib's own DejaVu Sans, located from its package spec (the package is not imported)."""
    try:
        spec = importlib.util.find_spec("matplotlib")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "mpl-data" / "fonts" / "ttf"
    return str(folder / "DejaVuSans.ttf"), str(folder / "DejaVuSans-Bold.ttf")


@lru_cache(maxsize=1)
def _font_files() -> tuple[str, str] | None:
    override = os.environ.get("CFATTACK_FONT")
    candidates: list[tuple[str, str]] = [(override, override)] if override else []
    candidates += list(_CANDIDATES)
    found_matplotlib = _matplotlib_fonts()
    if found_matplotlib is not None:
        candidates.append(found_matplotlib)
    for regular, bold in candidates:
        if os.path.isfile(regular):
            return regular, bold if os.path.isfile(bold) else regular
    return None


def font_path(bold: bool = False) -> str | None:
    """The font file widths are measured with, or None when the estimate is used."""
    files = _font_files()
    return None if files is None else files[1 if bold else 0]


@lru_cache(maxsize=32)
def _font(size: int, bold: bool) -> Any:
    path = font_path(bold)
    if path is None:
        return None
    from PIL import ImageFont

    try:
        return ImageFont.truetype(path, size)
    except (OSError, ImportError):  # unreadable file, or Pillow built without FreeType
        return None


def font_source() -> str:
    """``"measured with <file>"`` or ``"estimated (no font file found)"``; for reports and tests."""
    return f"measured with {font_path()}" if _font(12, False) is not None else "estimated (no font file found)"


@lru_cache(maxsize=4096)
def text_width(text: str, size: float, bold: bool = False) -> float:
    """Width in pixels of ``text`` drawn at ``size`` px (SVG ``font-size``), one line.

    Measured at a whole pixel size and scaled, so fractional sizes need no extra font objects.
    """
    if not text:
        return 0.0
    whole = max(1, round(size))
    font = _font(whole, bold)
    if font is None:
        return (_BOLD_EM_PER_CHAR if bold else ESTIMATE_EM_PER_CHAR) * size * len(text)
    return float(font.getlength(text)) * size / whole
