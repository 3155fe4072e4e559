"""Classifiers with an explicit embedding: CNN or MLP backbones, linear or OffsetL2 heads, losses, checkpoints.

    from cfattack.classifiers import build_classifier, load_classifier_checkpoint
    clf = build_classifier(10, head="offset_l2")      # images [N, 1, 32, 32] in [-1, 1] -> logits [N, 10]
    clf, meta = load_classifier_checkpoint("cfattack/assets/default/classifiers/baseline.pt")

Training losses (ce, latent_boost, lcc, semantic) are in `cfattack.classifiers.losses`, the
class hierarchies they and the mistake-severity metric use in `cfattack.classifiers.hierarchy`.
Importing this package loads no weights.
"""

from cfattack.classifiers.backbone import FACTORY_NAME, Backbone, Classifier, MLPBackbone, build_classifier
from cfattack.classifiers.checkpoint import (
    CLASSIFIER_FORMAT,
    load_classifier_checkpoint,
    read_classifier_checkpoint,
    save_classifier_checkpoint,
)
from cfattack.classifiers.heads import HEADS, LinearHead, OffsetL2Head

__all__ = [
    "Backbone",
    "MLPBackbone",
    "Classifier",
    "LinearHead",
    "OffsetL2Head",
    "HEADS",
    "build_classifier",
    "save_classifier_checkpoint",
    "load_classifier_checkpoint",
    "read_classifier_checkpoint",
    "CLASSIFIER_FORMAT",
    "FACTORY_NAME",
]
