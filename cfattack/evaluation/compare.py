"""Explain the same images with several classifiers and compare what their explanations look like.

This is the instrument behind the classifier zoo: each member was trained with a different
latent-structuring loss, and the claim under test is that such losses make a classifier's
decisions easier to explain. For every classifier the same images are explained toward the same
targets with the same counterfactual machinery, and per classifier we report:

* flip rate, median attack steps and median latent distance (how far the latent had to move);
* realism: the Fréchet distance between the counterfactuals and real test images of their
  target classes, measured in one *reference* embedding shared by all classifiers (the bundle's
  default classifier, projected onto the top principal components of real images so that a few
  dozen samples give a usable covariance). Beside it, the same distance between two draws of real
  images: the floor;
* attribution concentration: the share of the top-3 descriptors in the sum of absolute
  standardised changes (1.0 = the explanation is about three features; 3/K = spread evenly).

    >>> report = compare_classifiers(load_bundle("default"), images=sorted(Path("examples").glob("*.png")))
    >>> write_comparison(report, "compare/")
"""

from __future__ import annotations

import os
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, Field

from cfattack.bundle import Bundle, BundleClassifier
from cfattack.classes import normalize_class_name, resolve_class
from cfattack.errors import InvalidInputError
from cfattack.pipeline.explainer import Explainer, ImageInput
from cfattack.pipeline.explanation import ExplainConfig, Explanation
from cfattack.quality.metrics import frechet_distance

__all__ = [
    "DEFAULT_TARGETS",
    "ClassifierSummary",
    "ComparisonReport",
    "Comparison",
    "compare_classifiers",
    "default_targets",
    "attribution_concentration",
    "ReferenceEmbedding",
    "classifier_metrics",
    "real_images_of_classes",
]

DEFAULT_TARGETS: dict[str, str] = {
    "t-shirt": "shirt",
    "trouser": "dress",
    "pullover": "coat",
    "dress": "coat",
    "coat": "pullover",
    "sandal": "sneaker",
    "shirt": "t-shirt",
    "sneaker": "ankle-boot",
    "bag": "pullover",
    "ankle-boot": "sneaker",
}
"""For the default bundle: each class's comparison target, the class it is most easily confused with
(bags have no close neighbour; pullover is the class their blocky silhouettes move toward)."""


def default_targets(paths: Sequence[ImageInput], class_names: Sequence[str]) -> list[str]:
    """Targets for files named by class (``coat-1.png`` -> ``pullover``), per `DEFAULT_TARGETS`.

    Raises:
        InvalidInputError: an input that is not a file named ``<class>-<n>.<ext>`` of a class
            with a default target; pass explicit targets then.
    """
    known = {normalize_class_name(k): v for k, v in DEFAULT_TARGETS.items()}
    targets = []
    for p in paths:
        if not isinstance(p, (str, os.PathLike)):
            raise InvalidInputError("default targets need image files named <class>-<n>.png; pass targets")
        stem = Path(p).stem.rsplit("-", 1)[0]
        key = normalize_class_name(stem)
        if key not in known or normalize_class_name(known[key]) not in {normalize_class_name(c) for c in class_names}:
            raise InvalidInputError(f"no default target for {Path(p).name!r} (class {stem!r}); pass targets")
        targets.append(known[key])
    return targets


def attribution_concentration(exp: Explanation, k: int = 3) -> float | None:
    """Share of the top-``k`` descriptors in the sum of |standardised change| (None: nothing ranked)."""
    changes = [abs(a.standardized_change) for a in exp.attributions]
    total = sum(changes)
    if not changes or total <= 0:
        return None
    return sum(sorted(changes, reverse=True)[:k]) / total


class ReferenceEmbedding:
    """One fixed yardstick for realism: a classifier's embedding, reduced to its top principal axes.

    Fréchet distances from 20 samples in a 128-D embedding are dominated by covariance noise;
    projecting onto the ``dims`` axes of largest variance over real images keeps the estimate
    usable and identical for every classifier compared.
    """

    def __init__(self, classifier: BundleClassifier, real: torch.Tensor, dims: int = 8,
                 fit_samples: int = 2000) -> None:
        net = classifier.net
        if not hasattr(net, "embed"):
            raise InvalidInputError(f"reference classifier {classifier.name!r} has no embedding (embed())")
        self._embed: Callable[[torch.Tensor], torch.Tensor] = lambda x: net.embed(classifier.normalize(x))
        feats = self._features(real[_subset(len(real), fit_samples)])
        self.mean = feats.mean(axis=0)
        _, _, vt = np.linalg.svd(feats - self.mean, full_matrices=False)
        self.axes = vt[:dims].T
        self.name = classifier.name

    @torch.no_grad()
    def _features(self, images: torch.Tensor) -> np.ndarray:
        out = [self._embed(images[i : i + 256]).float().cpu() for i in range(0, images.shape[0], 256)]
        return torch.cat(out).double().numpy()

    def __call__(self, images: torch.Tensor) -> np.ndarray:
        """Images [N, C, H, W] in [-1, 1] -> projected features [N, dims]."""
        return (self._features(images) - self.mean) @ self.axes


