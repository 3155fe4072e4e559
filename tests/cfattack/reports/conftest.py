"""A hand-built comparison of five classifiers (the default bundle's zoo size) for the page tests."""

from __future__ import annotations

import pytest

from cfattack.evaluation.compare import ClassifierSummary, Comparison, ComparisonReport
from cfattack.pipeline.explanation import ExplainConfig
from tests.cfattack.reports.test_reports import _explanation

NAMES = ["baseline", "latent-boost", "lcc-with-a-long-name", "soft-labels", "offset-l2"]


@pytest.fixture
def comparison() -> Comparison:
    rows = [
        ClassifierSummary(
            name=name, explained=19, skipped=1, flip_rate=0.95 - 0.1 * i, median_steps=23.0 + i,
            median_latent_distance=2.5 + i / 3, median_pixel_rms=0.123, realism_fd=12.3 + i, realism_floor=4.56,
            attribution_concentration=0.41, top_descriptors={"ink_area": 7, "stroke_thickness_long_name": 5,
                                                             "slant": 3},
            classifier_metrics={"accuracy": 0.9123, "silhouette": 0.2345, "knn_purity": 0.9012,
                                "mistake_severity": 1.234},
            seconds=1234.5,
        )
        for i, name in enumerate(NAMES)
    ]
    report = ComparisonReport(bundle="fashion-mnist-32", reference_embedding="baseline",
                              images=["examples/coat-1.png", "examples/trouser-1.png"],
                              targets=["pullover", "dress"], classifiers=rows, config=ExplainConfig())
    explanations = {name: [_explanation(seed=i), None] for i, name in enumerate(NAMES)}
    return Comparison(report=report, explanations=explanations)
