"""global.html: charts per pair, an index linking to every item, the failures; text escaped."""

from __future__ import annotations

import json

from cfattack.batch.global_explanation import GlobalExplanation, aggregate
from cfattack.batch.report import render_global_html, write_global
from tests.cfattack.batch.test_global_explanation import CLASSES, known_records, record
from tests.cfattack.batch.test_store import failure


def test_page_has_pairs_index_and_failures(tmp_path):
    records = known_records() + [record("k7", "t-shirt", "coat", {"<b>x</b>": 1.0})]
    g = aggregate(records, bundle="fashion", classifier="baseline", config_hash="h", class_names=CLASSES)
    page = render_global_html(g, records, [failure("f1", message="cannot read <img>")])
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page
    assert page.count("<svg") == len([p for p in g.pairs + g.merged_pairs if p.descriptors])
    assert 'href="k1/explanation.html"' in page and 'src="k1/counterfactual.png"' in page
    assert "coat \u2192 pullover" in page and "pullover \u2194 coat" in page
    assert "&lt;b&gt;x&lt;/b&gt;" in page and "<b>x</b>" not in page
    assert "cannot read &lt;img&gt;" in page and "Failures (1)" in page

    paths = write_global(tmp_path, g, records, [])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["global.html", "global.json"]
    assert GlobalExplanation.model_validate(json.loads(paths["json"].read_text())) == g
