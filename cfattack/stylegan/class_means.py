"""Where each class lives in W: the mean mapped latent of every class.

The difference of two class means is the generator's own idea of what turns one class into
the other. Added to an inverted image's ws, it changes the class and keeps much of the
image's identity; the attack uses it as a first move (`cfattack.attack.class_search`).

Two sources. A class-conditional generator whose class input means what the classifier's
classes mean (checked: its samples of class k are labelled k) gives the means directly, from
its class input, learnt on real labels. Otherwise the classifier labels generator samples and
each class's mean is that of the latents it labels so::

    means = class_mean_latents(G, classifier=clf, num_classes=10)   # [10, w_dim], NaN rows = unknown
"""

from __future__ import annotations

from typing import Callable

import torch

__all__ = ["class_input_matches", "class_mean_latents", "conditional_class_means", "labelled_class_means",
           "labelled_samples", "mapped_latent_std"]

_CHUNK = 256  # mapped latents per batch
_SYNTHESIS_PIXELS = 1 << 21  # output pixels per synthesis batch: 256 images at 64 px, 2 at 1024 px
Classifier = Callable[[torch.Tensor], torch.Tensor]


def _synthesis_chunk(G: torch.nn.Module) -> int:
    """Images per synthesis batch: bounded by output pixels, so a 1024 px generator is not run 256 at a time."""
    return max(1, min(_CHUNK, _SYNTHESIS_PIXELS // int(G.img_resolution) ** 2))


def _device(G: torch.nn.Module) -> torch.device:
    return next(G.parameters()).device


def _z(G: torch.nn.Module, samples: int, seed: int) -> tuple[torch.Tensor, torch.Generator]:
    gen = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randn(samples, G.z_dim, generator=gen).to(_device(G)), gen


def _one_hot(labels: torch.Tensor, c_dim: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(labels, c_dim).float()


def _labels(logits: torch.Tensor) -> torch.Tensor:
    return logits.argmax(1) if logits.shape[1] > 1 else (logits[:, 0] > 0).long()


@torch.no_grad()
def conditional_class_means(G: torch.nn.Module, samples: int = 2048, seed: int = 0,
                            truncation_psi: float = 1.0) -> torch.Tensor:
    """[c_dim, w_dim]: the mean of ``mapping(z, c)`` over ``samples`` seeded draws of z, per class input c."""
    z, _ = _z(G, samples, seed)
    means = []
    for k in range(G.c_dim):
        total = torch.zeros(G.w_dim, dtype=torch.float64, device=z.device)
        for i in range(0, samples, _CHUNK):
            c = _one_hot(torch.full((len(z[i:i + _CHUNK]),), k, device=z.device), G.c_dim)
            total += G.mapping(z[i:i + _CHUNK], c, truncation_psi=truncation_psi)[:, 0].double().sum(0)
        means.append(total / samples)
    return torch.stack(means).float()


@torch.no_grad()
def labelled_class_means(G: torch.nn.Module, classifier: Classifier, num_classes: int, samples: int = 1024,
                         seed: int = 0, truncation_psi: float = 1.0, min_share: float = 0.01) -> torch.Tensor | None:
    """[num_classes, w_dim]: per class, the mean w of the generator samples ``classifier`` labels as it.

    A class that gets under ``min_share`` of the samples is NaN (no way toward it is known).
    Conditional generators draw a random class input per sample. None when the classifier's
    output is not logits [N, K].
    """
    z, gen = _z(G, samples, seed)
    c = _one_hot(torch.randint(0, G.c_dim, (samples,), generator=gen).to(z.device), G.c_dim) if G.c_dim else None
    ws, labels = [], []
    chunk = _synthesis_chunk(G)
    for i in range(0, samples, chunk):
        w = G.mapping(z[i:i + chunk], None if c is None else c[i:i + chunk], truncation_psi=truncation_psi)
        logits = classifier(G.synthesis(w, noise_mode="const").clamp(-1, 1))
        if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
            return None
        ws.append(w[:, 0].double())
        labels.append(_labels(logits))
    w_all, label_all = torch.cat(ws), torch.cat(labels)
    means = torch.full((num_classes, G.w_dim), float("nan"), dtype=torch.float64, device=z.device)
    for k in range(num_classes):
        chosen = label_all == k
        if int(chosen.sum()) >= max(1, int(min_share * samples)):
            means[k] = w_all[chosen].mean(0)
    return means.float()


@torch.no_grad()
def class_input_matches(G: torch.nn.Module, classifier: Classifier, num_classes: int, per_class: int = 4,
                        seed: int = 0, agreement: float = 0.8) -> bool:
    """Does the generator's class input k make images ``classifier`` labels k (for ``agreement`` of samples)?

    Only then are the generator's conditional means the classifier's classes; a classifier with
    other classes (or another order) gets `labelled_class_means` instead.
    """
    if not G.c_dim or G.c_dim != num_classes:
        return False
    z, _ = _z(G, per_class * G.c_dim, seed)
    labels = torch.arange(G.c_dim, device=z.device).repeat_interleave(per_class)
    hits = 0
    chunk = _synthesis_chunk(G)
    for i in range(0, len(z), chunk):
        w = G.mapping(z[i:i + chunk], _one_hot(labels[i:i + chunk], G.c_dim))
        logits = classifier(G.synthesis(w, noise_mode="const").clamp(-1, 1))
        if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
            return False
        hits += int((_labels(logits) == labels[i:i + chunk]).sum())
    return hits >= agreement * len(z)


def class_mean_latents(G: torch.nn.Module, classifier: Classifier | None = None, num_classes: int | None = None,
                       truncation_psi: float = 1.0, samples: int | None = None) -> torch.Tensor | None:
    """The class means the attack should use for ``classifier``'s classes; None when unknown.

    The generator's class input when it matches the classifier (or no classifier is given),
    else the classifier's labels of ``samples`` generator samples (None = `labelled_samples`).
    """
    if classifier is None:
        return conditional_class_means(G, truncation_psi=truncation_psi) if G.c_dim else None
    k = num_classes or G.c_dim
    if not k:
        return None
    if class_input_matches(G, classifier, k):
        return conditional_class_means(G, truncation_psi=truncation_psi)
    return labelled_class_means(G, classifier, k, samples=samples or labelled_samples(int(G.img_resolution)),
                                truncation_psi=truncation_psi)


def labelled_samples(resolution: int) -> int:
    """Generator samples to label for the class means: 1,024 up to 64 px, fewer for larger generators
    (each is a forward pass: 256 up to 256 px, 128 above)."""
    return 1024 if resolution <= 64 else 256 if resolution <= 256 else 128


@torch.no_grad()
def mapped_latent_std(G: torch.nn.Module, samples: int = 1024, seed: int = 0) -> torch.Tensor:
    """The per-coordinate standard deviation [w_dim] of mapped latents (random classes when conditional).

    The unit of "a small random change of w", e.g. for jittered starts.
    """
    z, gen = _z(G, samples, seed)
    c = _one_hot(torch.randint(0, G.c_dim, (samples,), generator=gen).to(z.device), G.c_dim) if G.c_dim else None
    ws = torch.cat([G.mapping(z[i:i + _CHUNK], None if c is None else c[i:i + _CHUNK])[:, 0]
                    for i in range(0, samples, _CHUNK)])
    return ws.double().std(dim=0).float()
