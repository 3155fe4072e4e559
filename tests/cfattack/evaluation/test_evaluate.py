"""cfattack evaluate: explanations measured by judges the attack never saw, on held-out images."""

from __future__ import annotations

import json

import pytest
import torch

from cfattack.bundle import load_bundle
from cfattack.config import AttackConfig, InversionConfig
from cfattack.errors import InvalidInputError
from cfattack.evaluation.evaluate import (
    METHODS,
    EvaluationImages,
    evaluate_explanations,
    method_config,
    near_targets,
    quantize_8bit,
)
from cfattack.evaluation.judges import extra_judge_files, load_judges
from cfattack.pipeline.explanation import ExplainConfig
from cfattack.images import load_image, save_image
from cfattack.training.data import load_fashion_mnist
from tests.cfattack.cli.test_cli import assert_one_line_failure, run_cli

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {
    "w+": ExplainConfig(inversion=InversionConfig(steps=5), attack=AttackConfig(steps=40)),
    "pixel": ExplainConfig(attack=AttackConfig(space="pixel", steps=40)),
}


@pytest.fixture(scope="module")
def bundle():
    return load_bundle("default")


@pytest.fixture(scope="module")
def held_out():
    test = load_fashion_mnist("test")
    half = len(test) // 2
    return EvaluationImages(test.images[half:half + 4], test.images[:half], test.labels[:half], "test, second half")


def test_quantize_8bit_is_what_a_saved_png_reads_back_as(tmp_path):
    x = torch.rand(1, 8, 8) * 2 - 1
    path = save_image(x, tmp_path / "x.png")
    torch.testing.assert_close(quantize_8bit(x), load_image(path, channels=1, size=8), atol=1e-6, rtol=0)


def test_near_target_is_the_second_ranked_class():
    logits = torch.tensor([[0.0, 3.0, 2.0], [5.0, 1.0, 4.0]])
    assert near_targets(lambda x: x, logits) == [2, 2]


def test_judges_never_include_the_explained_classifier(bundle):
    judges = load_judges(bundle, "baseline")
    assert "baseline" not in judges and set(bundle.classifiers) - {"baseline"} <= set(judges)
    assert [f"judge:{p.stem}" for p in extra_judge_files(bundle)] == [j for j in judges if j.startswith("judge:")]
    with pytest.raises(InvalidInputError, match="cannot also be a judge"):
        evaluate_explanations(bundle, EvaluationImages(torch.zeros(1, 1, 32, 32), torch.zeros(1, 1, 32, 32),
                                                       torch.zeros(1, dtype=torch.long), "x"),
                              judges={"baseline": bundle.classifier()}, realism_judge="baseline")


def test_methods_keep_the_papers_setting_beside_the_defaults():
    paper = method_config("paper").attack
    assert (paper.objective, paper.threshold, paper.lr, paper.space) == ("probability", 0.5, 0.01, "w+")
    assert (paper.class_search_steps, paper.shift_search_px, paper.robust_shift_px, paper.stop_on_saved) == (0, 0, 0,
                                                                                                          False)
    assert not method_config("paper").batch_invariant and method_config("w+") == ExplainConfig()
    assert method_config("w").attack.space == "w" and method_config("w").inversion.latent == "w"
    assert method_config("pixel").attack.space == "pixel"
    assert set(METHODS) == {"w+", "w", "pixel", "paper"}
    with pytest.raises(InvalidInputError, match="unknown method"):
        method_config("vae")


@pytest.mark.slow
def test_evaluation_measures_every_figure_on_real_held_out_images(bundle, held_out):
    judges = load_judges(bundle, "baseline", extra=[])
    report = evaluate_explanations(bundle, held_out, judges=judges, realism_judge="offset-l2", methods=["w+", "pixel"],
                                   stability_methods=["w+"], configs=TINY, resamples=50, batch_size=4)
    assert report.images == 4 and report.judges == list(judges) and "baseline" not in report.judges
    assert report.realism_floor.value > 0 and report.generator_fd.value > 0
    for row in report.methods:
        assert 0 <= row.validity.value <= 1 and 0 <= row.independent_validity.value <= 1
        assert row.validity.low <= row.validity.value <= row.validity.high
        assert set(row.judge_target_share) == set(judges)
        assert row.realism_fd.value > 0 and row.pixel_l1_from_input > 0 and row.seconds_per_explanation > 0
    w_plus, pixel = report.methods
    assert w_plus.latent_distance is not None and pixel.latent_distance is None
    stability = w_plus.stability
    assert stability is not None and stability.items == 4
    # Each item is computed on its own (ExplainConfig.batch_invariant): alone, in a batch and
    # through the batch runner give the same answer.
    assert stability.same_top3_share.value == 1.0 and stability.steps_spread_median == 0
    assert stability.same_steps_share == 1.0
    assert pixel.stability is None
    json.loads(report.model_dump_json())


@pytest.mark.slow
def test_cli_writes_json_and_html_and_a_table(tmp_path):
    out = tmp_path / "ev"
    result = run_cli("evaluate", "--images", "2", "--methods", "pixel", "--no-stability", "--resamples", "20",
                     "--out", out)
    assert result.exit_code == 0, result.output
    data = json.loads((out / "evaluation.json").read_text())
    assert data["format"] == "cfattack.evaluation/1" and data["methods"][0]["method"] == "pixel"
    assert "<table>" in (out / "evaluation.html").read_text()
    assert "pixel" in result.output and "independent" in result.output


def test_cli_refuses_unknown_methods_in_one_line():
    assert_one_line_failure(run_cli("evaluate", "--methods", "vae"), "unknown vae")


def test_a_first_move_that_passes_is_a_sound_start_and_a_start_past_the_threshold_is_not():
    from cfattack.evaluation.evaluate import _sound_start

    class Item:
        def __init__(self, **fields):
            base = dict(start_class="coat", source_class="coat", steps=0, class_step=None, shift_px=None,
                        reason="reached")
            self.__dict__.update({**base, **fields})

    assert _sound_start(Item(class_step=0.375))  # the class step alone carried it past: a counterfactual
    assert _sound_start(Item(shift_px=(1.5, 0.0)))
    assert _sound_start(Item(steps=12))
    assert not _sound_start(Item())  # nothing moved, yet past the threshold: the reconstruction already was
    assert not _sound_start(Item(steps=3, reason="start_past_threshold"))
    assert not _sound_start(Item(steps=12, start_class="pullover"))  # started from another class
