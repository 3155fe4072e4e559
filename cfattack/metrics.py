"""Classification and distribution metrics measured with our own classifiers.

Label metrics (numpy, no scikit-learn): `accuracy`, `macro_f1`, `confusion_matrix`.
Embedding metrics: `embed_images` runs a classifier's explicit embedding over many images;
`frechet_distance` compares two feature sets by the Fréchet distance of the Gaussians fitted to
them. Measured in *our classifier's* embedding this is not FID (which uses Inception-v3 features)
and its values are not comparable with published FIDs; compare it with the real-vs-real figure
(e.g. validation vs test images) as a floor. `class_coverage` says how a classifier spreads a set
of (e.g. generated) images over the classes and how confidently.

    feats_real = embed_images(clf, real_images)
    feats_fake = embed_images(clf, fake_images)
    fd = frechet_distance(feats_real, feats_fake)
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from cfattack.errors import InvalidInputError

__all__ = [
    "accuracy",
    "macro_f1",
    "confusion_matrix",
    "predict_probabilities",
    "embed_images",
    "frechet_distance",
    "class_coverage",
]

ArrayLike = np.ndarray | torch.Tensor | Sequence


def _labels(values: ArrayLike, name: str) -> np.ndarray:
    arr = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    if arr.ndim != 1:
        raise InvalidInputError(f"{name} must be a 1-D array of class indices, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise InvalidInputError(f"{name} must hold integer class indices, got dtype {arr.dtype}")
    if arr.size and arr.min() < 0:
        raise InvalidInputError(f"{name} holds a negative class index ({arr.min()})")
    return arr.astype(np.int64)


def _pair(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    t, p = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    if t.shape != p.shape:
        raise InvalidInputError(f"y_true and y_pred differ in length: {t.shape[0]} vs {p.shape[0]}")
    if t.size == 0:
        raise InvalidInputError("y_true and y_pred are empty")
    return t, p


def accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Share of ``y_pred`` equal to ``y_true`` (both [N] class indices)."""
    t, p = _pair(y_true, y_pred)
    return float(np.mean(t == p))


def confusion_matrix(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int | None = None) -> np.ndarray:
    """Counts [K, K] (int64): row = true class, column = predicted class.

    ``num_classes`` defaults to one more than the largest index seen.
    """
    t, p = _pair(y_true, y_pred)
    k = int(max(t.max(), p.max())) + 1 if num_classes is None else int(num_classes)
    if k <= max(t.max(), p.max()):
        raise InvalidInputError(f"num_classes={num_classes} but a class index {max(t.max(), p.max())} occurs")
    return np.bincount(t * k + p, minlength=k * k).reshape(k, k).astype(np.int64)