class ClassifierSummary(BaseModel):
    """One row of the comparison: how one classifier's explanations behaved."""

    name: str
    explained: int = Field(description="Explanations made (images whose label was not already the target).")
    skipped: int = Field(description="Images the classifier already labels as their target.")
    flip_rate: float | None = Field(description="Share of explanations that reached the target.")
    median_steps: float | None = Field(description="Median attack steps of the reached explanations.")
    median_latent_distance: float | None = Field(description="Median ||ws_cf - ws0|| of the reached explanations.")
    median_pixel_rms: float | None = Field(description="Median RMS pixel change of the reached explanations.")
    realism_fd: float | None = Field(description="Fréchet distance, counterfactuals vs real target-class images.")
    realism_floor: float | None = Field(description="The same distance between two draws of real images.")
    attribution_concentration: float | None = Field(description="Median top-3 share of |standardised change|.")
    top_descriptors: dict[str, int] = Field(description="How often each descriptor ranked first (reached only).")
    classifier_metrics: dict[str, float | int | None] = Field(
        default_factory=dict,
        description="On a seeded subset (2,000) of the real images given for realism: accuracy, macro-F1, "
                    "mistake severity (when a class hierarchy is known), and the embedding's silhouette, "
                    "Davies-Bouldin, kNN purity and dead units.",
    )
    seconds: float = Field(description="Wall time of this classifier's explanations.")


class ComparisonReport(BaseModel):
    """What `cfattack compare` writes as comparison.json."""

    format: str = "cfattack.comparison/1"
    bundle: str
    reference_embedding: str = Field(description="Classifier whose embedding measures realism for every row.")
    images: list[str]
    targets: list[str]
    classifiers: list[ClassifierSummary]
    config: ExplainConfig


@dataclass
class Comparison:
    """The report plus the explanations behind it (``explanations[classifier][i]`` or None if skipped)."""

    report: ComparisonReport
    explanations: dict[str, list[Explanation | None]] = field(default_factory=dict)


