"""``explanation.html``: one self-contained page per explanation, readable offline.

Everything is inline: CSS in a ``<style>`` element, images as ``data:image/png`` URIs (the
animated path as ``data:image/gif``), charts as ``<svg>`` elements; there is no script and no
external reference, and a Content-Security-Policy forbids loading anything else. All text from
the explanation is escaped with `html.escape`.

The page, top to bottom: the summary (classes, outcome, steps, probabilities, space, distances,
classifier and bundle); the inversion-quality box (a red banner when the reconstruction is
flagged as poor); the strip with captions, never wider than the page, and the animated path
(``path.gif``, also linked); the top attributions as a bar chart and the target probability
along the path; a table of every attribution; predicted vs measured changes; the warnings;
timings and the settings used::

    text = render_html(exp)          # str, written by cfattack.reports.write_report
"""

from __future__ import annotations

import base64
import io
import json
import math
from html import escape
from typing import TYPE_CHECKING, Sequence

from PIL import Image

from cfattack.reports.animation import path_gif_bytes
from cfattack.reports.pixels import png_data_uri
from cfattack.reports.strip import DEFAULT_MAX_FRAMES, Panel, display_scale, strip_panels
from cfattack.reports.svg import bar_chart_svg, line_chart_svg

if TYPE_CHECKING:
    from cfattack.attribution.changes import DescriptorChange
    from cfattack.pipeline.explanation import Explanation

__all__ = ["FLAGGED_BANNER", "DEFAULT_TOP_K", "render_html", "format_number", "strip_html"]

FLAGGED_BANNER = "Inversion flagged"
"""Heading of the red banner shown when `InversionReport.flagged` is set (and only then)."""

DEFAULT_TOP_K = 10

_REASONS = {
    "reached": "the target probability passed the threshold",
    "max_steps": "the step budget ran out",
    "zero_gradient": "the gradient vanished",
    "non_finite": "the classifier returned non-finite values",
}

_SPACES = {"w": "W (one w for all layers)", "w+": "W+ (one w per layer)", "pixel": "pixel space (no generator)"}

_CSS = """
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #222;
       background: #fff; margin: 0 auto; max-width: 1180px; padding: 20px 28px 40px; line-height: 1.45; }
h1 { font-size: 1.6em; margin: 0.2em 0 0.3em; }
h2 { font-size: 1.15em; margin: 1.6em 0 0.5em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
.badge { display: inline-block; font-size: 0.55em; vertical-align: middle; padding: 0.2em 0.6em;
         border-radius: 1em; font-weight: 600; margin-left: 0.4em; }
.badge.reached { background: #e3f4e6; color: #1d6b2f; border: 1px solid #9fd3aa; }
.badge.not-reached { background: #fdf1dc; color: #8a5300; border: 1px solid #f0c67a; }
.summary { font-size: 1.05em; margin: 0 0 0.8em; }
dl.facts { display: grid; grid-template-columns: max-content auto max-content auto; gap: 0.25em 1.2em;
           margin: 0; font-size: 0.95em; }
dl.facts dt { color: #666; }
dl.facts dd { margin: 0; font-variant-numeric: tabular-nums; }
.box { margin: 1.2em 0; padding: 0.7em 1em; border-radius: 6px; }
.box.calm { background: #f4f7fa; border: 1px solid #d5dee8; color: #333; }
.box.flagged { background: #fde8e8; border: 2px solid #c62828; color: #7f1010; }
.box.flagged strong.banner { font-size: 1.15em; display: block; margin-bottom: 0.3em; }
.box ul { margin: 0.4em 0 0.2em; padding-left: 1.3em; }
.strip { display: flex; flex-wrap: wrap; gap: 6px; align-items: flex-start; }
.strip figure { margin: 0; text-align: center; }
.strip img { display: block; image-rendering: pixelated; image-rendering: crisp-edges; max-width: 100%;
             height: auto; border: 1px solid #ddd; }
.strip figcaption { font-size: 0.8em; color: #555; margin-top: 2px; }
.path-row { display: flex; gap: 18px; align-items: flex-start; margin-top: 0.8em; }
.path-row figure { margin: 0; flex: none; }
.alternatives { display: flex; flex-wrap: wrap; gap: 12px; }
.alternative { margin: 0; max-width: 180px; font-size: 0.85em; }
.alternative img { display: block; image-rendering: pixelated; border: 1px solid #ddd; }
.path-row img { display: block; image-rendering: pixelated; border: 1px solid #ddd; }
.path-row figcaption { font-size: 0.8em; color: #555; margin-top: 2px; max-width: 16em; }
.legend { font-size: 0.85em; color: #555; margin: 0.3em 0 0; }
.swatch { display: inline-block; width: 0.9em; height: 0.9em; vertical-align: -0.1em; border: 1px solid #bbb; }
.charts { display: flex; flex-wrap: wrap; gap: 12px 36px; align-items: flex-start; }
.charts > div { flex: 0 1 auto; max-width: 100%; overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.9em; margin: 0.3em 0; }
td.meaning { min-width: 14em; max-width: 28em; }
th, td { padding: 0.28em 0.7em; border-bottom: 1px solid #e6e6e6; text-align: left; vertical-align: top; }
th { background: #f6f6f6; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.pos { color: #b2182b; } td.neg { color: #2166ac; }
.muted { color: #777; }
.unreliable { color: #8a5300; font-size: 0.85em; display: block; }
.scroll { max-width: 100%; overflow-x: auto; }
ul.warnings li { margin: 0.2em 0; }
details { margin-top: 0.6em; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
footer { margin-top: 2em; font-size: 0.85em; color: #777; }
"""