def macro_f1(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Unweighted mean of per-class F1 over the classes that occur in ``y_true`` or ``y_pred``.

    A class with neither a correct nor any predicted sample counts as F1 = 0 (scikit-learn's
    ``f1_score(average="macro")`` gives the same number).
    """
    t, p = _pair(y_true, y_pred)
    cm = confusion_matrix(t, p)
    present = np.union1d(t, p)
    tp = np.diag(cm)[present].astype(np.float64)
    support = cm.sum(axis=1)[present]      # true samples per class
    predicted = cm.sum(axis=0)[present]    # predicted samples per class
    # F1 = 2 TP / (2 TP + FP + FN) = 2 TP / (support + predicted); present classes have a non-zero sum.
    return float(np.mean(2 * tp / (support + predicted)))


def _batches(classifier: torch.nn.Module, images: torch.Tensor, batch: int, fn) -> torch.Tensor:
    """Apply ``fn(classifier, x)`` to ``images`` in eval mode and no-grad, batch by batch, on the model's device."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise InvalidInputError(f"images must be a [N, C, H, W] tensor, got {getattr(images, 'shape', type(images))}")
    if batch < 1:
        raise InvalidInputError(f"batch must be at least 1, got {batch}")
    param = next(classifier.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = classifier.training
    classifier.eval()
    try:
        with torch.no_grad():
            out = [fn(classifier, images[i:i + batch].to(device, torch.float32)).float().cpu()
                   for i in range(0, images.shape[0], batch)]
    finally:
        classifier.train(was_training)
    return torch.cat(out) if out else torch.empty(0)


def predict_probabilities(classifier: torch.nn.Module, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """Softmax of ``classifier(images)``: images [N, C, H, W] in [-1, 1] -> probabilities [N, K] (CPU)."""
    return _batches(classifier, images, batch, lambda m, x: torch.softmax(m(x), dim=1))


def embed_images(classifier: torch.nn.Module, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """``classifier.embed`` over images [N, C, H, W] in [-1, 1] -> float32 features [N, D] on the CPU.

    The classifier runs in eval mode (restored afterwards), without gradients, on its own device.
    """
    if not hasattr(classifier, "embed"):
        raise InvalidInputError(f"{type(classifier).__name__} has no embed() method: use a cfattack Classifier")
    return _batches(classifier, images, batch, lambda m, x: m.embed(x))


def _features(values: ArrayLike, name: str) -> np.ndarray:
    arr = values.detach().cpu().double().numpy() if isinstance(values, torch.Tensor) else np.asarray(values, np.float64)
    if arr.ndim != 2:
        raise InvalidInputError(f"{name} must be [N, D] features, got shape {arr.shape}")
    if arr.shape[0] < 2:
        raise InvalidInputError(f"{name} needs at least 2 samples to estimate a covariance, got {arr.shape[0]}")
    if not np.all(np.isfinite(arr)):
        raise InvalidInputError(f"{name} contains NaN or infinite values")
    return arr


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix; rounding-negative eigenvalues become 0."""
    eigvals, eigvecs = np.linalg.eigh((matrix + matrix.T) / 2)
    return (eigvecs * np.sqrt(np.clip(eigvals, 0, None))) @ eigvecs.T


def frechet_distance(feats_a: ArrayLike, feats_b: ArrayLike) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets [N_a, D] and [N_b, D].

        d^2 = ||mu_a - mu_b||^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^(1/2))

    (unbiased covariances; the squared distance, as FID reports it). The trace of the matrix root
    is computed as tr((A S_b A)^(1/2)) with A = S_a^(1/2): A S_b A is symmetric positive
    semi-definite, so ``eigh`` gives real eigenvalues and no complex ``sqrtm`` round-off arises,
    and singular covariances (fewer samples than dimensions, dead units) need no jitter.
    """
    a, b = _features(feats_a, "feats_a"), _features(feats_b, "feats_b")
    if a.shape[1] != b.shape[1]:
        raise InvalidInputError(f"feature sizes differ: {a.shape[1]} vs {b.shape[1]}")
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    root_a = _psd_sqrt(cov_a)
    cross = root_a @ cov_b @ root_a
    trace_root = float(np.sqrt(np.clip(np.linalg.eigvalsh((cross + cross.T) / 2), 0, None)).sum())
    d2 = float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_root)
    return max(d2, 0.0)  # rounding can leave a tiny negative for identical sets


def class_coverage(
    classifier: torch.nn.Module,
    images: torch.Tensor,
    class_names: Sequence[str] | None = None,
    threshold: float = 0.8,
    batch: int = 256,
) -> dict:
    """How ``classifier`` spreads ``images`` [N, C, H, W] over its classes, and how confidently.

    Returns a JSON-ready dict::

        {"num_samples": N, "threshold": 0.8,
         "confident_share": share of all samples whose top probability >= threshold,
         "min_class_share": smallest entry of class_share,
         "class_share": {name: share of samples predicted as this class},
         "confident_share_per_class": {name: among samples predicted as this class, the share
                                       predicted with probability >= threshold (0 if none)}}

    Classes are keyed by ``class_names`` (default: "0", "1", ...).
    """
    if not 0 < threshold <= 1:
        raise InvalidInputError(f"threshold must be in (0, 1], got {threshold}")
    probs = predict_probabilities(classifier, images, batch)
    if probs.shape[0] == 0:
        raise InvalidInputError("images is empty")
    k = probs.shape[1]
    names = [str(i) for i in range(k)] if class_names is None else [str(n) for n in class_names]
    if len(names) != k:
        raise InvalidInputError(f"{len(names)} class names for a classifier with {k} outputs")
    top, pred = probs.max(dim=1)
    confident = (top >= threshold).numpy()
    pred = pred.numpy()
    counts = np.bincount(pred, minlength=k)
    confident_counts = np.bincount(pred[confident], minlength=k)
    n = probs.shape[0]
    return {
        "num_samples": int(n),
        "threshold": float(threshold),
        "confident_share": float(confident.mean()),
        "min_class_share": float(counts.min() / n),
        "class_share": {name: float(c / n) for name, c in zip(names, counts)},
        "confident_share_per_class": {
            name: float(cc / c) if c else 0.0 for name, c, cc in zip(names, counts, confident_counts)
        },
    }
