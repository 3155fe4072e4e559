"""Classification and distribution metrics measured with our own classifiers.

Label metrics (numpy, no scikit-learn): `accuracy`, `macro_f1`, `confusion_matrix`, and
`mistake_severity` (mean hierarchical distance of the errors, for a class hierarchy such as
`cfattack.classifiers.hierarchy.FASHION_MNIST_HIERARCHY`).
Latent-space structure of an embedding [N, D] with labels [N]: `silhouette` and `davies_bouldin`
(scikit-learn, the optional extra ``cfattack[zoo]``), `knn_purity`, `dead_units`, and
`embedding_metrics` for all of them at once.
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
    "mistake_severity",
    "silhouette",
    "davies_bouldin",
    "knn_purity",
    "dead_units",
    "embedding_metrics",
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


# -- hierarchy-aware errors -------------------------------------------------------------------------


def mistake_severity(y_true: ArrayLike, y_pred: ArrayLike, distances: ArrayLike) -> float:
    """Mean hierarchical distance d[y_true, y_pred] over the misclassified samples (0.0 if none).

    ``distances`` [K, K] holds the class distances, e.g. lowest-common-ancestor heights from
    `cfattack.classifiers.hierarchy.ClassHierarchy.distance_matrix`. Lower is better: the errors
    are between closer classes. Only errors count, so it complements (not replaces) accuracy.
    """
    t, p = _pair(y_true, y_pred)
    d = np.asarray(distances, dtype=np.float64)
    if d.ndim != 2 or d.shape[0] != d.shape[1]:
        raise InvalidInputError(f"distances must be a square [K, K] matrix, got shape {d.shape}")
    if max(t.max(), p.max()) >= d.shape[0]:
        raise InvalidInputError(f"a class index {max(t.max(), p.max())} has no row in the "
                                f"{d.shape[0]}x{d.shape[0]} distances")
    wrong = t != p
    return float(d[t[wrong], p[wrong]].mean()) if wrong.any() else 0.0


# -- embedding structure ----------------------------------------------------------------------------


def _embedding_and_labels(
    embeddings: ArrayLike, labels: ArrayLike, min_classes: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    x = embeddings.detach().cpu().double().numpy() if isinstance(embeddings, torch.Tensor) \
        else np.asarray(embeddings, np.float64)
    if x.ndim != 2:
        raise InvalidInputError(f"embeddings must be [N, D], got shape {x.shape}")
    y = _labels(labels, "labels")
    if y.shape[0] != x.shape[0]:
        raise InvalidInputError(f"{x.shape[0]} embeddings but {y.shape[0]} labels")
    if not np.all(np.isfinite(x)):
        raise InvalidInputError("embeddings contain NaN or infinite values")
    n_classes = len(np.unique(y))
    if n_classes < min_classes or n_classes >= x.shape[0]:
        raise InvalidInputError(f"needs between {min_classes} and N - 1 = {x.shape[0] - 1} distinct labels, "
                                f"got {n_classes}")
    return x, y


def _sklearn_metrics():
    try:
        from sklearn import metrics as skm
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError("silhouette and Davies-Bouldin need scikit-learn: "
                                  "pip install 'cfattack[zoo]'") from exc
    return skm


def silhouette(embeddings: ArrayLike, labels: ArrayLike) -> float:
    """Mean silhouette coefficient of the label clusters in embeddings [N, D] (Euclidean).

    s(i) = (b_i - a_i) / max(a_i, b_i), a_i the mean distance to the other samples of its class,
    b_i the smallest mean distance to another class. In [-1, 1]; higher = tighter, better
    separated classes. O(N^2) time (scikit-learn's chunked implementation).
    """
    x, y = _embedding_and_labels(embeddings, labels, min_classes=2)
    return float(_sklearn_metrics().silhouette_score(x, y, metric="euclidean"))


def davies_bouldin(embeddings: ArrayLike, labels: ArrayLike) -> float:
    """Davies-Bouldin index of the label clusters in embeddings [N, D]; lower is better (>= 0).

    DB = mean_i max_{j != i} (s_i + s_j) / ||c_i - c_j||, with c_i the class centroid and s_i
    the mean distance of its samples to it.
    """
    x, y = _embedding_and_labels(embeddings, labels, min_classes=2)
    return float(_sklearn_metrics().davies_bouldin_score(x, y))


def knn_purity(embeddings: ArrayLike, labels: ArrayLike, k: int = 10, chunk: int = 1024) -> float:
    """Mean share of each sample's k nearest other samples (Euclidean) that share its label.

    1.0 when every neighbourhood is pure; about sum_c p_c^2 for labels unrelated to the embedding.
    """
    x, y = _embedding_and_labels(embeddings, labels)
    n = x.shape[0]
    if not 1 <= k < n:
        raise InvalidInputError(f"k must be in [1, {n - 1}] for {n} samples, got {k}")
    xt = torch.from_numpy(x)
    sq = xt.square().sum(dim=1)
    yt = torch.from_numpy(y)
    same = 0
    for start in range(0, n, chunk):
        block = xt[start:start + chunk]
        d = sq[start:start + chunk, None] + sq[None, :] - 2 * block @ xt.T
        rows = torch.arange(block.shape[0])
        d[rows, rows + start] = float("inf")
        nearest = d.topk(k, dim=1, largest=False).indices
        same += int((yt[nearest] == yt[start:start + chunk, None]).sum())
    return same / (n * k)


def dead_units(embeddings: ArrayLike, atol: float = 0.0) -> int:
    """Number of embedding units [N, D] -> D columns that never exceed ``atol`` in absolute value.

    A ReLU unit that is zero for every input of a data set is "dead": it carries no
    information and receives no gradient (Oursland, arXiv 2502.02103, counts them).
    """
    x = embeddings.detach().cpu().double().numpy() if isinstance(embeddings, torch.Tensor) \
        else np.asarray(embeddings, np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise InvalidInputError(f"embeddings must be a non-empty [N, D] array, got shape {x.shape}")
    return int(np.sum(np.all(np.abs(x) <= atol, axis=0)))


def embedding_metrics(embeddings: ArrayLike, labels: ArrayLike, k: int = 10) -> dict:
    """All structure metrics of embeddings [N, D] with labels [N] as a JSON-ready dict.

    ``{"silhouette", "davies_bouldin", "knn_purity", "knn_k", "dead_units", "embedding_dim"}``;
    silhouette and Davies-Bouldin are None when scikit-learn is missing.
    """
    try:
        sil, db = silhouette(embeddings, labels), davies_bouldin(embeddings, labels)
    except ModuleNotFoundError:
        sil = db = None
    return {"silhouette": sil, "davies_bouldin": db, "knn_purity": knn_purity(embeddings, labels, k=k),
            "knn_k": k, "dead_units": dead_units(embeddings), "embedding_dim": int(np.shape(embeddings)[1])}
