"""Reports: an `Explanation` -> explanation.json, PNGs, path.gif and a self-contained HTML page.

`write_report` writes the files (`cfattack.reports.write.REPORT_FILES`). The pieces are reusable
by other reports (the classifier comparison, the batch's global report): `bar_chart_svg` and
`line_chart_svg` return inline SVG strings that measure their text, `image_data_uri` embeds an
image tensor in HTML, `render_strip` draws the strip of an explanation. How results show in
Python (repr, Jupyter, matplotlib, pandas) lives in `notebook`, `figures` and `tables`, behind
`Explanation`'s methods::

    from cfattack.reports import write_report
    paths = write_report(exp, "out/")   # {"json", "counterfactual", "strip", "start", "gif", "html"} -> Path
"""

from __future__ import annotations

from cfattack.reports.html import render_html
from cfattack.reports.pixels import diverging_rgb, image_data_uri, png_data_uri
from cfattack.reports.strip import render_strip, strip_panels
from cfattack.reports.svg import Series, bar_chart_svg, line_chart_svg, multi_line_chart_svg, svg_document
from cfattack.reports.write import write_report

__all__ = [
    "write_report",
    "render_html",
    "render_strip",
    "strip_panels",
    "bar_chart_svg",
    "line_chart_svg",
    "multi_line_chart_svg",
    "Series",
    "svg_document",
    "image_data_uri",
    "png_data_uri",
    "diverging_rgb",
]
