"""Generator latents for fitting descriptor predictors, and the fingerprint that ties a model to its generator.

`sample_latents` draws reproducible ``ws`` (optionally style-mixed); `_jittered` and `_shifted`
widen the sample around inverted real images and across object positions; `descriptor_values`
measures descriptors on the images of many latents, a batch at a time. They feed
`cfattack.attribution.fitting.fit_descriptor_model` and `cfattack.attribution.spread`; `generator_fingerprint` is recorded in
the fitted model's metadata and checked by `LatentDescriptorModel.fits_generator`.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch

from cfattack.errors import InvalidInputError

__all__ = ["descriptor_values", "generator_fingerprint", "sample_latents"]


def generator_fingerprint(G: torch.nn.Module) -> str:
    """A short hash of a generator's weights and buffers: tells whether a model was fitted on ``G``."""
    digest = hashlib.sha256()
    for key, tensor in sorted(G.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        t = t.to(torch.float32) if t.is_floating_point() else t
        digest.update(f"{key}:{t.dtype}:{list(t.shape)};".encode())
        digest.update(t.numpy().tobytes())
    return digest.hexdigest()[:16]


@torch.no_grad()
def sample_latents(G: torch.nn.Module, num: int, *, truncation_psi: float = 1.0, style_mixing: float = 0.0,
                   seed: int = 0, device: str | torch.device | None = None) -> torch.Tensor:
    """Draw generator latents ``ws [num, num_ws, w_dim]`` reproducibly (on ``device``, default G's).

    ``z`` comes from a seeded CPU generator (the same ws on any device); conditional generators
    get uniformly drawn classes. With ``style_mixing`` > 0 that share of the samples takes the
    layers from a random cut-off on from a second latent, as in StyleGAN training, so the
    layers of W+ vary independently and a predictor can learn which layers matter.
    """
    if num < 1:
        raise InvalidInputError(f"num must be at least 1, got {num}")
    if not 0 <= style_mixing <= 1:
        raise InvalidInputError(f"style_mixing is a probability in [0, 1], got {style_mixing!r}")
    device = torch.device(device) if device is not None else next(G.parameters()).device
    rng = torch.Generator().manual_seed(int(seed))

    def mapped() -> torch.Tensor:
        z = torch.randn(num, G.z_dim, generator=rng)
        c = None
        if G.c_dim:
            c = torch.nn.functional.one_hot(torch.randint(0, G.c_dim, (num,), generator=rng), G.c_dim).float()
            c = c.to(device)
        return G.mapping(z.to(device), c, truncation_psi=truncation_psi)

    ws = mapped()
    if style_mixing > 0 and G.num_ws > 1:
        other = mapped()
        cut = torch.randint(1, G.num_ws, (num, 1), generator=rng).to(device)
        mix = (torch.rand(num, 1, generator=rng) < style_mixing).to(device)
        layer = torch.arange(G.num_ws, device=device).view(1, -1)
        ws = torch.where(((layer >= cut) & mix).unsqueeze(2), other, ws)
    return ws


@torch.no_grad()
def descriptor_values(G: torch.nn.Module, ws: torch.Tensor, descriptors: Any, *, batch: int,
                      progress: bool = False, desc: str = "descriptors") -> dict[str, np.ndarray]:
    """Synthesise ``ws [N, num_ws, w_dim]`` ``batch`` at a time and measure ``descriptors`` on the images.

    Returns ``{name: float64 [N]}`` in the set's order (NaN where a descriptor is undefined).
    Only one batch of images is held at a time, so any number of samples fits in memory.
    """
    parts: dict[str, list[np.ndarray]] = {d.name: [] for d in descriptors}
    starts = range(0, int(ws.shape[0]), int(batch))
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc=desc, unit="batch")
    for i in starts:
        images = G.synthesis(ws[i:i + batch], noise_mode="const")
        for name, values in descriptors.compute(images).items():
            parts[name].append(values)
    return {name: np.concatenate(v) for name, v in parts.items()}


def _jittered(anchors: torch.Tensor, spread: torch.Tensor, jitter: float, seed: int) -> torch.Tensor:
    """anchors + N(0, 1) * jitter * U(0, 1) * spread, drawn from a seeded CPU generator."""
    rng = torch.Generator().manual_seed(int(seed) + 1)
    scale = torch.rand(anchors.shape[0], 1, 1, generator=rng) * float(jitter)
    noise = torch.randn(anchors.shape, generator=rng)
    return anchors + (scale * noise).to(anchors) * spread.unsqueeze(0)


def _shifted(G: torch.nn.Module, ws: torch.Tensor, jitter: float, seed: int) -> torch.Tensor:
    """ws with every second item translated by N(0, jitter) pixels in x and y (seeded, CPU draws)."""
    from cfattack.stylegan.translation import translate_ws

    rng = torch.Generator().manual_seed(int(seed) + 2)
    shift = torch.randn(ws.shape[0], 2, generator=rng) * float(jitter)
    shift[0::2] = 0
    out = ws.clone()
    moved = torch.arange(1, ws.shape[0], 2)
    for i in range(0, len(moved), 1024):
        rows = moved[i:i + 1024].to(ws.device)
        out[rows] = translate_ws(G, ws[rows], shift[rows.cpu()].to(ws.device))
    return out
