"""The judges of an evaluation: classifiers that label counterfactuals but never guide an attack.

A judge is either another classifier of the bundle (not the explained one) or an extra
classifier trained only for evaluation. Extra judges live in a bundle's ``judges/`` folder
(cfattack classifier checkpoints, ``*.pt``); ``bundle.json`` does not list them, so nothing
that explains can reach them. The default bundle ships one (``judges/cnn16.pt``: a narrower CNN,
another seed and recipe; docs/default-bundle.md says how it was trained).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from cfattack.bundle.classifier import BundleClassifier
from cfattack.bundle.loader import Bundle
from cfattack.errors import InvalidInputError

__all__ = ["JUDGES_FOLDER", "extra_judge_files", "load_judges"]

JUDGES_FOLDER = "judges"


def extra_judge_files(bundle: Bundle) -> list[Path]:
    """The checkpoints in the bundle's ``judges/`` folder (sorted; empty if there is none)."""
    folder = Path(bundle.root) / JUDGES_FOLDER
    return sorted(p for p in folder.glob("*.pt") if p.is_file()) if folder.is_dir() else []


def _load_extra(bundle: Bundle, path: Path) -> BundleClassifier:
    from cfattack.classifiers.checkpoint import load_classifier_checkpoint

    net, meta = load_classifier_checkpoint(path, device=bundle.device)
    names = meta.get("class_names") if isinstance(meta, dict) else None
    if names is not None and len(names) != len(bundle.class_names):
        raise InvalidInputError(f"judge {path}: has {len(names)} classes, the bundle {len(bundle.class_names)}")
    spec = bundle.spec.image
    return BundleClassifier(net, name=f"judge:{path.stem}", num_classes=len(bundle.class_names),
                            img_channels=spec.channels, img_resolution=spec.resolution).eval()


def load_judges(bundle: Bundle, explained: str, extra: Sequence[str | os.PathLike] | None = None,
                include_bundle_classifiers: bool = True) -> dict[str, BundleClassifier]:
    """Judges for explanations of ``explained``: the bundle's other classifiers plus extra judges.

    Args:
        extra: checkpoint files; None = the bundle's ``judges/`` folder.
        include_bundle_classifiers: also let the bundle's other classifiers judge.
    """
    judges: dict[str, BundleClassifier] = {}
    if include_bundle_classifiers:
        for name, clf in bundle.classifiers.items():
            if name != explained:
                judges[name] = clf
    files = extra_judge_files(bundle) if extra is None else [Path(p) for p in extra]
    for path in files:
        judge = _load_extra(bundle, Path(path))
        judges[judge.name] = judge
    if not judges:
        raise InvalidInputError(f"no judges for classifier {explained!r}: the bundle has no other classifier "
                                "and no judges/ folder; pass --judge FILE")
    return judges