_PAGE_WIDTH = 1120  # px of content: body max-width 1180 less its padding

# Nothing but inline styles and data: images may load; a stray external reference stays inert.
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


# ---------------------------------------------------------------------------------------------
# Small formatting helpers.


def format_number(value: float | None, digits: int = 3, signed: bool = False) -> str:
    """``digits`` significant digits; "—" for None, "nan"/"inf" spelled out."""
    if value is None:
        return "\u2014"
    value = float(value)
    if not math.isfinite(value):
        return str(value)
    return f"{value:+.{digits}g}" if signed else f"{value:.{digits}g}"


def _clip(text: str, max_chars: int) -> str:
    return text if len(text) <= max_chars else text[: max_chars - 1] + "\u2026"


def _sign_class(value: float) -> str:
    return "pos" if value > 0 else "neg" if value < 0 else ""


def _fact(term: str, value: str) -> str:
    return f"<dt>{escape(term)}</dt><dd>{escape(value)}</dd>"


def _table(headers: Sequence[str], rows: list[str]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    return (f'<div class="scroll"><table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n' + "\n".join(rows)
            + "\n</tbody>\n</table></div>")


# ---------------------------------------------------------------------------------------------
# Sections.


def _header(exp: Explanation) -> str:
    badge = ('<span class="badge reached">reached</span>' if exp.reached
             else '<span class="badge not-reached">not reached</span>')
    title = f"{escape(exp.source_class)} \u2192 {escape(exp.target)} {badge}"
    reason = _REASONS.get(exp.reason, exp.reason)
    outcome = (f"reached in {exp.steps} steps" if exp.reached
               else f"not reached after {exp.steps} steps: {reason} ({exp.reason})")
    source = f"{exp.source_class} (p = {format_number(exp.source_probability)})"
    facts = [
        _fact("source class", source),
        _fact("target class", exp.target),
        _fact("outcome", outcome),
        _fact("steps", str(exp.steps)),
        _fact("final target probability", format_number(exp.target_probability)),
        _fact("threshold", format_number(exp.threshold)),
        _fact("counterfactual classified as", exp.counterfactual_class),
        _fact("space", _SPACES.get(exp.space, exp.space)),
        _fact("latent distance", format_number(exp.latent_distance) if exp.latent_distance is not None
              else "\u2014 (pixel space)"),
        _fact("pixel RMS change", format_number(exp.pixel_rms)),
        *([_fact("moved as a whole", f"{exp.shift_px[0]:+.2f} px right, {exp.shift_px[1]:+.2f} px down")]
          if exp.shift_px is not None else []),
        *([_fact("class step first", f"{format_number(exp.class_step)} of the class-mean difference")]
          if exp.class_step else []),
        _fact("classifier", exp.classifier),
        _fact("bundle", exp.bundle),
    ]
    if exp.start_class != exp.source_class:
        facts.append(_fact("reconstruction classified as", exp.start_class))
    if exp.image is not None:
        facts.append(_fact("input", exp.image))
    attack = (f"passed the threshold in {exp.steps} steps" if exp.reached
              else f"stopped after {exp.steps} steps without passing the threshold: {reason}")
    summary = (f"The classifier labels this image <strong>{escape(exp.source_class)}</strong> "
               f"(p = {format_number(exp.source_probability)}). The attack toward "
               f"<strong>{escape(exp.target)}</strong> {escape(attack)}; the target probability ended at "
               f"{format_number(exp.target_probability)} (threshold {format_number(exp.threshold)}).")
    return (f"<header>\n<h1>{title}</h1>\n<p class=\"summary\">{summary}</p>\n"
            f"<dl class=\"facts\">{''.join(facts)}</dl>\n</header>")


def _inversion_box(exp: Explanation) -> str:
    inv = exp.inversion
    if inv is None:
        return ('<section class="box calm inversion"><strong>No inversion.</strong> The attack moved the pixels of the '
                "input directly, so there is no reconstruction to judge.</section>")
    label = {True: "yes", False: "no", None: "unknown"}[inv.label_match]
    numbers = (f"PSNR {format_number(inv.psnr)} dB (encoder alone {format_number(inv.encoder_psnr)} dB, "
               f"{inv.steps} refinement steps) \u00b7 SSIM {format_number(inv.ssim)} \u00b7 "
               f"classifier agrees on the reconstruction: {label}")
    if inv.flagged:
        reasons = "".join(f"<li>{escape(r)}</li>" for r in inv.reasons) or "<li>no reason recorded</li>"
        return (f'<section class="box flagged inversion" role="alert"><strong class="banner">\u26a0 '
                f"{escape(FLAGGED_BANNER)}: the reconstruction is poor</strong>"
                "The generator could not reproduce the input well, so the counterfactual explains a different "
                f"image than yours. Read the attributions with care.<ul>{reasons}</ul>"
                f"<span>{escape(numbers)}</span></section>")
    return (f'<section class="box calm inversion"><strong>Reconstruction quality:</strong> '
            f"{escape(numbers)}.</section>")


def strip_html(panels: list[Panel], max_width: int = _PAGE_WIDTH) -> str:
    """The panels as one row of captioned figures, enlarged like strip.png but never wider than ``max_width``.

    Returns a ``<div class="strip">`` (styled by this module's CSS); every panel has a border, so
    an all-white difference (nothing changed) still shows where it is.
    """
    # strip.png's enlargement, reduced (never below 1) so that the panels fit one row.
    scale = display_scale(max(p.pixels.shape[0] for p in panels))
    row_pixels = sum(p.pixels.shape[1] + 2 for p in panels)  # + the 1 px border on each side
    scale = max(1, min(scale, (max_width - 6 * (len(panels) - 1)) // max(row_pixels, 1)))
    figures = []
    for p in panels:
        h, w = p.pixels.shape[:2]
        caption = escape(p.caption)
        figures.append(f'<figure class="{escape(p.kind)}" style="width:{w * scale + 2}px">'
                       f'<img src="{png_data_uri(p.pixels)}" width="{w * scale}" height="{h * scale}" alt="{caption}">'
                       f"<figcaption>{caption}</figcaption></figure>")
    return '<div class="strip">\n' + "\n".join(figures) + "\n</div>"


def _strip(panels: list[Panel], gif: bytes, gif_size: tuple[int, int]) -> str:
    legend = ('<p class="legend">Difference = counterfactual \u2212 start image (mean over channels): '
              '<span class="swatch" style="background:#2166ac"></span> darker \u00b7 '
              '<span class="swatch" style="background:#ffffff"></span> unchanged \u00b7 '
              '<span class="swatch" style="background:#b2182b"></span> brighter, '
              "on a scale symmetric about zero up to the largest change.</p>")
    uri = "data:image/gif;base64," + base64.b64encode(gif).decode("ascii")
    w, h = gif_size
    animation = (f'<figure class="animation"><img src="{uri}" width="{w}" height="{h}" '
                 'alt="the path from the start image to the counterfactual, animated">'
                 '<figcaption>The path, animated (<a href="path.gif">path.gif</a>, beside this page)</figcaption>'
                 "</figure>")
    return (f"<section>\n<h2>The path</h2>\n{strip_html(panels)}\n"
            f'<div class="path-row">\n{animation}\n{legend}\n</div>\n</section>')


def _attribution_chart(exp: Explanation, top_k: int) -> str:
    rows = exp.top(top_k)
    if not rows:
        return "<div><h2>What changed</h2><p class=\"muted\">No descriptor changes were computed.</p></div>"
    source = "predicted from the latents" if exp.attribution_source == "predicted" else "measured on the images"
    svg = bar_chart_svg(
        [r.name if r.reliable else _clip(r.name, 21) + " (unreliable)" for r in rows],
        [r.standardized_change for r in rows],
        notes=[f"{format_number(r.before)} \u2192 {format_number(r.after)} {r.unit}".rstrip() for r in rows],
        muted=[not r.reliable for r in rows],
        title=f"Top {len(rows)} descriptor changes",
        axis_label="standardised change (in standard deviations)",
        max_width=_PAGE_WIDTH,
    )
    note = ('<p class="legend"><span class="swatch" style="background:#b2182b"></span> increased \u00b7 '
            '<span class="swatch" style="background:#2166ac"></span> decreased')
    if any(not r.reliable for r in rows):
        note += " \u00b7 pale dashed bars: the latent predictor missed the quality bar (unreliable)"
    note += f". Values {escape(source)}.</p>"
    return f"<div>\n<h2>What changed</h2>\n{svg}\n{note}\n</div>"


def _probability_chart(exp: Explanation) -> str:
    curve = list(exp.probability_curve)
    if not curve:
        return "<div><h2>Target probability</h2><p class=\"muted\">No probability curve was recorded.</p></div>"
    stop = exp.steps if exp.steps < len(curve) else len(curve) - 1
    svg = line_chart_svg(
        list(range(len(curve))),
        curve,
        hline=exp.threshold,
        hline_label=f"threshold {format_number(exp.threshold)}",
        marker_index=stop,
        marker_label=f"stopped at step {stop}: p = {format_number(curve[stop])}",
        title=f"p({exp.target}) along the path",
        x_label="attack step",
        y_label="target probability",
        y_range=(0.0, 1.0),
    )
    return f"<div>\n<h2>Target probability</h2>\n{svg}\n</div>"


def _attribution_table(exp: Explanation) -> str:
    if not exp.attributions:
        return ""
    rows = []
    for i, r in enumerate(exp.attributions, 1):
        meaning = escape(r.meaning)
        if r.higher_means:
            meaning += f' <span class="muted">(higher: {escape(r.higher_means)})</span>'
        score = format_number(r.score)
        if not r.reliable:
            score += ' <span class="unreliable">unreliable</span>'
        rows.append(
            f"<tr><td class=\"num\">{i}</td><td>{escape(r.name)}</td><td class=\"meaning\">{meaning}</td>"
            f"<td>{escape(r.unit)}</td>"
            f"<td class=\"num\">{format_number(r.before)}</td><td class=\"num\">{format_number(r.after)}</td>"
            f"<td class=\"num\">{format_number(r.change, signed=True)}</td>"
            f"<td class=\"num {_sign_class(r.standardized_change)}\">"
            f"{format_number(r.standardized_change, signed=True)}</td><td class=\"num\">{score}</td></tr>"
        )
    source = "predicted from the latents" if exp.attribution_source == "predicted" else "measured on the images"
    table = _table(["#", "descriptor", "meaning", "unit", "before", "after", "change", "standardised change",
                    "predictor score"], rows)
    return (f"<section>\n<h2>All descriptor changes</h2>\n<p class=\"legend\">Ranked by the size of the "
            f"standardised change; values {escape(source)}. The predictor score is the held-out R\u00b2 "
            f"(or accuracy) of the latent predictor.</p>\n{table}\n</section>")


def _measured_table(exp: Explanation) -> str:
    """Predicted vs measured changes, by descriptor name, when both exist."""
    if not exp.measured or exp.attribution_source != "predicted":
        return ""
    measured: dict[str, DescriptorChange] = {m.name: m for m in exp.measured}
    predicted: dict[str, DescriptorChange] = {p.name: p for p in exp.attributions}
    names = list(predicted) + [n for n in measured if n not in predicted]
    rows = []
    for name in names:
        p, m = predicted.get(name), measured.get(name)
        if p is not None and m is not None and p.change != 0 and m.change != 0:
            agree = "yes" if (p.change > 0) == (m.change > 0) else "<strong>no</strong>"
        else:
            agree = "\u2014"
        unit = (p or m).unit  # type: ignore[union-attr]
        rows.append(
            f"<tr><td>{escape(name)}</td><td>{escape(unit)}</td>"
            f"<td class=\"num\">{format_number(p.change if p else None, signed=True)}</td>"
            f"<td class=\"num\">{format_number(m.change if m else None, signed=True)}</td>"
            f"<td class=\"num\">{format_number(p.standardized_change if p else None, signed=True)}</td>"
            f"<td class=\"num\">{format_number(m.standardized_change if m else None, signed=True)}</td>"
            f"<td>{agree}</td></tr>"
        )
    table = _table(["descriptor", "unit", "predicted change", "measured change", "predicted (SD)", "measured (SD)",
                    "same sign"], rows)
    return (f"<section>\n<h2>Predicted vs measured</h2>\n<p class=\"legend\">The ranking uses changes predicted "
            f"from the latents; these are the same descriptors measured on the start and counterfactual "
            f"images.</p>\n{table}\n</section>")


def _alternatives(exp: Explanation) -> str:
    """k > 1: the other counterfactuals side by side, with their top changes and the agreement."""
    if not exp.alternatives or exp.agreement is None:
        return ""
    from cfattack.reports.pixels import image_data_uri

    images = exp.images.alternatives if exp.has_images else []
    agree = exp.agreement
    cards = []
    main_top = ", ".join(escape(a.name) for a in exp.attributions[:3])
    main_uri = image_data_uri(exp.images.counterfactual, scale=3) if exp.has_images else None
    entries = [(0, main_uri, main_top, exp.reached, exp.steps)] + [
        (alt.index, image_data_uri(images[n], scale=3) if n < len(images) else None,
         ", ".join(escape(a.name) for a in alt.attributions[:3]), alt.reached, alt.steps)
        for n, alt in enumerate(exp.alternatives)]
    for index, uri, top, reached, steps in entries:
        picture = f'<img src="{uri}" alt="counterfactual {index}">' if uri else ""
        outcome = f"reached, {steps} steps" if reached else f"not reached, {steps} steps"
        cards.append(f'<figure class="alternative">{picture}<figcaption><strong>#{index}</strong> '
                     f'{escape(outcome)}<br>{top}</figcaption></figure>')
    consensus = ", ".join(escape(n) for n in agree.consensus) or "none"
    return (f"<section>\n<h2>{agree.counterfactuals} counterfactuals of this input</h2>\n"
            f"<p class=\"legend\">Paths from jittered starts (#0 is the main one). Same largest change as #0: "
            f"{agree.top1_share:.0%}; mean overlap of the top-3 sets: {agree.top3_overlap:.0%}; in the top 3 of at "
            f"least half: {consensus}. Low agreement means the ranking depends on where the path began: read "
            f"it as one of several answers.</p>\n<div class=\"alternatives\">{''.join(cards)}</div>\n</section>")


def _warnings(exp: Explanation) -> str:
    if not exp.warnings:
        return '<section>\n<h2>Warnings</h2>\n<p class="muted">None.</p>\n</section>'
    items = "\n".join(f"<li>{escape(w)}</li>" for w in exp.warnings)
    return f'<section>\n<h2>Warnings</h2>\n<ul class="warnings">\n{items}\n</ul>\n</section>'


def _footer(exp: Explanation) -> str:
    from cfattack import __version__

    timings = ", ".join(f"{escape(k)} {v:.2f} s" for k, v in exp.timings.items())
    settings = escape(json.dumps(exp.config.model_dump(mode="json"), indent=2))
    return (f"<footer>\n<details><summary>Settings used</summary><pre>{settings}</pre></details>\n"
            + (f"<p>Timings: {timings}.</p>\n" if timings else "")
            + f"<p>cfattack {escape(__version__)} \u00b7 {escape(exp.format_version)}</p>\n</footer>")


# ---------------------------------------------------------------------------------------------
# The page.


def render_html(
    explanation: Explanation,
    *,
    top_k: int = DEFAULT_TOP_K,
    max_frames: int = DEFAULT_MAX_FRAMES,
    panels: list[Panel] | None = None,
    gif: bytes | None = None,
) -> str:
    """The text of ``explanation.html``.

    Args:
        explanation: an explanation with images (`Explanation.has_images`).
        top_k: attributions shown in the bar chart (the table lists all).
        max_frames: intermediate frames shown in the strip.
        panels: the strip's panels when already made (`strip_panels`); None makes them.
        gif: the bytes of ``path.gif`` when already made (`path_gif_bytes`); None makes them.

    Raises:
        InvalidInputError: the explanation has no images, or they are malformed.
    """
    if panels is None:
        panels = strip_panels(explanation, max_frames)
    if gif is None:
        gif = path_gif_bytes(explanation)
    with Image.open(io.BytesIO(gif)) as animation:
        gif_size = animation.size
    title = f"cfattack: {explanation.source_class} \u2192 {explanation.target}"
    body = "\n".join(
        part
        for part in (
            _header(explanation),
            _inversion_box(explanation),
            _strip(panels, gif, gif_size),
            '<section class="charts">\n' + _attribution_chart(explanation, top_k) + "\n"
            + _probability_chart(explanation) + "\n</section>",
            _attribution_table(explanation),
            _measured_table(explanation),
            _alternatives(explanation),
            _warnings(explanation),
            _footer(explanation),
        )
        if part
    )
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
        f"<title>{escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )
