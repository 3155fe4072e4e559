"""How good is a trained generator? Fréchet distance in our classifier's embedding and class coverage.

The Fréchet distance is measured between real test images and generated images in the
embedding of one of our classifiers (so it is not FID, and its values are comparable only with
each other). The same distance between two real splits (validation vs test) is the floor a
perfect generator would reach with that many samples, and is always reported beside it.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from cfattack.stylegan.generator import Generator
from cfattack.quality.metrics import class_coverage, embed_images, frechet_distance, predict_probabilities

__all__ = ["generate_images", "generator_quality", "sample_labels"]


def sample_labels(G: Generator, num: int, seed: int = 0) -> torch.Tensor | None:
    """The class labels [num] that `generate_images` draws for a conditional G (None if unconditional)."""
    if not G.c_dim:
        return None
    rng = torch.Generator().manual_seed(seed)
    torch.randn(num, G.z_dim, generator=rng)  # z comes first in the stream
    return torch.randint(0, G.c_dim, (num,), generator=rng)


@torch.no_grad()
def generate_images(G: Generator, num: int, seed: int = 0, truncation_psi: float = 1.0,
                    batch: int = 256, class_labels: torch.Tensor | None = None) -> torch.Tensor:
    """``num`` images [num, C, H, W] in [-1, 1] from seeded z (and labels for conditional G)."""
    rng = torch.Generator().manual_seed(seed)
    device = next(G.parameters()).device
    z_all = torch.randn(num, G.z_dim, generator=rng)  # all at once: results do not depend on `batch`
    if G.c_dim:
        labels = class_labels if class_labels is not None else sample_labels(G, num, seed)
        c_all = torch.nn.functional.one_hot(labels[:num], G.c_dim).float()
    out = []
    for start in range(0, num, batch):
        z = z_all[start:start + batch].to(device)
        c = c_all[start:start + batch].to(device) if G.c_dim else None
        out.append(G(z, c, truncation_psi=truncation_psi, noise_mode="const").clamp(-1, 1).cpu())
    return torch.cat(out)


def generator_quality(G: Generator, classifier: torch.nn.Module, real_test: torch.Tensor, real_val: torch.Tensor,
                      class_names: Sequence[str], num: int = 5000, seed: int = 0,
                      truncation_psi: float = 1.0, threshold: float = 0.8) -> dict:
    """Fréchet distance (generated vs test, and the val-vs-test floor) plus class coverage.

    Uses ``num`` generated images and at most ``num`` images of each real split. For a
    conditional G the labels are drawn uniformly, and ``label_agreement`` is the share of samples
    the classifier assigns to the class they were generated for.
    """
    fake = generate_images(G, num, seed=seed, truncation_psi=truncation_psi)
    labels = sample_labels(G, num, seed)
    agreement = {}
    if labels is not None:
        predicted = predict_probabilities(classifier, fake).argmax(dim=1)
        agreement = {"label_agreement": float((predicted == labels).float().mean())}
    test = real_test[:num]
    val = real_val[:num]
    feats_test = embed_images(classifier, test)
    fd_fake = frechet_distance(embed_images(classifier, fake), feats_test)
    fd_floor = frechet_distance(embed_images(classifier, val), feats_test)
    coverage = class_coverage(classifier, fake, class_names=class_names, threshold=threshold)
    return {
        "num_generated": int(num),
        "truncation_psi": float(truncation_psi),
        "frechet_distance_generated_vs_test": fd_fake,
        "frechet_distance_val_vs_test": fd_floor,
        "frechet_ratio": float(fd_fake / fd_floor) if fd_floor > 0 else float(np.inf),
        **{f"coverage_{k}": v for k, v in coverage.items()},
        **agreement,
    }
