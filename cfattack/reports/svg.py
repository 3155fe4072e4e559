"""Small SVG charts as strings, for self-contained HTML reports: horizontal bars and line curves.

No plotting library and no script: each function returns one ``<svg>`` element whose text is
escaped and sized in pixels. Room for text is measured with the font the charts name first
(`cfattack.reports.fonts`), so labels, notes and titles fit: a long title wraps onto more lines,
and a label or note longer than its column is cut with an ellipsis (the full text stays in the
row's tooltip). Inline the result in HTML as is; wrap it with `svg_document` to save it as a
standalone ``.svg`` file::

    bars = bar_chart_svg(["stroke width", "mean tone"], [1.8, -0.6], notes=["2.1 -> 3.4 px", "0.3 -> 0.2"])
    curve = line_chart_svg(range(24), probs, hline=0.5, hline_label="threshold", marker_index=23)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape
from typing import Sequence

from cfattack.errors import InvalidInputError
from cfattack.reports.fonts import FONT_FAMILY, text_width
from cfattack.reports.pixels import NEGATIVE_RGB, POSITIVE_RGB

__all__ = ["Series", "bar_chart_svg", "line_chart_svg", "multi_line_chart_svg", "svg_document", "wrap_text"]

FONT = f'font-family="{escape(FONT_FAMILY)}"'
POSITIVE_COLOR = "#{:02x}{:02x}{:02x}".format(*POSITIVE_RGB)
NEGATIVE_COLOR = "#{:02x}{:02x}{:02x}".format(*NEGATIVE_RGB)
SERIES_COLORS = ("#1b6ca8", "#d1495b", "#2e933c", "#edae49", "#6a4c93", "#00798c")
AXIS_COLOR = "#888888"
GRID_COLOR = "#e4e4e4"
TEXT_COLOR = "#222222"
MUTED_TEXT_COLOR = "#666666"
TITLE_SIZE = 14
TITLE_LINE = 18  # px between the baselines of a wrapped title's lines


# ---------------------------------------------------------------------------------------------
# Shared helpers.


def _text(x: float, y: float, text: str, *, size: int = 12, anchor: str = "start", color: str = TEXT_COLOR,
          extra: str = "") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" fill="{color}"{extra}>'
            f"{escape(text)}</text>")


def _text_width(text: str, size: float, bold: bool = False) -> float:
    return text_width(text, size, bold)


def _fit(text: str, size: float, max_width: float) -> str:
    """``text`` cut with an ellipsis so that it measures at most ``max_width`` px."""
    if _text_width(text, size) <= max_width:
        return text
    lo, hi = 0, len(text)  # the longest prefix that fits with its ellipsis
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _text_width(text[:mid] + "\u2026", size) <= max_width:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo].rstrip() + "\u2026"


def wrap_text(text: str, size: float, max_width: float, bold: bool = False) -> list[str]:
    """Words of ``text`` in lines that each measure at most ``max_width`` px (a longer word is cut)."""
    lines: list[str] = []
    line = ""
    for word in text.split():
        candidate = f"{line} {word}" if line else word
        if _text_width(candidate, size, bold) <= max_width or not line:
            line = candidate
        else:
            lines.append(line)
            line = word
    if line:
        lines.append(line)
    return [ln if _text_width(ln, size, bold) <= max_width else _fit(ln, size, max_width) for ln in lines] or [""]


def _title(lines: list[str], x: float) -> list[str]:
    """A bold title, one ``<text>`` per line, first baseline at y = 21."""
    return [_text(x, 21 + i * TITLE_LINE, line, size=TITLE_SIZE, extra=' font-weight="600"')
            for i, line in enumerate(lines)]


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _nice_ticks(lo: float, hi: float, count: int = 5, integer: bool = False) -> list[float]:
    """Round tick positions covering [lo, hi] (steps of 1, 2, 2.5 or 5 times a power of ten)."""
    if not hi > lo:
        lo, hi = lo - 0.5, hi + 0.5
    raw = (hi - lo) / max(count - 1, 1)
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    if integer:
        step = max(1.0, float(math.ceil(step)))
    first = math.ceil(lo / step - 1e-9)
    ticks = []
    k = first
    while k * step <= hi + step * 1e-9:
        ticks.append(round(k * step, 12))
        k += 1
    return ticks


def _tick_label(value: float, ticks: Sequence[float]) -> str:
    step = abs(ticks[1] - ticks[0]) if len(ticks) > 1 else 1.0
    decimals = 0
    while decimals < 6 and abs(round(step, decimals) - step) > 1e-9 * max(1.0, step):
        decimals += 1
    if abs(value) < 0.5 * 10.0**-decimals:
        value = 0.0  # no "-0.00"
    return f"{value:.{decimals}f}"


def _svg_open(width: float, height: float, title: str | None, description: str | None) -> list[str]:
    parts = [f'<svg class="chart" width="{width:.0f}" height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" '
             f'role="img" {FONT}>']
    if title:
        parts.append(f"<title>{escape(title)}</title>")
    if description:
        parts.append(f"<desc>{escape(description)}</desc>")
    return parts


def svg_document(svg: str) -> str:
    """An inline ``<svg>`` string -> the text of a standalone ``.svg`` file (XML declaration + namespace)."""
    if not svg.startswith("<svg "):
        raise InvalidInputError("svg_document expects a string starting with '<svg '")
    return '<?xml version="1.0" encoding="UTF-8"?>\n<svg xmlns="http://www.w3.org/2000/svg" ' + svg[5:] + "\n"


# ---------------------------------------------------------------------------------------------
# Horizontal bar chart.


def bar_chart_svg(
    labels: Sequence[str],
    values: Sequence[float],
    *,
    notes: Sequence[str] | None = None,
    muted: Sequence[bool] | None = None,
    colors: Sequence[str] | None = None,
    title: str | None = None,
    axis_label: str | None = None,
    value_format: str = "{:+.2f}",
    width: int = 760,
    max_width: int | None = None,
    bar_height: int = 20,
    max_label_width: float = 240.0,
    max_note_width: float = 280.0,
) -> str:
    """One horizontal bar per label, from a zero line, coloured by sign (red positive, blue negative).

    Args:
        labels: row names, drawn left of the bars (cut to ``max_label_width`` px; the full
            text is the row's tooltip).
        values: one number per label; the bar runs from 0 to it. Non-finite values draw no
            bar and read "n/a".
        notes: optional text per row drawn right of the bars (e.g. ``"2.1 -> 3.4 px"``), cut
            to ``max_note_width`` px.
        muted: optional flag per row: drawn pale with a dashed outline (e.g. an unreliable estimate).
        colors: optional CSS colour per row, replacing the sign colours.
        title: drawn above the chart (wrapped onto more lines when wider than the chart) and
            used as its accessible title.
        axis_label: drawn under the axis (e.g. the unit of the values).
        value_format: format of the number printed at the end of each bar.
        width: the chart's width in pixels; it grows when the labels and notes need more room
            (bars keep at least 160 px), up to ``max_width`` (None: no limit), and the columns
            shrink to respect that limit. The height follows from the number of rows.

    Returns:
        An ``<svg>`` element as a string.
    """
    n = len(labels)
    if len(values) != n:
        raise InvalidInputError(f"bar_chart_svg: got {n} labels but {len(values)} values")
    for name, seq in (("notes", notes), ("muted", muted), ("colors", colors)):
        if seq is not None and len(seq) != n:
            raise InvalidInputError(f"bar_chart_svg: got {n} labels but {len(seq)} {name}")
    values = [float(v) if v is not None else math.nan for v in values]

    # 1. Columns: labels | bars (with room for the value text at both ends) | notes, each sized to
    #    its measured text; the chart widens for them, within max_width.
    size, note_size, value_size, pad, row = 12, 11, 11, 8, bar_height + 8
    if max_width is not None:
        width = min(width, max_width)
        max_label_width = min(max_label_width, max_width * 0.3)
        max_note_width = min(max_note_width, max_width * 0.3)
    shown_labels = [_fit(str(label), size, max_label_width) for label in labels]
    shown_notes = ([_fit(str(note), note_size, max_note_width) for note in notes] if notes is not None
                   else [""] * n)
    label_w = max((_text_width(s, size) for s in shown_labels), default=0.0) + pad
    note_w = max((_text_width(s, note_size) for s in shown_notes), default=0.0)
    value_w = max(_text_width(value_format.format(v), value_size) for v in [-8.88, *values] if math.isfinite(v)) + 6
    fixed = label_w + pad + 2 * value_w + pad + note_w + pad
    width = max(width, int(math.ceil(fixed + 160)))
    if max_width is not None:
        width = min(width, max_width)
    bars_x0 = label_w + pad + value_w
    bars_x1 = max(width - pad - note_w - pad - value_w, bars_x0 + 60)
    width = max(width, int(math.ceil(bars_x1 + value_w + pad + note_w + pad)))
    title_lines = wrap_text(title, TITLE_SIZE, width - 2 * pad, bold=True) if title else []

    # 2. Value range: always include 0; a small floor keeps an all-zero chart drawable.
    finite = [v for v in values if math.isfinite(v)]
    lo, hi = min(finite + [0.0]), max(finite + [0.0])
    if hi - lo < 1e-12:
        hi = lo + 1.0
    ticks = _nice_ticks(lo, hi, count=5)
    lo, hi = min(lo, ticks[0]), max(hi, ticks[-1])

    def x_of(v: float) -> float:
        return bars_x0 + (v - lo) / (hi - lo) * (bars_x1 - bars_x0)

    top = pad + (4 + TITLE_LINE * len(title_lines) if title_lines else 0)
    bottom = top + max(n, 1) * row
    height = bottom + 22 + (16 if axis_label else 0)

    # 3. Draw: grid and ticks, zero line, rows, axis label.
    parts = _svg_open(width, height, title, f"{n} bars")
    parts += _title(title_lines, pad)
    for t in ticks:
        x = x_of(t)
        parts.append(f'<line x1="{x:.1f}" y1="{top:.1f}" x2="{x:.1f}" y2="{bottom:.1f}" stroke="{GRID_COLOR}"/>')
        parts.append(_text(x, bottom + 14, _tick_label(t, ticks), size=10, anchor="middle", color=MUTED_TEXT_COLOR))
    x0 = x_of(0.0)
    parts.append(f'<line x1="{x0:.1f}" y1="{top - 4:.1f}" x2="{x0:.1f}" y2="{bottom:.1f}" stroke="{AXIS_COLOR}"/>')
    if n == 0:
        parts.append(_text((bars_x0 + bars_x1) / 2, top + row / 2 + 4, "no data", anchor="middle",
                           color=MUTED_TEXT_COLOR))
    for i in range(n):
        y = top + i * row + 4
        text_y = y + bar_height / 2 + 4
        v = values[i]
        is_muted = bool(muted[i]) if muted is not None else False
        color = colors[i] if colors is not None else (POSITIVE_COLOR if not v < 0 else NEGATIVE_COLOR)
        tooltip = f"{labels[i]}: {value_format.format(v) if math.isfinite(v) else 'n/a'}"
        if notes is not None and notes[i]:
            tooltip += f" ({notes[i]})"
        parts.append(f"<g><title>{escape(tooltip)}</title>")
        parts.append(_text(label_w, text_y, shown_labels[i], anchor="end",
                           color=MUTED_TEXT_COLOR if is_muted else TEXT_COLOR))
        if math.isfinite(v):
            xa, xb = sorted((x0, x_of(v)))
            style = ' fill-opacity="0.35" stroke-dasharray="3 2"' if is_muted else ""
            parts.append(f'<rect x="{xa:.1f}" y="{y:.1f}" width="{max(xb - xa, 1.0):.1f}" height="{bar_height}" '
                         f'fill="{escape(color)}" stroke="{escape(color)}"{style}/>')
            value_x, anchor = (xb + 4, "start") if v >= 0 else (xa - 4, "end")
            parts.append(_text(value_x, text_y, value_format.format(v), size=value_size, anchor=anchor,
                               color=MUTED_TEXT_COLOR))
        else:
            parts.append(_text(x0 + 4, text_y, "n/a", size=11, color=MUTED_TEXT_COLOR))
        if shown_notes[i]:
            parts.append(_text(bars_x1 + value_w + pad, text_y, shown_notes[i], size=note_size, color=MUTED_TEXT_COLOR))
        parts.append("</g>")
    if axis_label:
        parts.append(_text((bars_x0 + bars_x1) / 2, bottom + 32, axis_label, size=11, anchor="middle",
                           color=MUTED_TEXT_COLOR))
    parts.append("</svg>")
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------
# Line chart.


@dataclass(frozen=True)
class Series:
    """One curve of a line chart: ``ys[i]`` at ``xs[i]``; non-finite ys break the line."""

    xs: Sequence[float]
    ys: Sequence[float]
    label: str = ""
    color: str | None = None
    dashed: bool = False


def multi_line_chart_svg(
    series: Sequence[Series],
    *,
    hlines: Sequence[tuple[float, str]] = (),
    markers: Sequence[tuple[float, float, str]] = (),
    title: str | None = None,
    x_label: str = "",
    y_label: str = "",
    y_range: tuple[float, float] | None = None,
    width: int = 520,
    height: int = 280,
) -> str:
    """Several curves on shared axes, with optional dashed horizontal lines and point markers.

    Args:
        series: the curves; a series with a label appears in the legend.
        hlines: ``(y, label)`` pairs drawn as dashed horizontal lines across the plot.
        markers: ``(x, y, label)`` points drawn as dots with their label beside them.
        y_range: fixed (low, high) of the y axis; None fits the data and the hlines.
        width, height: size in pixels.

    Returns:
        An ``<svg>`` element as a string.
    """
    for s in series:
        if len(s.xs) != len(s.ys):
            raise InvalidInputError(f"line chart series {s.label!r}: {len(s.xs)} xs but {len(s.ys)} ys")
    xs_all = [float(x) for s in series for x in s.xs if _finite(float(x))]
    ys_all = [float(y) for s in series for y in s.ys if _finite(y)]

    # 1. Axes ranges and ticks.
    if y_range is not None:
        y_lo, y_hi = float(y_range[0]), float(y_range[1])
        if not y_hi > y_lo:
            raise InvalidInputError(f"y_range must be (low, high) with high > low; got {y_range}")
    else:
        candidates = ys_all + [float(y) for y, _ in hlines if _finite(y)]
        y_lo, y_hi = (min(candidates), max(candidates)) if candidates else (0.0, 1.0)
    y_ticks = _nice_ticks(y_lo, y_hi, count=5)
    if y_range is None:
        y_lo, y_hi = min(y_lo, y_ticks[0]), max(y_hi, y_ticks[-1])
    y_ticks = [t for t in y_ticks if y_lo - 1e-9 <= t <= y_hi + 1e-9]
    x_lo, x_hi = (min(xs_all), max(xs_all)) if xs_all else (0.0, 1.0)
    if not x_hi > x_lo:
        x_lo, x_hi = x_lo - 0.5, x_hi + 0.5
    integer_x = all(float(x).is_integer() for x in xs_all)
    x_ticks = [t for t in _nice_ticks(x_lo, x_hi, count=6, integer=integer_x) if x_lo - 1e-9 <= t <= x_hi + 1e-9]

    # 2. Plot area inside the margins.
    left = 14 + max((_text_width(_tick_label(t, y_ticks), 10) for t in y_ticks), default=10.0) + (16 if y_label else 0)
    title_lines = wrap_text(title, TITLE_SIZE, width - 16, bold=True) if title else []
    right, top = 16, 12 + (4 + TITLE_LINE * len(title_lines) if title_lines else 0)
    height += TITLE_LINE * max(len(title_lines) - 1, 0)  # a wrapped title adds lines, not plot height
    bottom = height - (24 + (16 if x_label else 0))
    plot_w, plot_h = width - left - right, bottom - top

    def px(x: float) -> float:
        return left + (x - x_lo) / (x_hi - x_lo) * plot_w

    def py(y: float) -> float:
        y = min(max(y, y_lo), y_hi)  # a value outside a fixed y_range sits on the frame
        return bottom - (y - y_lo) / (y_hi - y_lo) * plot_h

    # 3. Frame, grid, ticks and axis labels.
    parts = _svg_open(width, height, title, f"{len(series)} curves")
    parts += _title(title_lines, 8)
    for t in y_ticks:
        y = py(t)
        parts.append(f'<line x1="{left:.1f}" y1="{y:.1f}" x2="{left + plot_w:.1f}" y2="{y:.1f}" '
                     f'stroke="{GRID_COLOR}"/>')
        parts.append(_text(left - 5, y + 3.5, _tick_label(t, y_ticks), size=10, anchor="end", color=MUTED_TEXT_COLOR))
    for t in x_ticks:
        x = px(t)
        parts.append(f'<line x1="{x:.1f}" y1="{bottom:.1f}" x2="{x:.1f}" y2="{bottom + 4:.1f}" stroke="{AXIS_COLOR}"/>')
        parts.append(_text(x, bottom + 15, _tick_label(t, x_ticks), size=10, anchor="middle", color=MUTED_TEXT_COLOR))
    parts.append(f'<rect x="{left:.1f}" y="{top:.1f}" width="{plot_w:.1f}" height="{plot_h:.1f}" fill="none" '
                 f'stroke="{AXIS_COLOR}"/>')
    if x_label:
        parts.append(_text(left + plot_w / 2, height - 6, x_label, size=11, anchor="middle", color=MUTED_TEXT_COLOR))
    if y_label:
        cy = top + plot_h / 2
        parts.append(_text(12, cy, y_label, size=11, anchor="middle", color=MUTED_TEXT_COLOR,
                           extra=f' transform="rotate(-90 12 {cy:.1f})"'))

    # 4. Horizontal lines, curves (broken at non-finite values), markers, legend.
    for y, label in hlines:
        if not _finite(y):
            continue
        yy = py(float(y))
        parts.append(f'<line x1="{left:.1f}" y1="{yy:.1f}" x2="{left + plot_w:.1f}" y2="{yy:.1f}" '
                     f'stroke="{TEXT_COLOR}" stroke-dasharray="6 4" stroke-width="1.2"/>')
        if label:
            # At the left end: curves of an attack start low and end at the right, where the marker sits.
            parts.append(_text(left + 4, yy - 4, label, size=10, color=TEXT_COLOR))
    if not ys_all:
        parts.append(_text(left + plot_w / 2, top + plot_h / 2, "no data", anchor="middle", color=MUTED_TEXT_COLOR))
    for i, s in enumerate(series):
        color = escape(s.color or SERIES_COLORS[i % len(SERIES_COLORS)])
        dash = ' stroke-dasharray="5 3"' if s.dashed else ""
        run: list[str] = []
        runs: list[list[str]] = []
        for x, y in zip(s.xs, s.ys):
            if _finite(float(x)) and _finite(y):
                run.append(f"{px(float(x)):.1f},{py(float(y)):.1f}")
            elif run:
                runs.append(run)
                run = []
        if run:
            runs.append(run)
        for points in runs:
            if len(points) == 1:
                cx, cy = points[0].split(",")
                parts.append(f'<circle cx="{cx}" cy="{cy}" r="2" fill="{color}"/>')
            else:
                parts.append(f'<polyline points="{" ".join(points)}" fill="none" stroke="{color}" stroke-width="2" '
                             f'stroke-linejoin="round"{dash}/>')
    for x, y, label in markers:
        if not (_finite(x) and _finite(y)):
            continue
        mx, my = px(float(x)), py(float(y))
        parts.append(f'<circle cx="{mx:.1f}" cy="{my:.1f}" r="5" fill="#ffffff" stroke="{TEXT_COLOR}" '
                     f'stroke-width="2"/>')
        if label:
            # Beside the marker on the side where the measured label fits (the right if both do).
            right_side = mx + 8 + _text_width(label, 11) <= width - 2 or mx - 8 - _text_width(label, 11) < 2
            lx = mx + 8 if right_side else mx - 8
            ly = my + 16 if my < top + 18 else my - 8
            parts.append(_text(lx, ly, label, size=11, anchor="start" if right_side else "end"))
    labelled = [(i, s) for i, s in enumerate(series) if s.label]
    for row, (i, s) in enumerate(labelled):
        color = escape(s.color or SERIES_COLORS[i % len(SERIES_COLORS)])
        ly = top + 14 + row * 15
        parts.append(f'<line x1="{left + 8:.1f}" y1="{ly - 4:.1f}" x2="{left + 26:.1f}" y2="{ly - 4:.1f}" '
                     f'stroke="{color}" stroke-width="2"/>')
        parts.append(_text(left + 30, ly, s.label, size=10))
    parts.append("</svg>")
    return "\n".join(parts)


def line_chart_svg(
    xs: Sequence[float],
    ys: Sequence[float],
    *,
    hline: float | None = None,
    hline_label: str = "",
    marker_index: int | None = None,
    marker_label: str = "",
    title: str | None = None,
    x_label: str = "",
    y_label: str = "",
    y_range: tuple[float, float] | None = None,
    color: str | None = None,
    width: int = 520,
    height: int = 280,
) -> str:
    """One curve ``ys`` over ``xs``; see `multi_line_chart_svg` for the arguments.

    ``hline`` draws a dashed horizontal line (e.g. a threshold); ``marker_index`` circles the
    point ``(xs[i], ys[i])`` (negative indices count from the end) with ``marker_label`` beside it.

    Example::

        line_chart_svg(range(len(curve)), curve, hline=0.5, hline_label="threshold 0.5",
                       marker_index=-1, marker_label="stopped", y_range=(0, 1))
    """
    xs, ys = list(xs), list(ys)
    if len(xs) != len(ys):
        raise InvalidInputError(f"line_chart_svg: got {len(xs)} xs but {len(ys)} ys")
    markers: list[tuple[float, float, str]] = []
    if marker_index is not None and ys:
        if not -len(ys) <= marker_index < len(ys):
            raise InvalidInputError(f"marker_index {marker_index} is out of range for {len(ys)} points")
        markers.append((float(xs[marker_index]), float(ys[marker_index]), marker_label))
    return multi_line_chart_svg(
        [Series(xs, ys, color=color)],
        hlines=[(hline, hline_label)] if hline is not None else [],
        markers=markers,
        title=title,
        x_label=x_label,
        y_label=y_label,
        y_range=y_range,
        width=width,
        height=height,
    )
