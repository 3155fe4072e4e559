"""cfattack compare: the same images explained by several classifiers, summarised side by side."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cfattack.bundle import BundleClassifier, load_bundle
from cfattack.cli.root import cli
from cfattack.evaluation.compare import DEFAULT_TARGETS, attribution_concentration, compare_classifiers, default_targets
from cfattack.config import InversionConfig
from cfattack.errors import InvalidInputError
from cfattack.pipeline.explanation import ExplainConfig
from cfattack.reports.comparison import write_comparison
from cfattack.training.data import load_fashion_mnist

pytestmark = pytest.mark.usefixtures("one_thread")

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
FAST = ExplainConfig(inversion=InversionConfig(steps=10))


@pytest.fixture(scope="module")
def twin_bundle():
    """The default bundle with its baseline registered a second time under another name."""
    bundle = load_bundle("default")
    base = bundle.classifier()
    bundle.classifiers["twin"] = BundleClassifier(base.net, name="twin", num_classes=base.num_classes,
                                                  img_channels=base.img_channels, img_resolution=base.img_resolution,
                                                  normalization=base.normalization).eval()
    return bundle


@pytest.fixture(scope="module")
def comparison(twin_bundle):
    images = [EXAMPLES / "coat-1.png", EXAMPLES / "sneaker-2.png", EXAMPLES / "trouser-1.png",
              EXAMPLES / "bag-1.png"]
    test = load_fashion_mnist("test")
    return compare_classifiers(twin_bundle, images, config=FAST, classifiers=["baseline", "twin"],
                               real=(test.images[:2000], test.labels[:2000]))


def test_default_targets_follow_the_file_names():
    names = list(DEFAULT_TARGETS)
    assert default_targets([EXAMPLES / "coat-1.png", Path("x/ankle-boot-2.png")], names) == ["pullover", "sneaker"]
    with pytest.raises(InvalidInputError, match="no default target"):
        default_targets([Path("holiday.png")], names)


def test_the_same_classifier_twice_gives_the_same_row(comparison):
    base, twin = comparison.report.classifiers
    assert (base.name, twin.name) == ("baseline", "twin")
    same = {"seconds", "name"}
    assert base.model_dump(exclude=same) == twin.model_dump(exclude=same)
    assert base.explained + base.skipped == 4
    assert 0 < base.flip_rate <= 1
    assert base.realism_fd is not None and base.realism_floor is not None and base.realism_fd >= 0
    assert 0 < base.attribution_concentration <= 1
    assert base.classifier_metrics["accuracy"] > 0.85 and -1 <= base.classifier_metrics["silhouette"] <= 1


def test_concentration_is_the_top3_share(comparison):
    e = next(x for x in comparison.explanations["baseline"] if x is not None and x.reached)
    changes = sorted((abs(a.standardized_change) for a in e.attributions), reverse=True)
    assert attribution_concentration(e) == pytest.approx(sum(changes[:3]) / sum(changes))


def test_images_already_labelled_as_their_target_are_skipped(twin_bundle):
    result = compare_classifiers(twin_bundle, [EXAMPLES / "coat-1.png"], targets=["coat"], config=FAST,
                                 classifiers=["baseline"])
    row = result.report.classifiers[0]
    assert (row.explained, row.skipped, row.flip_rate) == (0, 1, None)
    assert result.explanations["baseline"] == [None]


def test_report_files_open_offline(comparison, tmp_path):
    paths = write_comparison(comparison, tmp_path / "cmp")
    page = paths["html"].read_text()
    assert "<script" not in page and "http://" not in page and "https://" not in page
    assert page.count("<svg") >= 5 and page.count('<figure class="classifier"') == 2
    doc = json.loads(paths["json"].read_text())
    assert [r["name"] for r in doc["classifiers"]] == ["baseline", "twin"]
    assert doc["targets"] == ["pullover", "ankle-boot", "dress", "pullover"]


def test_all_classifiers_of_the_bundle_by_default(twin_bundle):
    result = compare_classifiers(twin_bundle, [EXAMPLES / "shirt-1.png"], config=FAST)
    names = [r.name for r in result.report.classifiers]
    assert names[0] == twin_bundle.default_classifier and set(names) == set(twin_bundle.classifiers)


def test_unknown_classifier_is_one_clear_line():
    result = CliRunner().invoke(cli, ["compare", "--classifiers", "nope", "--images", "1", "--no-realism"])
    assert result.exit_code != 0
    assert "unknown classifier" in result.output and "Traceback" not in result.output


def test_cli_writes_the_report(tmp_path):
    out = tmp_path / "c"
    result = CliRunner().invoke(cli, ["compare", str(EXAMPLES / "dress-1.png"), "--inversion-steps", "5",
                                      "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "baseline" in result.output and (out / "comparison.html").exists()
