"""``global.json`` and ``global.html``: the global explanation of a batch job and an index of its items.

The page opens with the overview: what was run and how it went (items, reached, failed), then
one row per (source -> target) pair with its counts, its largest mean changes and a few items
as before -> after thumbnails (the start image and the counterfactual, each linking to the
item's own ``explanation.html``). The rest is collapsed under ``<details>``: per pair, a bar
chart of the mean standardised change of its top descriptors and a table of all of them with
their intervals and counts; the class pairs explained in both directions, merged; the index of
every item; the failures. A bar or value is drawn pale unless it rests on at least two
explanations and its confidence interval excludes 0 (`DescriptorEffect.consistent`), and the
legend says exactly that. There is no script; thumbnails are relative links into the item
folders (so the page stays small for large jobs), everything else is inline::

    paths = write_global("report/", global_explanation, results, failures)   # {"json", "html"}
"""

from __future__ import annotations

import os
from html import escape
from pathlib import Path
from typing import Callable, Sequence
from urllib.parse import quote

from cfattack.atomic import atomic_write_text
from cfattack.batch.global_explanation import DescriptorEffect, GlobalExplanation, PairExplanation
from cfattack.batch.store import FailureRecord, ResultRecord
from cfattack.reports.html import format_number
from cfattack.reports.svg import bar_chart_svg

__all__ = ["GLOBAL_FILES", "EXAMPLES_PER_PAIR", "render_global_html", "write_global"]

GLOBAL_FILES = {"json": "global.json", "html": "global.html"}

EXAMPLES_PER_PAIR = 3
"""Items shown as before -> after thumbnails in each overview row (reached ones first)."""

_CONTENT_WIDTH = 1120  # px: body max-width 1180 less its padding

_CSP = "default-src 'none'; img-src 'self' file: data:; style-src 'unsafe-inline'"

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #222;
       background: #fff; margin: 0 auto; max-width: 1180px; padding: 20px 28px 40px; line-height: 1.45; }
