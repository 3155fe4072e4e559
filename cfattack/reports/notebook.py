"""How an `Explanation` shows itself in Python: a one-line ``repr`` and a compact HTML block for Jupyter.

``repr`` is what a REPL, a list of explanations or a log line prints, so it stays on one line:
classes, outcome, steps, target probability and the three largest changes. The HTML block
(`Explanation._repr_html_`, what a notebook cell shows) holds the outcome, the strip at half
size and the top changes as a small table; the full page is ``explanation.html``::

    >>> exp
    Explanation(coat -> pullover: reached in 23 steps (p=0.51); top: ink_area -1.24, width -0.81, slant +0.3)
"""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

from cfattack.reports.pixels import NEGATIVE_RGB, POSITIVE_RGB, png_data_uri
from cfattack.reports.strip import compose_strip, strip_panels

if TYPE_CHECKING:
    from cfattack.pipeline.explanation import Explanation

__all__ = ["explanation_repr", "explanation_html"]

_STRIP_HEIGHT = 64  # px per panel: half of strip.png, so a cell stays compact
_STRIP_FRAMES = 4
_POSITIVE = "#{:02x}{:02x}{:02x}".format(*POSITIVE_RGB)
_NEGATIVE = "#{:02x}{:02x}{:02x}".format(*NEGATIVE_RGB)


def explanation_repr(explanation: Explanation, k: int = 3) -> str:
    """``Explanation(coat -> pullover: reached in 23 steps (p=0.51); top: ink_area -1.24, ...)``."""
    top = ", ".join(f"{a.name} {a.standardized_change:+.3g}" for a in explanation.top(k))
    return f"Explanation({explanation.summary_line()}; top: {top or 'none'})"


def _cell(text: str, align: str = "left", color: str | None = None) -> str:
    style = f"padding:1px 8px;text-align:{align};" + (f"color:{color};" if color else "")
    return f'<td style="{style}">{text}</td>'


def explanation_html(explanation: Explanation, k: int = 5) -> str:
    """The compact HTML of one explanation: outcome, strip (when it has images), top ``k`` changes."""
    e = explanation
    outcome = (f'<span style="color:#1d6b2f;font-weight:600">reached</span> in {e.steps} steps'
               f'{escape(e.first_move())}' if e.reached
               else f'<span style="color:#8a5300;font-weight:600">not reached</span> ({escape(e.reason)}, '
                    f"{e.steps} steps)")
    head = (f"<div><strong>{escape(e.source_class)} \u2192 {escape(e.target)}</strong>: {outcome}; "
            f"p({escape(e.target)}) = {e.target_probability:.3g} (threshold {e.threshold:g}); "
            f'<span style="color:#666">classifier {escape(e.classifier)}, space {escape(e.space)}'
            + (f", {escape(e.image)}" if e.image else "") + "</span></div>")
    parts = [head]
    if e.inversion is not None and e.inversion.flagged:
        parts.append(f'<div style="color:#7f1010">\u26a0 inversion flagged (PSNR {e.inversion.psnr:.1f} dB): the '
                     "counterfactual explains the reconstruction, not quite your image</div>")
    if e.has_images:
        panels = strip_panels(e, _STRIP_FRAMES)
        captions = " | ".join(p.caption for p in panels)
        parts.append(f'<img src="{png_data_uri(compose_strip(panels, _STRIP_HEIGHT, background=221))}" alt="{escape(captions)}" '
                     f'title="{escape(captions)}" style="image-rendering:pixelated;max-width:100%;margin:4px 0">')
    rows = []
    for a in e.top(k):
        color = _POSITIVE if a.standardized_change > 0 else _NEGATIVE if a.standardized_change < 0 else None
        name = escape(a.name) + ("" if a.reliable else ' <span style="color:#8a5300">(unreliable)</span>')
        rows.append("<tr>" + _cell(name) + _cell(f"{a.before:.3g} \u2192 {a.after:.3g} {escape(a.unit)}")
                    + _cell(f"{a.standardized_change:+.2f} sd", "right", color) + "</tr>")
    if rows:
        source = "predicted from the latents" if e.attribution_source == "predicted" else "measured on the images"
        parts.append(f'<table style="border-collapse:collapse;font-size:0.9em"><caption style="text-align:left;'
                     f'color:#666">top {len(rows)} changes, {source}</caption>' + "".join(rows) + "</table>")
    return '<div class="cfattack-explanation" style="line-height:1.4">' + "\n".join(parts) + "</div>"
