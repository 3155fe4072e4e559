"""global.html: the overview first, details collapsed, merged pairs only where both directions exist,
a legend that states the rule the bars follow, thumbnails, the failures; all text escaped."""

from __future__ import annotations

import json
import re

from cfattack.batch.global_explanation import GlobalExplanation, aggregate
from cfattack.batch.report import EXAMPLES_PER_PAIR, render_global_html, write_global
from tests.cfattack.batch.test_global_explanation import CLASSES, known_records, record
from tests.cfattack.batch.test_store import failure


def _page(records=None, failures=(), **options):
    records = known_records() + [record("k7", "t-shirt", "coat", {"<b>x</b>": 1.0})] if records is None else records
    g = aggregate(records, bundle="fashion", classifier="baseline", config_hash="h", class_names=CLASSES)
    return g, records, render_global_html(g, records, list(failures), **options)


def test_page_opens_with_the_overview_and_collapses_the_rest():
    g, records, page = _page(failures=[failure("f1", message="cannot read <img>")])
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page
    order = [page.index(f'<h2 id="{anchor}">') for anchor in ("overview", "pairs", "merged", "items", "failures")]
    assert order == sorted(order)
    overview = page[order[0]:order[1]]
    assert "<details" not in overview  # nothing to open to see the overview
    for pair in g.pairs:  # one row per pair, with its counts
        assert f"{pair.source} \u2192 {pair.target}</a></td><td class=\"num\">{pair.explanations} of " \
               f"{pair.attempted}" in overview
    # Each pair's chart and table are collapsed; so are the item index and the failures.
    details = page[order[1]:]
    assert details.count('<details class="pair"') == len(g.pairs) + 1  # + pullover <-> coat, merged
    assert page.count("<svg") == len([p for p in g.pairs if p.descriptors]) + 1
    assert "Show all 7 items</summary>" in page and "Show the 1 failures (1 at load)</summary>" in page
    assert 'href="k1/explanation.html"' in page and 'src="k1/counterfactual.png"' in page
    assert "&lt;b&gt;x&lt;/b&gt;" in page and "<b>x</b>" not in page
    assert "cannot read &lt;img&gt;" in page and "Failures (1)" in page


def test_overview_shows_before_and_after_thumbnails():
    records = [record(f"k{i}", "coat", "pullover", {"ink": 1.0 + i}, reached=i % 2 == 0) for i in range(5)]
    _, _, page = _page(records)
    overview = page[page.index('id="overview"'):page.index('id="pairs"')]
    assert overview.count('class="example"') == EXAMPLES_PER_PAIR
    assert overview.count("start.png") == overview.count("counterfactual.png") == EXAMPLES_PER_PAIR
    # Reached items come first: k0, k2, k4.
    assert re.findall(r'href="(k\d)/explanation.html"', overview) == ["k0", "k2", "k4"]
    _, _, without = _page(records, has_start=lambda folder: folder != "k2")
    overview = without[without.index('id="overview"'):without.index('id="pairs"')]
    assert "k2/start.png" not in overview and "k2/counterfactual.png" in overview


def test_merged_section_lists_only_pairs_explained_both_ways():
    g, _, page = _page()
    merged = page[page.index('<h2 id="merged">'):page.index('<h2 id="items">')]
    assert "pullover \u2194 coat" in merged  # coat -> pullover and pullover -> coat both reached
    assert "trouser \u2194 dress" not in merged and "t-shirt \u2194 coat" not in merged  # one direction only
    one_way = [record("k1", "coat", "pullover", {"ink": 1.0}), record("k2", "dress", "trouser", {"ink": 1.0})]
    _, _, page = _page(one_way)
    merged = page[page.index('<h2 id="merged">'):page.index('<h2 id="items">')]
    assert "<details" not in merged and "nothing to merge" in merged


def test_legend_states_the_rule_the_bars_follow():
    _, _, page = _page()
    legend = "pale: one explanation only, or a 95% interval that includes 0"
    charts = re.findall(r"<svg .*?</svg>", page, flags=re.S)
    assert charts and all(legend in svg for svg in charts)
    # coat -> pullover: ink (n=3, interval above 0) is solid; width (interval across 0) is pale.
    coat = charts[0]
    ink, width = (re.search(rf"<g><title>{name}: .*?</g>", coat, flags=re.S).group(0) for name in ("ink", "width"))
    assert 'fill-opacity="0.35"' not in ink and 'fill-opacity="0.35"' in width
    # dress -> trouser has one explanation: pale, and its note says there is no interval (not "[+0.5, +0.5]").
    dress = next(svg for svg in charts if "dress \u2192 trouser" in svg)
    assert 'fill-opacity="0.35"' in dress and "n=1, no interval" in dress and "[+0.5, +0.5]" not in dress


def test_write_global_files(tmp_path):
    g, records, _ = _page()
    paths = write_global(tmp_path, g, records, [])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["global.html", "global.json"]
    assert GlobalExplanation.model_validate(json.loads(paths["json"].read_text())) == g
    # No item folder here, so no start.png to show: only counterfactual thumbnails.
    assert "start.png" not in paths["html"].read_text()
