"""Shared fixtures of the attribution tests: a descriptor model fitted on synthetic latents with known answers."""

from __future__ import annotations

import pytest
import torch

from cfattack.attribution.fitting import fit_from_latents

META = {"linear": {"unit": "px", "meaning": "a known linear map of ws", "higher_means": "more"},
        "noise": {"unit": "px", "meaning": "noise independent of ws"},
        "label": {"unit": "0/1", "meaning": "sign of a linear map", "kind": "binary"}}


@pytest.fixture(scope="module")
def synthetic():
    """ws [600, 2, 8] with a linear target, a noise target and a binary label; the fitted model."""
    rng = torch.Generator().manual_seed(0)
    ws = torch.randn(600, 2, 8, generator=rng) * 0.7 + 0.3
    a = torch.randn(16, generator=rng, dtype=torch.float64)
    flat = ws.reshape(600, 16).double()
    values = {"linear": (flat @ a + 3.0).numpy(),
              "noise": torch.randn(600, generator=rng, dtype=torch.float64).numpy(),
              "label": (flat @ a.flip(0) > 0.5).double().numpy()}
    model = fit_from_latents(ws, values, META, seed=1)
    return ws, values, a, model
