"""``global.json`` and ``global.html``: the global explanation of a batch job and an index of its items.

The page, top to bottom: what was run and how it went (items, reached, failed); for each
(source -> target) pair, a bar chart of the mean standardised change of its top descriptors
(bars whose confidence interval crosses zero are drawn pale) and a table of all of them with
their intervals and counts; the same for both directions of each class pair merged; an index
of every item, its counterfactual as a thumbnail linking to its own ``explanation.html``; the
failures. There is no script; thumbnails are relative links into the item folders (so the page
stays small for large jobs), everything else is inline::

    paths = write_global("report/", global_explanation, results, failures)   # {"json", "html"}
"""

from __future__ import annotations

import os
from html import escape
from pathlib import Path
from typing import Sequence
from urllib.parse import quote

from cfattack.atomic import atomic_write_text
from cfattack.batch.global_explanation import GlobalExplanation, PairExplanation
from cfattack.batch.store import FailureRecord, ResultRecord
from cfattack.reports.html import format_number
from cfattack.reports.svg import bar_chart_svg

__all__ = ["GLOBAL_FILES", "render_global_html", "write_global"]

GLOBAL_FILES = {"json": "global.json", "html": "global.html"}

_CSP = "default-src 'none'; img-src 'self' file: data:; style-src 'unsafe-inline'"

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #222;
       background: #fff; margin: 0 auto; max-width: 1180px; padding: 20px 28px 40px; line-height: 1.45; }
