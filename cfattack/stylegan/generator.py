"""StyleGAN3 generator (configs T and R), written from the paper with NVIDIA's parameter names.

The module tree, constructor keyword arguments and every parameter/buffer name and shape
match NVIDIA's official implementation, so an official ``state_dict`` (or one read from an
official pickle by `cfattack.stylegan.official_pickle`) loads with ``strict=True`` and reproduces its images.

The public contract is the W seam::

    G = Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=256, img_channels=3)
    ws = G.mapping(z, c, truncation_psi=0.7)        # [N, G.num_ws, G.w_dim]
    img = G.synthesis(ws, noise_mode="const")       # [N, img_channels, res, res], roughly in [-1, 1]

Everything downstream of cfattack (inversion, attack, attribution) exchanges ``ws`` only.

This module holds `Generator` and `make_transform`; the networks it joins live in
`cfattack.stylegan.mapping` and `cfattack.stylegan.synthesis`, their shared building blocks in
`cfattack.stylegan.layers`. Those names are re-exported here, where they have always been.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Sequence

import numpy as np
import torch

from cfattack.stylegan.layers import FullyConnectedLayer, design_lowpass_filter, modulated_conv2d
from cfattack.stylegan.mapping import MappingNetwork
from cfattack.stylegan.synthesis import SynthesisInput, SynthesisLayer, SynthesisNetwork

__all__ = [
    "Generator",
    "MappingNetwork",
    "SynthesisNetwork",
    "SynthesisInput",
    "SynthesisLayer",
    "FullyConnectedLayer",
    "modulated_conv2d",
    "design_lowpass_filter",
    "make_transform",
]


def make_transform(translate: Sequence[float] = (0.0, 0.0), angle_deg: float = 0.0) -> np.ndarray:
    """3x3 image transform [[cos, sin, tx], [-sin, cos, ty], [0, 0, 1]] (rotation, then translation).

    ``synthesis.input.transform`` expects the *inverse* of this matrix, as gen_images-style
    tools write it: ``G.synthesis.input.transform.copy_(torch.from_numpy(np.linalg.inv(m)))``.
    """
    angle = math.radians(angle_deg)
    c, s = math.cos(angle), math.sin(angle)
    return np.array(
        [[c, s, translate[0]], [-s, c, translate[1]], [0.0, 0.0, 1.0]], dtype=np.float64
    )


class Generator(torch.nn.Module):
    """StyleGAN3 generator: ``mapping`` (z, c -> ws) followed by ``synthesis`` (ws -> image).

    Config T is the default; config R is ``conv_kernel=1, use_radial_filters=True`` (with
    doubled channel_base/channel_max in the released models). Keyword arguments beyond the
    named ones go to `SynthesisNetwork` and from there to every `SynthesisLayer`.

    Example::

        G = Generator(z_dim=64, c_dim=0, w_dim=64, img_resolution=32, img_channels=1,
                      channel_base=2048, channel_max=64)
        img = G(torch.randn(4, 64), None, truncation_psi=0.7, noise_mode="const")  # [4, 1, 32, 32]
    """

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        mapping_kwargs: dict[str, Any] | None = None,
        **synthesis_kwargs: Any,
    ) -> None:
        super().__init__()
        mapping_kwargs = dict(mapping_kwargs or {})
        self._init_kwargs = copy.deepcopy(
            dict(
                z_dim=z_dim,
                c_dim=c_dim,
                w_dim=w_dim,
                img_resolution=img_resolution,
                img_channels=img_channels,
                mapping_kwargs=mapping_kwargs,
                **synthesis_kwargs,
            )
        )
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.synthesis = SynthesisNetwork(
            w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels, **synthesis_kwargs
        )
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws, **mapping_kwargs)

    @property
    def init_kwargs(self) -> dict[str, Any]:
        """The constructor keyword arguments (a copy): ``Generator(**G.init_kwargs)`` rebuilds G."""
        return copy.deepcopy(self._init_kwargs)

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None,
        truncation_psi: float = 1,
        truncation_cutoff: int | None = None,
        update_emas: bool = False,
        **synthesis_kwargs: Any,
    ) -> torch.Tensor:
        """z [N, z_dim], c [N, c_dim] (or None/empty when c_dim == 0) -> img [N, C, H, W]."""
        ws = self.mapping(
            z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff, update_emas=update_emas
        )
        return self.synthesis(ws, update_emas=update_emas, **synthesis_kwargs)