def _median(values: list[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def real_images_of_classes(real: tuple[torch.Tensor, torch.Tensor], classes: list[int],
                           seed: int) -> torch.Tensor:
    """One real image of each listed class (repeats allowed), drawn with a seeded generator."""
    images, labels = real
    rng = torch.Generator().manual_seed(seed)
    picks = []
    for c in classes:
        pool = (labels == c).nonzero().flatten()
        if len(pool) == 0:
            raise InvalidInputError(f"no real images of class {c} to measure realism against")
        picks.append(int(pool[torch.randint(len(pool), (1,), generator=rng)]))
    return images[picks]


def classifier_metrics(clf: BundleClassifier, images: torch.Tensor, labels: torch.Tensor,
                       class_names: Sequence[str], samples: int = 2000) -> dict[str, float | int | None]:
    """Label and embedding-structure metrics of one classifier on a seeded subset of labelled images.

    ``samples`` images (the same for every classifier) keep this to seconds on a CPU; the
    embedding metrics are left out when the network has no ``embed``.
    """
    from cfattack.classifiers.hierarchy import hierarchy_for
    from cfattack.quality.metrics import accuracy, embedding_metrics, macro_f1, mistake_severity

    rows = _subset(len(images), samples)
    x, y = images[rows], labels[rows]
    device = next(clf.parameters()).device
    net = clf.net
    logits, feats = [], []
    with torch.no_grad():
        for i in range(0, len(x), 500):
            batch = x[i:i + 500].to(device)
            if hasattr(net, "forward_with_embedding"):
                out, emb = net.forward_with_embedding(clf.normalize(batch))
                feats.append(emb.float().cpu())
            else:
                out = clf(batch)
            logits.append(out.float().cpu())
    pred = torch.cat(logits).argmax(1)
    out: dict[str, float | int | None] = {"samples": len(rows), "accuracy": accuracy(y, pred),
                                           "macro_f1": macro_f1(y, pred)}
    hierarchy = hierarchy_for(list(class_names))
    out["mistake_severity"] = (mistake_severity(y, pred, hierarchy.distance_matrix())
                               if hierarchy is not None and bool((pred != y).any()) else None)
    if feats:
        structure = embedding_metrics(torch.cat(feats), y, k=10)
        out.update({k: structure[k] for k in ("silhouette", "davies_bouldin", "knn_purity", "dead_units")})
    return out


def _subset(n: int, samples: int) -> torch.Tensor:
    """The same seeded subset of row indices for every classifier (all rows if n <= samples)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(0))[:samples].sort().values


def _summarise(name: str, exps: list[Explanation | None], reference: ReferenceEmbedding | None,
               real: tuple[torch.Tensor, torch.Tensor] | None, seconds: float) -> ClassifierSummary:
    made = [e for e in exps if e is not None]
    reached = [e for e in made if e.reached]
    fd = floor = None
    if reference is not None and real is not None and len(reached) >= 3:
        cf = torch.stack([e.images.counterfactual for e in reached])
        classes = [e.target_index for e in reached]
        a, b = real_images_of_classes(real, classes, 1), real_images_of_classes(real, classes, 2)
        fd = frechet_distance(reference(cf), reference(a))
        floor = frechet_distance(reference(b), reference(a))
    conc = [c for c in (attribution_concentration(e) for e in reached) if c is not None]
    return ClassifierSummary(
        name=name,
        explained=len(made),
        skipped=len(exps) - len(made),
        flip_rate=len(reached) / len(made) if made else None,
        median_steps=_median([e.steps for e in reached]),
        median_latent_distance=_median([e.latent_distance for e in reached if e.latent_distance is not None]),
        median_pixel_rms=_median([e.pixel_rms for e in reached]),
        realism_fd=fd,
        realism_floor=floor,
        attribution_concentration=_median(conc),
        top_descriptors=dict(Counter(e.attributions[0].name for e in reached if e.attributions).most_common()),
        seconds=round(seconds, 2),
    )


def compare_classifiers(
    bundle: Bundle,
    images: Sequence[ImageInput],
    targets: Sequence[str | int] | None = None,
    classifiers: Sequence[str] | None = None,
    config: ExplainConfig | None = None,
    real: tuple[torch.Tensor, torch.Tensor] | None = None,
    reference: str | None = None,
    on_classifier: Callable[[str], None] | None = None,
    on_stage: Callable[[str], None] | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> Comparison:
    """Explain ``images`` toward ``targets`` with each classifier and summarise (see module docstring).

    Args:
        bundle: the bundle holding the generator, encoder, descriptor model and classifiers.
        images: image files or tensors, the same for every classifier.
        targets: one per image; default: `default_targets` of the file names.
        classifiers: names in the bundle (default: all, the default classifier first).
        config: explanation settings shared by all classifiers.
        real: (images, labels) of real images for realism; None skips realism.
        reference: classifier whose embedding measures realism (default: the bundle's default).
        on_classifier: called with each classifier's name before its explanations start.
        on_stage, on_progress: passed to `Explainer.explain_many` for every classifier (stages,
            inversion steps, attack steps with the items finished), e.g. to drive a progress bar.

    Raises:
        InvalidInputError: unknown classifier or target, unreadable image, no images.
    """
    if not images:
        raise InvalidInputError("no images to compare on")
    names = list(classifiers) if classifiers else (
        [bundle.default_classifier] + [n for n in bundle.classifiers if n != bundle.default_classifier])
    names = [bundle.classifier(n).name for n in names]  # validates and canonicalises
    if targets is None:
        targets = default_targets(images, bundle.class_names)
    if len(targets) != len(images):
        raise InvalidInputError(f"{len(images)} images but {len(targets)} targets")
    target_idx = [resolve_class(t, bundle.class_names) for t in targets]
    config = config or ExplainConfig()
    # Every classifier explains the whole batch (items already labelled as their target stop at
    # step 0 and are dropped below), so each image starts from one and the same inversion,
    # computed once and reused (`Explainer` keeps it), whatever each classifier predicts.
    explainer = Explainer(bundle, config.model_copy(update={"allow_same_class": True}))
    loaded = [explainer.load(img) for img in images]
    batch = torch.stack([t for t, _ in loaded])
    ref = None
    if real is not None:
        ref = ReferenceEmbedding(bundle.classifier(reference), real[0])

    result = Comparison(report=None)  # type: ignore[arg-type]
    rows = []
    for name in names:
        if on_classifier is not None:
            on_classifier(name)
        started = time.perf_counter()
        clf = bundle.classifier(name)
        with torch.no_grad():
            labels = clf(batch.to(bundle.device)).argmax(1).cpu().tolist()
        made = explainer.explain_many(list(images), target_idx, classifier=name, on_stage=on_stage,
                                      on_progress=on_progress)
        exps: list[Explanation | None] = [e if label != t else None for e, label, t in zip(made, labels, target_idx)]
        result.explanations[name] = exps
        row = _summarise(name, exps, ref, real, time.perf_counter() - started)
        if real is not None:
            row.classifier_metrics = classifier_metrics(clf, real[0], real[1], bundle.class_names)
        rows.append(row)

    result.report = ComparisonReport(
        bundle=bundle.spec.name,
        reference_embedding=ref.name if ref is not None else "",
        images=[src or f"image {i}" for i, (_, src) in enumerate(loaded)],
        targets=[bundle.class_names[t] for t in target_idx],
        classifiers=rows,
        config=config,
    )
    return result