h1 { font-size: 1.6em; margin: 0.2em 0 0.3em; }
h2 { font-size: 1.2em; margin: 1.8em 0 0.5em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
h3 { font-size: 1.02em; margin: 1.3em 0 0.3em; }
p.note { color: #555; font-size: 0.92em; margin: 0.3em 0 0.8em; }
dl.facts { display: grid; grid-template-columns: max-content auto max-content auto; gap: 0.25em 1.2em; margin: 0; }
dl.facts dt { color: #666; }
dl.facts dd { margin: 0; font-variant-numeric: tabular-nums; }
nav a { margin-right: 1em; }
details { margin: 0.3em 0 1em; }
summary { cursor: pointer; color: #1b6ca8; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.88em; margin: 0.3em 0; }
th, td { padding: 0.25em 0.65em; border-bottom: 1px solid #e6e6e6; text-align: left; vertical-align: middle; }
th { background: #f6f6f6; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.muted { color: #888; }
img.thumb { width: 64px; height: 64px; image-rendering: pixelated; image-rendering: crisp-edges;
            border: 1px solid #ddd; display: block; }
.yes { color: #1d6b2f; font-weight: 600; }
.no { color: #8a5300; }
"""


def _link(folder: str, name: str) -> str:
    return quote(f"{folder}/{name}")


def _facts(pairs: list[tuple[str, str]]) -> str:
    return '<dl class="facts">' + "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in pairs) + "</dl>"


def _pair_section(pair: PairExplanation, confidence: float, top_k: int, anchor: str) -> str:
    arrow = "\u2194" if pair.merged else "\u2192"
    heading = f"{pair.source} {arrow} {pair.target}"
    counts = f"{pair.explanations} reached of {pair.attempted}"
    if pair.merged:
        counts += f": {pair.forward} {pair.source} \u2192 {pair.target}, {pair.backward} flipped from " \
                  f"{pair.target} \u2192 {pair.source}"
    parts = [f'<h3 id="{anchor}">{escape(heading)} <span class="note">({escape(counts)})</span></h3>']
    if not pair.descriptors:
        parts.append('<p class="note">No reached explanation: nothing to average.</p>')
        return "\n".join(parts)
    top = pair.descriptors[:top_k]
    level = f"{confidence:.0%}"
    parts.append('<div class="scroll">' + bar_chart_svg(
        [d.name for d in top], [d.mean for d in top],
        notes=[f"[{format_number(d.ci_low, 2, True)}, {format_number(d.ci_high, 2, True)}] n={d.count}" for d in top],
        muted=[not d.consistent for d in top],
        title=f"Mean standardised change, {heading}",
        axis_label=f"standard deviations; pale: the {level} interval includes 0",
    ) + "</div>")
    rows = []
    for d in pair.descriptors:
        cls = "num" if d.consistent else "num muted"
        rows.append(
            f"<tr><td>{escape(d.name)}</td><td class=\"{cls}\">{format_number(d.mean, 3, True)}</td>"
            f"<td class=\"{cls}\">[{format_number(d.ci_low, 3, True)}, {format_number(d.ci_high, 3, True)}]</td>"
            f"<td class=\"num\">{d.count}</td><td class=\"num\">{format_number(d.mean_change, 3, True)}</td>"
            f"<td>{escape(d.unit)}</td></tr>"
        )
    parts.append(
        f"<details><summary>All {len(pair.descriptors)} descriptors</summary>" + _table(
            ["descriptor", "mean (sd)", f"{level} interval", "n", "mean change", "unit"], rows) + "</details>"
    )
    return "\n".join(parts)


def _table(headers: Sequence[str], rows: list[str]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>\n' + "\n".join(rows) + \
        "\n</tbody></table></div>"


def _index(results: Sequence[ResultRecord]) -> str:
    rows = []
    for r in results:
        page, thumb = _link(r.folder, "explanation.html"), _link(r.folder, "counterfactual.png")
        outcome = (f'<span class="yes">reached</span> in {r.steps}' if r.reached
                   else f'<span class="no">not reached</span> ({escape(r.reason)}, {r.steps})')
        top = r.attributions[0] if r.attributions else None
        top_text = f"{top.name} {format_number(top.standardized_change, 2, True)} sd" if top else "\u2014"
        rows.append(
            f'<tr><td><a href="{page}"><img class="thumb" src="{thumb}" alt="counterfactual of '
            f'{escape(Path(r.image).name)}" loading="lazy"></a></td>'
            f'<td><a href="{page}">{escape(r.image)}</a></td>'
            f"<td>{escape(r.source_class)} \u2192 {escape(r.target)}</td><td>{outcome}</td>"
            f'<td class="num">{format_number(r.target_probability, 3)}</td><td>{escape(top_text)}</td></tr>'
        )
    if not rows:
        return '<p class="note">No finished item yet.</p>'
    return _table(["counterfactual", "image", "source \u2192 target", "outcome (steps)", "p(target)",
                   "largest change"], rows)


def _failures(failures: Sequence[FailureRecord]) -> str:
    if not failures:
        return '<p class="note">None.</p>'
    rows = [
        f"<tr><td>{escape(f.image)}</td><td>{escape(f.target or chr(0x2014))}</td><td>{escape(f.stage)}</td>"
        f"<td>{escape(f.error)}</td><td>{escape(f.message)}</td></tr>"
        for f in failures
    ]
    return _table(["image", "target", "stage", "error", "message"], rows)


def render_global_html(
    g: GlobalExplanation,
    results: Sequence[ResultRecord],
    failures: Sequence[FailureRecord],
    *,
    top_k: int = 12,
) -> str:
    """The text of ``global.html`` (see the module docstring); every string from the data is escaped."""
    title = f"Global explanation: {g.bundle} / {g.classifier}"
    facts = _facts([
        ("explanations", str(g.explanations)), ("reached (averaged)", str(g.reached)),
        ("failed items", str(len(failures))), ("pairs", str(len(g.pairs))),
        ("bootstrap", f"{g.confidence:.0%} intervals, {g.resamples} resamples, seed {g.seed}"),
        ("config hash", g.config_hash),
    ])
    body = [
        f"<header><h1>{escape(title)}</h1>{facts}</header>",
        '<nav><a href="#pairs">pairs</a><a href="#merged">both directions</a><a href="#items">items</a>'
        '<a href="#failures">failures</a></nav>',
        '<h2 id="pairs">Source \u2192 target pairs</h2>',
        '<p class="note">For each pair, the mean over reached explanations of each descriptor\'s standardised '
        "change (counterfactual minus start, divided by the descriptor's spread over generator samples), "
        "with a bootstrap confidence interval. The attack always goes from source to target, so a sign reads "
        "the same way in every explanation of a pair.</p>",
    ]
    body += [_pair_section(p, g.confidence, top_k, f"pair-{i}") for i, p in enumerate(g.pairs)]
    body += [
        '<h2 id="merged">Both directions merged</h2>',
        '<p class="note">Each class pair in class order, A \u2192 B; B \u2192 A explanations enter with their '
        "sign flipped, so the two directions support or contradict each other.</p>",
    ]
    body += [_pair_section(p, g.confidence, top_k, f"merged-{i}") for i, p in enumerate(g.merged_pairs)]
    body += [f'<h2 id="items">Items ({len(results)})</h2>', _index(results),
             f'<h2 id="failures">Failures ({len(failures)})</h2>', _failures(failures)]
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
        f"<title>{escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body) + "\n</body>\n</html>\n"
    )


def write_global(
    directory: str | os.PathLike,
    g: GlobalExplanation,
    results: Sequence[ResultRecord],
    failures: Sequence[FailureRecord],
) -> dict[str, Path]:
    """Write ``global.json`` and ``global.html`` into ``directory``, each atomically; returns their paths."""
    directory = Path(directory)
    page = render_global_html(g, results, failures)  # render first: a failure writes nothing
    paths = {key: directory / name for key, name in GLOBAL_FILES.items()}
    atomic_write_text(paths["json"], g.model_dump_json(indent=2) + "\n")
    atomic_write_text(paths["html"], page)
    return paths
