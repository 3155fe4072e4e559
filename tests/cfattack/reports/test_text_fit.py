"""Charts that fit: text measured with a real font, titles wrapped, nothing drawn outside the chart."""

from __future__ import annotations

import re
from html import unescape

import pytest

from cfattack.reports import fonts
from cfattack.reports.comparison import _CHART_WIDTH, render_comparison_html
from cfattack.reports.fonts import ESTIMATE_EM_PER_CHAR, font_path, font_source, text_width
from cfattack.reports.svg import bar_chart_svg, line_chart_svg, wrap_text

needs_font = pytest.mark.skipif(font_path() is None, reason="no DejaVu Sans or Verdana font file on this machine "
                                "(apt-get install fonts-dejavu-core); widths are estimated")

_TEXT = re.compile(r'<text x="([-\d.]+)" y="([-\d.]+)" font-size="(\d+)" text-anchor="(\w+)"[^>]*?'
                   r'(font-weight="600")?>([^<]*)</text>')


def _svg_width(svg: str) -> float:
    return float(re.search(r'<svg class="chart" width="(\d+)"', svg).group(1))


def text_extents(svg: str) -> list[tuple[str, float, float]]:
    """(text, left, right) of every horizontal <text>, from its anchor and its measured width."""
    out = []
    for x, _, size, anchor, bold, text in _TEXT.findall(svg):
        text = unescape(text)
        w = text_width(text, float(size), bold=bool(bold))
        left = float(x) - {"start": 0.0, "middle": w / 2, "end": w}[anchor]
        out.append((text, left, left + w))
    return out


def assert_inside(svg: str) -> None:
    width = _svg_width(svg)
    outside = [(t, round(a, 1), round(b, 1)) for t, a, b in text_extents(svg) if a < -0.5 or b > width + 0.5]
    assert not outside, f"text outside the {width} px chart: {outside}"


@needs_font
def test_widths_are_measured_not_counted():
    assert font_source().startswith("measured with ")
    # A per-character estimate gives these the same width; a font does not.
    assert text_width("WWWWWWWW", 12) > 1.8 * text_width("iiiiiiii", 12)
    assert text_width("mean tone", 24) == pytest.approx(2 * text_width("mean tone", 12), rel=0.02)
    assert text_width("ink", 12, bold=True) > text_width("ink", 12)


def test_estimate_without_a_font_file(monkeypatch):
    monkeypatch.setattr(fonts, "_font_files", lambda: None)
    fonts._font.cache_clear()
    fonts.text_width.cache_clear()
    try:
        assert font_source() == "estimated (no font file found)"
        assert text_width("abcd", 10) == pytest.approx(4 * ESTIMATE_EM_PER_CHAR * 10)
    finally:
        fonts._font.cache_clear()
        fonts.text_width.cache_clear()


def test_wrap_text_keeps_every_word_within_the_width():
    text = "Attribution concentration (top-3 share) (higher: explanations name fewer features)"
    lines = wrap_text(text, 14, 300, bold=True)
    assert len(lines) >= 2 and " ".join(lines) == text
    assert all(text_width(line, 14, bold=True) <= 300 for line in lines)


def test_long_title_wraps_and_every_text_is_inside_the_chart():
    title = "Realism (Fréchet distance to real target-class images) (lower: more realistic; compare with the floor)"
    svg = bar_chart_svg(["baseline", "latent-boost", "offset-l2"], [3.2, 1.1, float("nan")], title=title,
                        notes=["floor 0.52", "floor 0.52", ""], value_format="{:.2f}", width=_CHART_WIDTH,
                        max_width=_CHART_WIDTH)
    assert _svg_width(svg) <= _CHART_WIDTH
    title_lines = [t for t in re.findall(r'font-weight="600">([^<]*)<', svg)]
    assert len(title_lines) >= 2 and " ".join(title_lines) == title.replace("&", "&amp;")
    assert_inside(svg)


def test_notes_that_fit_are_not_cut():
    note = "0.0845 \u2192 0.0789 (intensity/px^2)^2"  # was cut to 30 characters before widths were measured
    svg = bar_chart_svg(["texture_energy", "ink_area"], [-0.1, 0.2], notes=[note, "1 \u2192 2 px"], width=760,
                        max_width=1120)
    assert note in unescape(svg) and "\u2026" not in svg
    assert_inside(svg)


def test_too_long_labels_are_cut_to_the_column_and_stay_inside():
    long = "a descriptor name far longer than any column should ever have to hold " * 2
    svg = bar_chart_svg([long, "short"], [1.0, -2.0], notes=[long, ""], max_width=600)
    assert _svg_width(svg) <= 600 and "\u2026" in svg
    assert long.strip() in unescape(svg)  # the full text stays in the row's tooltip
    assert_inside(svg)


def test_line_chart_marker_label_stays_inside():
    curve = [0.01 * i for i in range(60)]
    svg = line_chart_svg(range(60), curve, marker_index=-1, marker_label="stopped at step 59: p = 0.59",
                         hline=0.5, hline_label="threshold 0.5", title="p(a rather long target name) along the path",
                         width=300)
    assert_inside(svg)


def test_comparison_tables_and_charts_fit_the_page(comparison):
    page = render_comparison_html(comparison)
    assert page.count("<table>") == 2  # the classifiers, their explanations
    assert page.count('<figure class="classifier"') == len(comparison.explanations)
    for svg in re.findall(r"<svg .*?</svg>", page, flags=re.S):
        assert _svg_width(svg) <= _CHART_WIDTH
        assert_inside(svg)
    # Every panel of every strip is captioned.
    assert page.count("<figcaption>original</figcaption>") == len(comparison.explanations)
    assert page.count("<figcaption>difference") == len(comparison.explanations)