h1 { font-size: 1.6em; margin: 0.2em 0 0.3em; }
h2 { font-size: 1.2em; margin: 1.6em 0 0.5em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
p.note, span.note { color: #555; font-size: 0.92em; margin: 0.3em 0 0.8em; }
dl.facts { display: grid; grid-template-columns: max-content auto max-content auto; gap: 0.25em 1.2em; margin: 0; }
dl.facts dt { color: #666; }
dl.facts dd { margin: 0; font-variant-numeric: tabular-nums; }
nav { margin: 0.8em 0 0; }
nav a { margin-right: 1em; }
details { margin: 0.3em 0 0.6em; }
details > summary { cursor: pointer; padding: 0.2em 0; }
details.pair > summary { font-weight: 600; }
details.pair[open] { padding-bottom: 0.6em; border-bottom: 1px solid #eee; }
.scroll { max-width: 100%; overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.88em; margin: 0.3em 0; }
th, td { padding: 0.25em 0.65em; border-bottom: 1px solid #e6e6e6; text-align: left; vertical-align: middle; }
th { background: #f6f6f6; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.muted, .muted { color: #888; }
img.thumb { width: 64px; height: 64px; image-rendering: pixelated; image-rendering: crisp-edges;
            border: 1px solid #ddd; display: block; }
.examples { display: flex; flex-wrap: wrap; gap: 6px 14px; }
.example { display: flex; align-items: center; gap: 3px; color: #888; text-decoration: none; }
.example img { width: 48px; height: 48px; image-rendering: pixelated; border: 1px solid #ddd; display: block; }
.example img.reached { border-color: #1d6b2f; }
.eff { white-space: nowrap; margin-right: 0.7em; }
.eff.pos { color: #b2182b; } .eff.neg { color: #2166ac; }
.eff.weak { color: #999; }
.yes { color: #1d6b2f; font-weight: 600; }
.no { color: #8a5300; }
"""


def _link(folder: str, name: str) -> str:
    return quote(f"{folder}/{name}")


def _facts(pairs: list[tuple[str, str]]) -> str:
    return '<dl class="facts">' + "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in pairs) + "</dl>"


def _table(headers: Sequence[str], rows: list[str]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>\n' + "\n".join(rows) + \
        "\n</tbody></table></div>"


def _pale_rule(confidence: float) -> str:
    """The one sentence, used in every legend, for what a pale bar or grey value means."""
    return (f"pale: one explanation only, or a {confidence:.0%} interval that includes 0 "
            "(the direction is not established)")


def _interval(d: DescriptorEffect, digits: int = 2) -> str:
    if d.count < 2:
        return "n=1, no interval"
    return f"[{format_number(d.ci_low, digits, True)}, {format_number(d.ci_high, digits, True)}] n={d.count}"


def _effects_inline(pair: PairExplanation, k: int = 3) -> str:
    """The pair's k largest mean changes as coloured words; grey unless `DescriptorEffect.consistent`."""
    if not pair.descriptors:
        return '<span class="muted">none reached</span>'
    spans = []
    for d in pair.descriptors[:k]:
        sign = "pos" if d.mean > 0 else "neg" if d.mean < 0 else ""
        weak = "" if d.consistent else " weak"
        spans.append(f'<span class="eff {sign}{weak}" title="{escape(_interval(d, 3))}">{escape(d.name)} '
                     f"{format_number(d.mean, 2, True)}</span>")
    return "".join(spans)


def _heading(pair: PairExplanation) -> str:
    arrow = "\u2194" if pair.merged else "\u2192"
    return f"{pair.source} {arrow} {pair.target}"


def _pair_details(pair: PairExplanation, confidence: float, top_k: int, anchor: str) -> str:
    """One pair, collapsed: the summary line, then its chart and the table of every descriptor."""
    heading = _heading(pair)
    counts = f"{pair.explanations} reached of {pair.attempted}"
    if pair.merged:
        counts += (f": {pair.forward} {pair.source} \u2192 {pair.target}, {pair.backward} "
                   f"{pair.target} \u2192 {pair.source} with their sign flipped")
    parts = [f'<details class="pair" id="{anchor}"><summary>{escape(heading)} '
             f'<span class="note">({escape(counts)})</span></summary>']
    if not pair.descriptors:
        parts.append('<p class="note">No reached explanation: nothing to average.</p></details>')
        return "\n".join(parts)
    top = pair.descriptors[:top_k]
    level = f"{confidence:.0%}"
    parts.append('<div class="scroll">' + bar_chart_svg(
        [d.name for d in top], [d.mean for d in top],
        notes=[_interval(d) for d in top],
        muted=[not d.consistent for d in top],
        title=f"Mean standardised change, {heading}",
        axis_label=f"standard deviations; {_pale_rule(confidence)}",
        max_width=_CONTENT_WIDTH,
    ) + "</div>")
    rows = []
    for d in pair.descriptors:
        cls = "num" if d.consistent else "num muted"
        interval = (f"[{format_number(d.ci_low, 3, True)}, {format_number(d.ci_high, 3, True)}]" if d.count > 1
                    else "\u2014")
        rows.append(
            f"<tr><td>{escape(d.name)}</td><td class=\"{cls}\">{format_number(d.mean, 3, True)}</td>"
            f"<td class=\"{cls}\">{interval}</td>"
            f"<td class=\"num\">{d.count}</td><td class=\"num\">{format_number(d.mean_change, 3, True)}</td>"
            f"<td>{escape(d.unit)}</td></tr>"
        )
    parts.append(f'<p class="note">All {len(pair.descriptors)} descriptors (grey: as pale bars above):</p>'
                 + _table(["descriptor", "mean (sd)", f"{level} interval", "n", "mean change", "unit"], rows))
    parts.append("</details>")
    return "\n".join(parts)


def _examples(records: list[ResultRecord], has_start: Callable[[str], bool]) -> str:
    """Up to `EXAMPLES_PER_PAIR` items as start -> counterfactual thumbnails linking to their pages."""
    chosen = sorted(records, key=lambda r: not r.reached)[:EXAMPLES_PER_PAIR]  # stable: item order within
    links = []
    for r in chosen:
        name = escape(Path(r.image).name)
        outcome = "reached" if r.reached else "not reached"
        before = (f'<img src="{_link(r.folder, "start.png")}" alt="start image of {name}">'
                  if has_start(r.folder) else "")
        links.append(
            f'<a class="example" href="{_link(r.folder, "explanation.html")}" title="{name}: {outcome}">{before}'
            f"{'&#8594;' if before else ''}"
            f'<img class="{outcome.replace(" ", "-")}" src="{_link(r.folder, "counterfactual.png")}" '
            f'alt="counterfactual of {name} ({outcome})"></a>'
        )
    return '<div class="examples">' + "".join(links) + "</div>"


def _overview(g: GlobalExplanation, results: Sequence[ResultRecord], has_start: Callable[[str], bool]) -> str:
    by_pair: dict[tuple[str, str], list[ResultRecord]] = {}
    for r in results:
        by_pair.setdefault((r.source_class, r.target), []).append(r)
    rows = []
    for i, pair in enumerate(g.pairs):
        rows.append(
            f'<tr><td><a href="#pair-{i}">{escape(_heading(pair))}</a></td>'
            f'<td class="num">{pair.explanations} of {pair.attempted}</td><td>{_effects_inline(pair)}</td>'
            f"<td>{_examples(by_pair.get((pair.source, pair.target), []), has_start)}</td></tr>"
        )
    if not rows:
        return '<p class="note">No finished item yet.</p>'
    note = ('<p class="note">Each row: a source \u2192 target pair, how many of its explanations reached the '
            "target, its three largest mean standardised changes (red: increased, blue: decreased; grey: one "
            f"explanation only, or a {g.confidence:.0%} interval that includes 0), and up to "
            f"{EXAMPLES_PER_PAIR} items as start image \u2192 counterfactual (green frame: reached), each "
            "linking to its report. Details per pair are below.</p>")
    return note + _table(["pair", "reached", "largest changes", "examples (start \u2192 counterfactual)"], rows)


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
    return (f"<details><summary>Show all {len(rows)} items</summary>"
            + _table(["counterfactual", "image", "source \u2192 target", "outcome (steps)", "p(target)",
                      "largest change"], rows) + "</details>")


def _failures(failures: Sequence[FailureRecord]) -> str:
    if not failures:
        return '<p class="note">None.</p>'
    rows = [
        f"<tr><td>{escape(f.image)}</td><td>{escape(f.target or chr(0x2014))}</td><td>{escape(f.stage)}</td>"
        f"<td>{escape(f.error)}</td><td>{escape(f.message)}</td></tr>"
        for f in failures
    ]
    stages = ", ".join(f"{n} at {stage}" for stage in ("load", "target", "explain")
                       if (n := sum(f.stage == stage for f in failures)))
    return (f"<details><summary>Show the {len(failures)} failures ({escape(stages)})</summary>"
            + _table(["image", "target", "stage", "error", "message"], rows) + "</details>")


def render_global_html(
    g: GlobalExplanation,
    results: Sequence[ResultRecord],
    failures: Sequence[FailureRecord],
    *,
    top_k: int = 12,
    has_start: Callable[[str], bool] | None = None,
) -> str:
    """The text of ``global.html`` (see the module docstring); every string from the data is escaped.

    ``has_start(folder)`` says whether an item folder holds ``start.png`` (folders written before
    it existed do not); None assumes every folder does.
    """
    has_start = has_start or (lambda folder: True)
    title = f"Global explanation: {g.bundle} / {g.classifier}"
    facts = _facts([
        ("explanations", str(g.explanations)), ("reached (averaged)", str(g.reached)),
        ("failed items", str(len(failures))), ("pairs", str(len(g.pairs))),
        ("bootstrap", f"{g.confidence:.0%} intervals, {g.resamples} resamples, seed {g.seed}"),
        ("config hash", g.config_hash),
    ])
    # Merging adds something only where both directions have reached explanations; a pair
    # explained one way is already shown above, and repeating it would only lengthen the page.
    both = [p for p in g.merged_pairs if p.forward > 0 and p.backward > 0]
    body = [
        f"<header><h1>{escape(title)}</h1>{facts}</header>",
        '<nav><a href="#overview">overview</a><a href="#pairs">pairs in detail</a>'
        '<a href="#merged">both directions</a><a href="#items">items</a><a href="#failures">failures</a></nav>',
        '<h2 id="overview">Overview</h2>',
        _overview(g, results, has_start),
        '<h2 id="pairs">Pairs in detail</h2>',
        '<p class="note">For each pair, the mean over reached explanations of each descriptor\'s standardised '
        "change (counterfactual minus start, divided by the descriptor's spread over generator samples), "
        f"with a bootstrap confidence interval; {escape(_pale_rule(g.confidence))}. The attack always goes "
        "from source to target, so a sign reads the same way in every explanation of a pair. Open a pair "
        "to see its chart and table.</p>",
    ]
    body += [_pair_details(p, g.confidence, top_k, f"pair-{i}") for i, p in enumerate(g.pairs)]
    body.append('<h2 id="merged">Both directions merged</h2>')
    if both:
        body.append('<p class="note">Class pairs with reached explanations in both directions, in class order '
                    "A \u2194 B: B \u2192 A explanations enter with their sign flipped, so the two directions "
                    "support or contradict each other.</p>")
        body += [_pair_details(p, g.confidence, top_k, f"merged-{i}") for i, p in enumerate(both)]
    else:
        body.append('<p class="note">No class pair has reached explanations in both directions, so there is '
                    "nothing to merge; each direction is shown above.</p>")
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
    page = render_global_html(g, results, failures,  # render first: a failure writes nothing
                              has_start=lambda folder: (directory / folder / "start.png").is_file())
    paths = {key: directory / name for key, name in GLOBAL_FILES.items()}
    atomic_write_text(paths["json"], g.model_dump_json(indent=2) + "\n")
    atomic_write_text(paths["html"], page)
    return paths
