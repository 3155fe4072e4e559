"""Results in Python: a short repr, Jupyter's HTML view, matplotlib figures and pandas tables."""

from __future__ import annotations

import io
import sys

import pytest
from PIL import Image

from cfattack.batch.global_explanation import aggregate
from cfattack.errors import CfattackError, InvalidInputError, MissingDependencyError
from cfattack.pipeline.explanation import Explanation
from tests.cfattack.batch.test_global_explanation import CLASSES, known_records, record
from tests.cfattack.reports.test_reports import _explanation, _row


def test_repr_is_one_short_line():
    exp = _explanation()
    text = repr(exp)
    assert "\n" not in text and len(text) < 200
    assert text.startswith("Explanation(coat -> pullover: reached in 12 steps (p=0.62)")
    assert "ink_area +2.1" in text and "mean_tone -1.3" in text and "symmetry +0.4" in text
    assert str(exp) == text
    assert repr(Explanation.from_json(exp.to_json())) == text  # the same without images
    assert "top: none" in repr(_explanation(attributions=[]))


def test_html_view_is_compact_and_escaped():
    exp = _explanation(attributions=[_row("<b>bold</b>", 1.0), *[_row(f"d{i}", 0.5 - i / 10) for i in range(6)]])
    html = exp._repr_html_()
    assert html.count("<img") == 1 and "data:image/png;base64," in html  # the strip
    assert "<b>bold</b>" not in html and "&lt;b&gt;bold&lt;/b&gt;" in html
    assert html.count("<tr>") == 5  # the top five changes
    assert "reached</span> in 12 steps" in html and "<script" not in html
    assert len(html) < 60_000
    assert "inversion flagged" in _explanation(flagged=True)._repr_html_()
    without_images = Explanation.from_json(exp.to_json())._repr_html_()
    assert "<img" not in without_images and "d0" in without_images


def test_plot_draws_images_changes_and_the_curve():
    pytest.importorskip("matplotlib")
    exp = _explanation()
    fig = exp.plot(top_k=2)
    # original | reconstruction | counterfactual | difference, then the bars and the curve
    assert len(fig.axes) == 6
    bars, curve = fig.axes[-2], fig.axes[-1]
    assert [t.get_text() for t in bars.get_yticklabels()] == ["mean_tone", "ink_area"]
    assert list(curve.lines[0].get_ydata()) == exp.probability_curve
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=40)
    with Image.open(io.BytesIO(buffer.getvalue())) as im:
        assert im.size[0] > 100
    back = Explanation.from_json(exp.to_json()).plot()
    assert len(back.axes) == 2  # no images after JSON: the charts only
    with pytest.raises(InvalidInputError):
        exp.plot(top_k=0)


def test_to_dataframe_lists_the_ranked_changes():
    pytest.importorskip("pandas")
    exp = _explanation(measured=[_row("ink_area", -0.5, source="measured")])
    df = exp.to_dataframe()
    assert list(df.index) == [1, 2, 3] and df.index.name == "rank"
    assert list(df["name"]) == [a.name for a in exp.attributions]
    assert list(df["standardized_change"]) == [a.standardized_change for a in exp.attributions]
    assert list(df["reliable"]) == [True, True, False]
    assert list(exp.to_dataframe("measured")["source"]) == ["measured"]
    with pytest.raises(InvalidInputError):
        exp.to_dataframe("everything")


@pytest.mark.parametrize("call, module, extra", [
    (lambda e: e.plot(), "matplotlib", "plot"),
    (lambda e: e.to_dataframe(), "pandas", "table"),
])
def test_a_missing_extra_is_named(monkeypatch, call, module, extra):
    for name in list(sys.modules):
        if name == module or name.startswith(module + "."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, module, None)  # "import module" now fails as if not installed
    with pytest.raises(MissingDependencyError, match=rf"pip install 'cfattack\[{extra}\]'") as info:
        call(_explanation())
    assert isinstance(info.value, ImportError) and isinstance(info.value, CfattackError)


def test_global_plot_has_one_panel_per_reached_pair():
    pytest.importorskip("matplotlib")
    records = known_records() + [record("k9", "t-shirt", "coat", {"ink": 1.0}, reached=False)]
    g = aggregate(records, bundle="b", classifier="c", config_hash="h", class_names=CLASSES)
    fig = g.plot(top_k=1)
    reached = [p for p in g.pairs if p.descriptors]
    assert len(fig.axes) == len(reached) == 3  # t-shirt -> coat never reached: no panel
    assert fig.axes[0].get_title() == "coat \u2192 pullover (3 reached of 4)"
    assert len(g.plot(merged=True).axes) == len([p for p in g.merged_pairs if p.descriptors])
    nothing = aggregate([record("k1", "coat", "pullover", {"ink": 1.0}, reached=False)], class_names=CLASSES)
    with pytest.raises(InvalidInputError, match="nothing to plot"):
        nothing.plot()
