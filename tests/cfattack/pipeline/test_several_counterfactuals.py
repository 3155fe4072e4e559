"""Several counterfactuals per input (``explain(..., k=K)``, ``--num-counterfactuals``) and their agreement."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cfattack.bundle import load_bundle
from cfattack.config import AttackConfig, InversionConfig
from cfattack.errors import InvalidInputError
from cfattack.pipeline.explainer import Explainer
from cfattack.pipeline.explanation import ExplainConfig, Explanation, agreement_of
from tests.cfattack.cli.test_cli import run_cli

pytestmark = pytest.mark.usefixtures("one_thread")

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
FAST = ExplainConfig(inversion=InversionConfig(steps=20))


@pytest.fixture(scope="module")
def bundle():
    return load_bundle("default")


@pytest.fixture(scope="module")
def three(bundle):
    # One thread, as in the tests that compare with it (module fixtures run before one_thread, and
    # CPU kernels split their sums by thread count).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return Explainer(bundle, FAST).explain(EXAMPLES / "coat-1.png", "pullover", k=3)
    finally:
        torch.set_num_threads(before)


def test_agreement_counts_shared_top_changes():
    a = agreement_of([["x", "y", "z", "w"], ["x", "y", "w"], ["y", "x", "z"]])
    assert a.counterfactuals == 3
    assert a.top1_share == pytest.approx(2 / 3)
    # pairs: {xyz}-{xyw} 2/4, {xyz}-{yxz} 3/3, {xyw}-{yxz} 2/4 -> mean 2/3
    assert a.top3_overlap == pytest.approx(2 / 3)
    assert a.consensus == ["x", "y", "z"]  # in at least half of the three top-3 sets, most frequent first
    assert agreement_of([["a"], ["a"]]).top3_overlap == 1.0


def test_k_paths_from_jittered_starts(three, bundle):
    assert len(three.alternatives) == 2 and three.agreement is not None
    assert [a.index for a in three.alternatives] == [1, 2]
    assert [a.jitter_seed for a in three.alternatives] == [1, 2]  # seed 0 + j
    assert three.agreement.counterfactuals == 3
    assert 0 <= three.agreement.top1_share <= 1 and 0 <= three.agreement.top3_overlap <= 1
    for alt, image in zip(three.alternatives, three.images.alternatives):
        assert alt.attributions and len(alt.attributions) <= 5
        assert alt.latent_distance > 0 and alt.pixel_rms > 0
        assert image.shape == three.images.counterfactual.shape
        # Another start gives another image (the jitter is not zero).
        assert not bool((image == three.images.counterfactual).all())
    # The main counterfactual is the one k=1 gives: the extra paths do not change it.
    one = Explainer(bundle, FAST).explain(EXAMPLES / "coat-1.png", "pullover")
    assert one.alternatives == [] and one.agreement is None
    assert (one.steps, one.target_probability) == (three.steps, three.target_probability)
    # Seeded: the same K paths on every run.
    again = Explainer(bundle, FAST).explain(EXAMPLES / "coat-1.png", "pullover", k=3)
    assert again.alternatives == three.alternatives


def test_alternatives_are_saved_and_read_back(three, tmp_path):
    paths = three.save(tmp_path)
    assert paths["counterfactual-1"].name == "counterfactual-1.png" and paths["counterfactual-2"].exists()
    back = Explanation.from_json((tmp_path / "explanation.json").read_text())
    assert back.alternatives == three.alternatives and back.agreement == three.agreement
    page = (tmp_path / "explanation.html").read_text()
    assert "3 counterfactuals of this input" in page and page.count('class="alternative"') == 3


def test_k_needs_a_latent_space_and_a_sane_count(bundle):
    with pytest.raises(InvalidInputError, match="latent space"):
        Explainer(bundle, ExplainConfig(attack=AttackConfig(space="pixel"))).explain(
            EXAMPLES / "coat-1.png", "pullover", k=2)
    with pytest.raises(InvalidInputError, match="1..64"):
        Explainer(bundle, FAST).explain(EXAMPLES / "coat-1.png", "pullover", k=0)


def test_cli_num_counterfactuals(tmp_path):
    result = run_cli("explain", EXAMPLES / "coat-1.png", "--target", "pullover", "--num-counterfactuals", "2",
                     "--inversion-steps", "10", "--out", tmp_path, "--quiet")
    assert result.exit_code == 0, result.output
    assert "2 counterfactuals from jittered starts:" in result.output and "  #1: " in result.output
    record = json.loads((tmp_path / "explanation.json").read_text())
    assert len(record["alternatives"]) == 1 and record["agreement"]["counterfactuals"] == 2
    assert (tmp_path / "counterfactual-1.png").exists()
