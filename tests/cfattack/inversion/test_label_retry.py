"""The label retry: a reconstruction the classifier labels unlike its input is refined again until it is not."""

from __future__ import annotations

import pytest
import torch

from cfattack.bundle import load_bundle
from cfattack.config import InversionConfig
from cfattack.inversion.inverter import Inverter
from cfattack.training.data import load_fashion_mnist

pytestmark = pytest.mark.usefixtures("one_thread")

# Held-out test images (second half of the split) whose default reconstruction without the
# retry is labelled unlike the input by the baseline classifier.
MISLABELLED = [5012, 5052, 5144]


@pytest.fixture(scope="module")
def setup():
    bundle = load_bundle("default")
    test = load_fashion_mnist("test")
    return bundle, test.images[MISLABELLED].float()


def test_the_retry_restores_the_inputs_label_at_little_cost(setup):
    bundle, images = setup
    clf = bundle.classifier("baseline")
    without = Inverter(bundle.generator, bundle.encoder, clf, InversionConfig(label_retry_steps=0)).invert(images)
    assert not without.label_match.all()  # the case the retry is for
    retried = Inverter(bundle.generator, bundle.encoder, clf, InversionConfig()).invert(images)
    assert retried.label_match.all() and not any("labels the reconstruction" in " ".join(r) for r in retried.reasons)
    # Items that were already fine are untouched; the fixed ones keep their fidelity.
    fine = without.label_match
    assert torch.equal(retried.ws[fine], without.ws[fine])
    assert (retried.psnr[~fine] > without.psnr[~fine] - 1.0).all()


def test_no_classifier_or_zero_weight_means_no_retry(setup):
    bundle, images = setup
    off = Inverter(bundle.generator, bundle.encoder, bundle.classifier("baseline"),
                   InversionConfig(label_retry_steps=0)).invert(images[:1])
    zero = Inverter(bundle.generator, bundle.encoder, bundle.classifier("baseline"),
                    InversionConfig(label_weight=0.0)).invert(images[:1])
    assert torch.equal(off.ws, zero.ws)
    blind = Inverter(bundle.generator, bundle.encoder, None, InversionConfig(perceptual_weight=0.0)).invert(images[:1])
    assert blind.label_match is None
