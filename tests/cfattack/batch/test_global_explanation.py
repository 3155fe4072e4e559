"""Global explanation: sign-aligned means per pair, merged pairs, bootstrap intervals, order invariance."""

from __future__ import annotations

import random

import numpy as np
import pytest

from cfattack.batch.global_explanation import aggregate, bootstrap_ci
from cfattack.batch.store import AttributionRow, ResultRecord
from cfattack.errors import InvalidInputError

CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat"]


def record(key, source, target, changes, reached=True):
    return ResultRecord(
        key=key, image=f"{key}.png", image_sha256="0" * 64, folder=key, source_class=source,
        source_index=CLASSES.index(source), source_probability=0.9, target=target, target_index=CLASSES.index(target),
        reached=reached, reason="reached" if reached else "max_steps", steps=5, target_probability=0.7,
        counterfactual_class=target, latent_distance=1.0, pixel_rms=0.1, inversion_psnr=30.0, inversion_flagged=False,
        attribution_source="predicted",
        attributions=[AttributionRow(name=n, unit="px", before=0.0, after=2 * v, change=2 * v, standardized_change=v,
                                     reliable=True) for n, v in changes.items()],
    )


def known_records():
    return [
        record("k1", "coat", "pullover", {"ink": 1.0, "width": 0.1}),
        record("k2", "coat", "pullover", {"ink": 2.0, "width": -0.1}),
        record("k3", "coat", "pullover", {"ink": 3.0, "width": 0.0}),
        record("k4", "coat", "pullover", {"ink": 100.0, "width": 100.0}, reached=False),  # not averaged
        record("k5", "pullover", "coat", {"ink": -4.0, "width": 0.3}),
        record("k6", "dress", "trouser", {"ink": 0.5}),
    ]


def test_pair_means_are_over_reached_explanations_and_ranked():
    g = aggregate(known_records(), bundle="b", classifier="c", config_hash="h", class_names=CLASSES)
    assert (g.explanations, g.reached) == (6, 5)
    assert [(p.source, p.target, p.explanations, p.attempted) for p in g.pairs] == [
        ("coat", "pullover", 3, 4), ("pullover", "coat", 1, 1), ("dress", "trouser", 1, 1)]
    coat = g.pairs[0]
    assert [d.name for d in coat.descriptors] == ["ink", "width"]
    ink, width = coat.descriptors
    assert ink.mean == pytest.approx(2.0) and ink.mean_change == pytest.approx(4.0) and ink.count == 3
    assert 1.0 <= ink.ci_low <= 2.0 <= ink.ci_high <= 3.0 and ink.consistent
    assert width.mean == pytest.approx(0.0) and not width.consistent
    single = g.pairs[1].descriptors[0]
    assert (single.mean, single.ci_low, single.ci_high, single.count) == (-4.0, -4.0, -4.0, 1)
    assert not single.consistent  # one explanation says nothing about the direction


def test_merged_pairs_flip_the_reverse_direction():
    g = aggregate(known_records(), class_names=CLASSES)
    merged = {(p.source, p.target): p for p in g.merged_pairs}
    assert set(merged) == {("pullover", "coat"), ("trouser", "dress")}  # class order: pullover (2) < coat (4)
    pc = merged[("pullover", "coat")]
    assert pc.merged and (pc.forward, pc.backward, pc.explanations, pc.attempted) == (1, 3, 4, 5)
    ink = next(d for d in pc.descriptors if d.name == "ink")
    assert ink.mean == pytest.approx((-4.0 - 1.0 - 2.0 - 3.0) / 4)  # coat -> pullover enters sign-flipped
    assert ink.consistent and ink.ci_high < 0


def test_result_does_not_depend_on_record_order_and_is_seeded():
    records = known_records()
    reference = aggregate(records, seed=3)
    shuffled = records[:]
    random.Random(0).shuffle(shuffled)
    assert aggregate(shuffled, seed=3) == reference
    assert aggregate(records, seed=4) != reference  # another seed draws other resamples


def test_bootstrap_ci_brackets_the_mean():
    rng = np.random.default_rng(0)
    values = rng.normal(1.0, 1.0, size=400)
    low, high = bootstrap_ci(values, resamples=2000, rng=np.random.default_rng(1))
    assert low < values.mean() < high
    assert high - low == pytest.approx(2 * 1.96 / 20, rel=0.15)  # 2 * z * sd / sqrt(n)
    assert bootstrap_ci([2.5], rng=np.random.default_rng(0)) == (2.5, 2.5)
    with pytest.raises(InvalidInputError):
        bootstrap_ci([], rng=np.random.default_rng(0))
    with pytest.raises(InvalidInputError):
        aggregate([], confidence=1.0)


def test_empty_input_gives_an_empty_explanation():
    g = aggregate([], bundle="b")
    assert (g.explanations, g.pairs, g.merged_pairs) == (0, [], [])
