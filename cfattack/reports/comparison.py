"""The files `cfattack compare` writes: ``comparison.json`` and a self-contained ``comparison.html``.

The page holds two tables of per-classifier figures (the classifiers themselves, when real images
were given, and their explanations), one SVG bar chart per figure in a two-column grid, and the
captioned strip of one image explained by every classifier (the first image that all of them
explained), so the reader sees side by side what each classifier asked the garment to become.
Everything fits a 1280 px window: the tables are split so that neither is wider than the page,
the charts measure their text, and the strips shrink to the page's width::

    paths = write_comparison(comparison, "compare/")   # {"json": ..., "html": ...}
"""

from __future__ import annotations

import os
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

from cfattack.atomic import atomic_write_text
from cfattack.reports.html import _CSP, _CSS, _PAGE_WIDTH, strip_html
from cfattack.reports.strip import strip_panels
from cfattack.reports.svg import bar_chart_svg

if TYPE_CHECKING:
    from cfattack.evaluation.compare import Comparison

__all__ = ["COMPARISON_FILES", "render_comparison_html", "write_comparison"]

COMPARISON_FILES = {"json": "comparison.json", "html": "comparison.html"}

_CHART_GAP = 24
_CHART_WIDTH = (_PAGE_WIDTH - _CHART_GAP) // 2  # two charts side by side fill the page's width
_EXTRA_CSS = f"""
.chart-grid {{ display: grid; grid-template-columns: repeat(auto-fill, minmax({_CHART_WIDTH}px, 1fr));
               gap: 18px {_CHART_GAP}px; margin-top: 1em; }}
.chart-grid > div {{ overflow-x: auto; }}
h3 {{ font-size: 1.02em; margin: 1.2em 0 0.3em; }}
figure.classifier {{ margin: 1.2em 0; }}
figure.classifier > figcaption {{ margin-bottom: 0.4em; }}
th {{ vertical-align: bottom; }}
td:first-child {{ white-space: nowrap; }}
"""

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


# Two tables rather than one of 16 columns, so that each fits a 1280 px window: how good each
# classifier is as a classifier, and what explaining it took. Numbers are right-aligned.
_QUALITY_COLUMNS = (("accuracy", "{:.2%}"), ("silhouette", "{:.3f}"), ("knn_purity", "{:.3f}"),
                    ("mistake_severity", "{:.2f}"))
_QUALITY_HEAD = ("classifier", "test accuracy", "silhouette", "kNN purity", "mistake severity")


def _html_table(head: tuple[str, ...], rows: list[list[str]], text_columns: tuple[int, ...] = (0,)) -> str:
    """A table in a horizontal scroller; columns not in ``text_columns`` are right-aligned numbers."""
    header = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{c}</td>" if j in text_columns else f'<td class="num">{c}</td>'
                         for j, c in enumerate(cells)) + "</tr>"
        for cells in rows
    )
    return f'<div class="scroll"><table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table></div>'


def _tables(comparison: Comparison) -> str:
    rows = comparison.report.classifiers
    parts = []
    if any(r.classifier_metrics.get(k) is not None for r in rows for k, _ in _QUALITY_COLUMNS):
        quality = [[escape(r.name)] + [_cell(r.classifier_metrics.get(k), f) for k, f in _QUALITY_COLUMNS]
                   for r in rows]
        parts.append("<h3>The classifiers</h3>" + _html_table(_QUALITY_HEAD, quality))
    head = ("classifier", "explained", "skipped", "flip rate", "median steps", "median latent dist.",
            "median pixel RMS", "realism FD", "floor", "top-3 share", "most often first", "seconds")
    explained = []
    for r in rows:
        first = ", ".join(f"{escape(k)} ({v})" for k, v in list(r.top_descriptors.items())[:3]) or "n/a"
        explained.append([escape(r.name), str(r.explained), str(r.skipped), _cell(r.flip_rate, "{:.0%}"),
                          _cell(r.median_steps, "{:.0f}"), _cell(r.median_latent_distance, "{:.2f}"),
                          _cell(r.median_pixel_rms, "{:.3f}"), _cell(r.realism_fd, "{:.2f}"),
                          _cell(r.realism_floor, "{:.2f}"), _cell(r.attribution_concentration, "{:.0%}"), first,
                          _cell(r.seconds, "{:.1f}")])
    parts.append("<h3>Their explanations</h3>" + _html_table(head, explained, text_columns=(0, len(head) - 2)))
    return "\n".join(parts)


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
                                   value_format=fmt, colors=["#4a78b5"] * len(names), notes=notes,
                                   width=_CHART_WIDTH, max_width=_CHART_WIDTH))
    return '<div class="chart-grid">\n' + "\n".join(f"<div>{p}</div>" for p in parts) + "\n</div>"


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
              f"\u2192 {escape(report.targets[i])}</h2>",
              '<p class="legend">Each row: original | reconstruction (the same for every classifier) | the path '
              "| counterfactual | difference (blue darker, red brighter, white unchanged).</p>"]
    for name, exps in comparison.explanations.items():
        e = exps[i]
        top = ", ".join(f"{escape(a.name)} {a.standardized_change:+.2f} sd" for a in e.top(3)) or "no attributions"
        status = f"reached in {e.steps} steps" if e.reached else f"not reached ({escape(e.reason)})"
        blocks.append(f'<figure class="classifier"><figcaption><strong>{escape(name)}</strong>: {status}, '
                      f"p({escape(e.target)}) = {e.target_probability:.2f}; top changes: {top}</figcaption>"
                      f"{strip_html(strip_panels(e))}</figure>")
    return "\n".join(blocks)


def render_comparison_html(comparison: Comparison) -> str:
    """The text of ``comparison.html`` (no script, no external reference)."""
    report = comparison.report
    intro = (f"<h1>cfattack: classifier comparison</h1><p class=\"summary\">Bundle <code>{escape(report.bundle)}"
             f"</code>: {len(report.images)} images, each explained toward the same target by "
             f"{len(report.classifiers)} classifiers with the same settings (space "
             f"{escape(report.config.attack.space)}, threshold {report.config.attack.threshold:g}, at most "
             f"{report.config.attack.steps} steps). "
             + (f"Realism is measured in the embedding of <code>{escape(report.reference_embedding)}</code> for "
                "every row, so the rows are comparable; that classifier's own row is measured with its own "
                "yardstick.</p>" if report.reference_embedding else
                "Realism was not measured (no real images were given).</p>"))
    body = "\n".join([intro, "<h2>Figures</h2>", _tables(comparison), _charts(comparison), _strips(comparison)])
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
        f"<title>cfattack: classifier comparison</title>\n<style>{_CSS}{_EXTRA_CSS}</style>\n</head>\n<body>\n{body}\n"
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
