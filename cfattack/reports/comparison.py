"""The files `cfattack compare` writes: ``comparison.json`` and a self-contained ``comparison.html``.

The page holds the table of per-classifier figures, one SVG bar chart per figure, and the strip
of one image explained by every classifier (the first image that all of them explained), so
the reader sees side by side what each classifier asked the garment to become::

    paths = write_comparison(comparison, "compare/")   # {"json": ..., "html": ...}
"""

from __future__ import annotations

import os
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

from cfattack.atomic import atomic_write_text
from cfattack.reports.html import _CSP, _CSS, format_number
from cfattack.reports.pixels import png_data_uri
from cfattack.reports.strip import compose_strip, strip_panels
from cfattack.reports.svg import bar_chart_svg

if TYPE_CHECKING:
    from cfattack.evaluation.compare import Comparison

__all__ = ["COMPARISON_FILES", "render_comparison_html", "write_comparison"]

COMPARISON_FILES = {"json": "comparison.json", "html": "comparison.html"}

# (field, chart title, axis label, value format, what a better value is)
_CLASSIFIER_FIGURES = {"silhouette", "mistake_severity"}
_FIGURES = [
    ("silhouette", "Embedding silhouette (test subset)", "silhouette", "{:.3f}", "higher: tighter class clusters"),
    ("mistake_severity", "Mistake severity", "mean hierarchy distance of errors", "{:.2f}",
     "lower: milder mistakes"),
    ("flip_rate", "Flip rate", "share of explanations reaching the target", "{:.0%}", "higher: easier to flip"),
    ("median_steps", "Median attack steps", "steps", "{:.0f}", "lower: closer decision boundary"),
    ("median_latent_distance", "Median latent distance", "||ws_cf - ws0||", "{:.2f}", "lower: smaller change"),
    ("realism_fd", "Realism (Fréchet distance to real target-class images)", "distance", "{:.2f}",
     "lower: more realistic; compare with the floor"),
    ("attribution_concentration", "Attribution concentration (top-3 share)", "share", "{:.0%}",
     "higher: explanations name fewer features"),
]


def _cell(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else escape(fmt.format(value))


def _table(comparison: Comparison) -> str:
    head = ("classifier", "accuracy", "silhouette", "kNN purity", "mistake severity", "explained", "skipped",
            "flip rate", "median steps", "median latent dist.", "median pixel RMS", "realism FD", "floor",
            "top-3 share", "most often first", "seconds")
    rows = []
    for r in comparison.report.classifiers:
        first = ", ".join(f"{escape(k)} ({v})" for k, v in list(r.top_descriptors.items())[:3]) or "n/a"
        m = r.classifier_metrics
        cells = (escape(r.name), _cell(m.get("accuracy"), "{:.2%}"), _cell(m.get("silhouette"), "{:.3f}"),
                 _cell(m.get("knn_purity"), "{:.3f}"), _cell(m.get("mistake_severity"), "{:.2f}"), str(r.explained), str(r.skipped), _cell(r.flip_rate, "{:.0%}"),
                 _cell(r.median_steps, "{:.0f}"), _cell(r.median_latent_distance, "{:.2f}"),
                 _cell(r.median_pixel_rms, "{:.3f}"), _cell(r.realism_fd, "{:.2f}"),
                 _cell(r.realism_floor, "{:.2f}"), _cell(r.attribution_concentration, "{:.0%}"), first,
                 format_number(r.seconds, 1))
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    header = "".join(f"<th>{escape(h)}</th>" for h in head)
    return f'<table class="attributions"><thead><tr>{header}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _charts(comparison: Comparison) -> str:
    rows = comparison.report.classifiers
    names = [r.name for r in rows]
    parts = []
    for key, title, axis, fmt, better in _FIGURES:
        values = [r.classifier_metrics.get(key) if key in _CLASSIFIER_FIGURES else getattr(r, key) for r in rows]
        if all(v is None for v in values):
            continue
        numbers = [float("nan") if v is None else float(v) for v in values]
        notes = None
        if key == "realism_fd":
            notes = [f"floor {r.realism_floor:.2f}" if r.realism_floor is not None else "" for r in rows]
        parts.append(bar_chart_svg(names, numbers, title=f"{title} ({better})", axis_label=axis,
                                   value_format=fmt, colors=["#4a78b5"] * len(names), notes=notes, width=640))
    return '<section class="charts">\n' + "\n".join(parts) + "\n</section>"


def _shared_image(comparison: Comparison) -> int | None:
    """Index of the first image every classifier explained (with images attached)."""
    per = list(comparison.explanations.values())
    for i in range(len(comparison.report.images)):
        if per and all(exps[i] is not None and exps[i].has_images for exps in per):
            return i
    return None


def _strips(comparison: Comparison) -> str:
    i = _shared_image(comparison)
    if i is None:
        return "<p>No image was explained by every classifier, so no side-by-side strips.</p>"
    report = comparison.report
    blocks = [f"<h2>One image, every classifier: {escape(Path(report.images[i]).name)} "
              f"\u2192 {escape(report.targets[i])}</h2>"]
    for name, exps in comparison.explanations.items():
        e = exps[i]
        strip = png_data_uri(compose_strip(strip_panels(e)))
        top = ", ".join(f"{escape(a.name)} {a.standardized_change:+.2f} sd" for a in e.top(3)) or "no attributions"
        status = f"reached in {e.steps} steps" if e.reached else f"not reached ({escape(e.reason)})"
        blocks.append(f'<figure><figcaption><strong>{escape(name)}</strong>: {status}, '
                      f'p({escape(e.target)}) = {e.target_probability:.2f}; top changes: {top}</figcaption>'
                      f'<img alt="strip for {escape(name)}" src="{strip}"></figure>')
    return "\n".join(blocks)


def render_comparison_html(comparison: Comparison) -> str:
    """The text of ``comparison.html`` (no script, no external reference)."""
    report = comparison.report
    intro = (f"<h1>cfattack: classifier comparison</h1><p class=\"summary\">Bundle <code>{escape(report.bundle)}"
             f"</code>: {len(report.images)} images, each explained toward the same target by "
             f"{len(report.classifiers)} classifiers with the same settings (space "
             f"{escape(report.config.attack.space)}, threshold {report.config.attack.threshold:g}, at most "
             f"{report.config.attack.steps} steps). Realism is measured in the embedding of "
             f"<code>{escape(report.reference_embedding or 'n/a')}</code> for every row, so the rows are "
             f"comparable; that classifier's own row is measured with its own yardstick.</p>")
    body = "\n".join([intro, "<h2>Figures</h2>", _table(comparison), _charts(comparison), _strips(comparison)])
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
        f"<title>cfattack: classifier comparison</title>\n<style>{_CSS}</style>\n</head>\n<body>\n{body}\n"
        "</body>\n</html>\n"
    )


def write_comparison(comparison: Comparison, directory: str | os.PathLike) -> dict[str, Path]:
    """Write comparison.json and comparison.html into ``directory`` (each atomically)."""
    page = render_comparison_html(comparison)  # render first: a failure leaves no file behind
    text = comparison.report.model_dump_json(indent=2)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {k: directory / v for k, v in COMPARISON_FILES.items()}
    atomic_write_text(paths["json"], text + "\n")
    atomic_write_text(paths["html"], page)
    return paths
