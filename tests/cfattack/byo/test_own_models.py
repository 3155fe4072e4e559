"""Your own models end to end: an official-format 64 px pickle and a 96 px ImageNet-normalised classifier.

The CLI (`cfattack explain --generator --classifier`), `cfattack bundle create` with the same
files, and the Python API with a plain module, on random weights with few steps (fast on a CPU).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cfattack.bundle import load_bundle
from cfattack.bundle.custom import bundle_from_networks
from cfattack.bundle.preprocess import IMAGENET
from cfattack.config import AttackConfig, InversionConfig
from cfattack.errors import InvalidInputError
from cfattack.images import load_image
from cfattack.pipeline.explainer import Explainer
from cfattack.pipeline.explanation import ExplainConfig
from cfattack.reports.write import REPORT_FILES
from cfattack.stylegan.loading import load_generator
from tests.cfattack.byo.models import (
    CLASSIFIER_SIZE,
    cat_dog_net,
    write_export_classifier,
    write_official_generator,
    write_torchscript_classifier,
)
from tests.cfattack.cli.test_cli import assert_one_line_failure, run_cli

FAST = ("--steps", "4", "--inversion-steps", "2", "--quiet", "--threads", "1")
SHAPE_DESCRIPTORS = {"perimeter", "width", "height", "ink_area", "centroid_x", "centroid_y"}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """g_T.pkl, g_R.pkl (official format), c.pt (TorchScript), c.pt2 (torch.export), and x.png that the
    classifier labels 'cat' through the 64 -> 96 px ImageNet preprocessing."""
    root = tmp_path_factory.mktemp("own")
    paths = {"T": write_official_generator(root / "g_T.pkl", "T"), "R": write_official_generator(root / "g_R.pkl", "R"),
             "ts": write_torchscript_classifier(root / "c.pt"),
             "ts_named": write_torchscript_classifier(root / "named.pt", ["cat", "dog"]),
             "pt2": write_export_classifier(root / "c.pt2", ["cat", "dog"])}
    torch.save(cat_dog_net().state_dict(), root / "state.pt")
    paths["state"] = root / "state.pt"
    bundle = bundle_from_networks(load_generator(paths["T"]), cat_dog_net(), ["cat", "dog"],
                                  input_size=CLASSIFIER_SIZE, normalization=IMAGENET)
    for seed in range(50):
        pixels = (np.random.RandomState(seed).rand(80, 80, 3) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(root / "x.png")
        with torch.no_grad():
            label = bundle.classifier()(load_image(root / "x.png", 3, 64)[None]).argmax().item()
        if label == 0:
            break
    else:
        pytest.fail("no noise image the random classifier calls 'cat'")
    paths["x"] = root / "x.png"
    return paths


def _check_report(out: Path) -> dict:
    for name in REPORT_FILES.values():
        assert (out / name).is_file(), name
    report = json.loads((out / "explanation.json").read_text())
    assert report["source_class"] == "cat" and report["target"] == "dog"
    assert report["attribution_source"] == "measured"
    names = {a["name"] for a in report["attributions"]}
    assert names and not names & SHAPE_DESCRIPTORS, names  # photos: no shape descriptors
    for a in report["attributions"]:  # honest units: changes divided by the generator's spread, never by 1
        sd = a["standardized_change"]
        assert math.isfinite(sd) and abs(sd) < 20, a
        if a["change"] != 0:
            assert sd != pytest.approx(a["change"]) and sd * a["change"] > 0, a
    return report


@pytest.mark.parametrize("config", ["T", "R"])
def test_explain_official_pickle_with_torchscript(files, tmp_path, config):
    out = tmp_path / "report"
    result = run_cli("explain", files["x"], "--target", "dog", "--generator", files[config], "--classifier",
                     files["ts"], "--classes", "cat,dog", "--classifier-size", CLASSIFIER_SIZE, "--normalize",
                     "imagenet", "--trust-code", "--out", out, *FAST)
    assert result.exit_code == 0, result.output + result.stderr
    assert "cat (p=" in result.output and "-> dog" in result.output
    _check_report(out)


def test_explain_export_program_names_its_classes(files, tmp_path):
    out = tmp_path / "report"
    result = run_cli("explain", files["x"], "--target", "dog", "--generator", files["T"], "--classifier",
                     files["pt2"], "--classifier-size", CLASSIFIER_SIZE, "--normalize", "imagenet", "--trust-code",
                     "--out", out, *FAST)
    assert result.exit_code == 0, result.output + result.stderr
    _check_report(out)


def test_explain_factory_and_state_dict(files, tmp_path):
    out = tmp_path / "report"
    result = run_cli("explain", files["x"], "--target", "dog", "--generator", files["T"], "--classifier",
                     "tests.cfattack.byo.models:cat_dog_net", "--classifier-weights", files["state"],
                     "--classes", "cat,dog", "--classifier-size", CLASSIFIER_SIZE, "--normalize", "imagenet",
                     "--trust-code", "--out", out, *FAST)
    assert result.exit_code == 0, result.output + result.stderr
    _check_report(out)


def test_bad_own_model_input_fails_in_one_line(files, tmp_path, monkeypatch):
    base = ("explain", files["x"], "--generator", files["T"], "--out", tmp_path / "r", *FAST)
    # An unknown target is refused before any network loads: the generator is never read.
    import cfattack.stylegan.loading as loading

    monkeypatch.setattr(loading, "load_generator", lambda *a, **k: pytest.fail("generator loaded"))
    assert_one_line_failure(run_cli(*base, "--target", "wolf", "--classifier", files["ts"], "--classes", "cat,dog",
                                    "--trust-code"), "unknown class 'wolf'")
    assert_one_line_failure(run_cli(*base, "--target", "wolf", "--classifier", files["ts_named"], "--trust-code"),
                            "unknown class 'wolf'")  # names read from the TorchScript file, nothing run
    assert_one_line_failure(run_cli(*base, "--target", "dog", "--classifier", files["ts"]), "targets are indices")
    assert_one_line_failure(run_cli(*base, "--target", "dog", "--classifier", files["ts"], "--classes", "cat,dog"),
                            "--trust-code")
    assert_one_line_failure(run_cli(*base, "--target", "dog", "--classifier", files["pt2"]), "--trust-code")
    assert_one_line_failure(run_cli(*base, "--target", "dog", "--classifier", files["ts"], "--normalize", "bogus"),
                            "--normalize")
    assert_one_line_failure(run_cli("explain", files["x"], "--target", "dog", "--classes", "cat,dog"),
                            "only apply with --generator")
    monkeypatch.undo()
    # Without --classifier-size the 96 px network cannot run on 64 px images: one line with the hint.
    assert_one_line_failure(run_cli(*base, "--target", "dog", "--classifier", files["ts"], "--classes", "cat,dog",
                                    "--trust-code"), "--classifier-size")


def test_bundle_create_saves_the_same_combination(files, tmp_path):
    out = tmp_path / "mine"
    made = run_cli("bundle", "create", out, "--generator", files["R"], "--classifier", f"resnet={files['ts']}",
                   "--classes", "cat,dog", "--classifier-size", CLASSIFIER_SIZE, "--normalize", "imagenet",
                   "--name", "mine", "--trust-code", "--threads", "1")
    assert made.exit_code == 0, made.output + made.stderr
    bundle = load_bundle(out, trust_code=True)
    clf = bundle.spec.classifiers["resnet"]
    assert (clf.kind, clf.input_size, clf.input_normalization) == ("torchscript", CLASSIFIER_SIZE, IMAGENET)
    assert bundle.spec.image.kind == "photos" and bundle.class_names == ("cat", "dog")
    result = run_cli("explain", files["x"], "--target", "dog", "--bundle", out, "--trust-code",
                     "--out", tmp_path / "report", *FAST)
    assert result.exit_code == 0, result.output + result.stderr
    _check_report(tmp_path / "report")
    # A failure leaves no folder behind (here: the 96 px network on 64 px images, caught by the final load).
    failed = run_cli("bundle", "create", tmp_path / "broken", "--generator", files["R"], "--classifier",
                     f"resnet={files['ts']}", "--classes", "cat,dog", "--name", "broken", "--trust-code")
    assert_one_line_failure(failed, "fails on a dummy batch")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "report"]


def test_python_api_with_a_plain_module(files):
    G = load_generator(files["R"])
    config = ExplainConfig(attack=AttackConfig(steps=4), spread_samples=8,
                           inversion=InversionConfig(steps=2, search_starts=4, search_w_steps=2))
    explainer = Explainer(generator=G, classifier=cat_dog_net(), class_names=["cat", "dog"], config=config,
                          input_size=CLASSIFIER_SIZE, normalization=IMAGENET)
    assert explainer.bundle.spec.classifiers["classifier"].input_size == CLASSIFIER_SIZE
    exp = explainer.explain(files["x"], target="dog")
    assert (exp.source_class, exp.target) == ("cat", "dog")
    assert exp.attributions and not {a.name for a in exp.attributions} & SHAPE_DESCRIPTORS
    assert all(math.isfinite(a.standardized_change) and abs(a.standardized_change) < 20 for a in exp.attributions)

    # Your own preprocessing as a callable, and a plain function as the classifier.
    net = cat_dog_net()

    def preprocess(images: torch.Tensor) -> torch.Tensor:
        resized = torch.nn.functional.interpolate(images, size=CLASSIFIER_SIZE, mode="bilinear", antialias=True)
        mean = torch.tensor(IMAGENET.mean).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET.std).view(1, 3, 1, 1)
        return ((resized + 1) / 2 - mean) / std

    same = Explainer(generator=G, classifier=lambda x: net(x), class_names=["cat", "dog"], config=config,
                     preprocess=preprocess)
    x = load_image(files["x"], 3, 64)[None]
    with torch.no_grad():
        torch.testing.assert_close(same.bundle.classifier()(x), explainer.bundle.classifier()(x), rtol=1e-4, atol=1e-5)
    # Without names the classes are indices.
    assert Explainer(generator=G, classifier=net, preprocess=preprocess).bundle.class_names == ("0", "1")

    with pytest.raises(InvalidInputError, match="3 class names"):
        Explainer(generator=G, classifier=net, class_names=["cat", "dog", "wild"], preprocess=preprocess)
    with pytest.raises(InvalidInputError, match="both generator= and classifier="):
        Explainer(generator=G)
    with pytest.raises(InvalidInputError, match="not both"):
        Explainer(generator=G, classifier=net, preprocess=preprocess, input_size=96)
    with pytest.raises(InvalidInputError, match="unknown keyword"):
        Explainer(generator=G, classifier=net, class_name=["cat", "dog"])


def test_batch_takes_the_same_flags(files, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    (images / "x.png").write_bytes(files["x"].read_bytes())
    job = tmp_path / "job"
    result = run_cli("batch", images, "--target", "dog", "--generator", files["T"], "--classifier", files["ts"],
                     "--classes", "cat,dog", "--classifier-size", CLASSIFIER_SIZE, "--normalize", "imagenet",
                     "--trust-code", "--out", job, *FAST)
    assert result.exit_code == 0, result.output + result.stderr
    rows = [json.loads(line) for line in (job / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["target"] == "dog"
    assert_one_line_failure(run_cli("batch", images, "--target", "wolf", "--generator", files["T"], "--classifier",
                                    files["ts"], "--classes", "cat,dog", "--out", job, *FAST), "unknown class 'wolf'")


def test_compare_takes_the_same_flags(files, tmp_path):
    out = tmp_path / "compare"
    result = run_cli("compare", files["x"], "--targets", "dog", "--generator", files["T"], "--classifier", files["ts"],
                     "--classes", "cat,dog", "--classifier-size", CLASSIFIER_SIZE, "--normalize", "imagenet",
                     "--trust-code", "--no-realism", "--out", out, *FAST)
    assert result.exit_code == 0, result.output + result.stderr
    report = json.loads((out / "comparison.json").read_text())
    assert "classifier" in json.dumps(report)
    assert_one_line_failure(run_cli("compare", files["x"], "--targets", "wolf", "--generator", files["T"],
                                    "--classifier", files["ts"], "--classes", "cat,dog", *FAST), "unknown class 'wolf'")
