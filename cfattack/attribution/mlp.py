"""The small MLP shared by the numeric descriptors: its weight check, forward pass and training.

A ``"mlp"`` descriptor model keeps one MLP (tensors ``w1 [F, H], b1 [H], w2 [H, H], b2 [H],
w3 [H, K], b3 [K]``, SiLU between layers) beside its linear maps. The model
(`cfattack.attribution.predictors`) checks and runs it; fitting
(`cfattack.attribution.fitting`) trains it. Plain torch on tensors, no nn.Module, so the
weights are stored as plain tensors in the ``cfattack.descriptors/1`` file.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from cfattack.errors import InvalidInputError

_MLP_KEYS = ("w1", "b1", "w2", "b2", "w3", "b3")


def _check_mlp(mlp: Any, num_features: int, k: int) -> dict[str, torch.Tensor]:
    if not isinstance(mlp, Mapping) or set(mlp) != set(_MLP_KEYS):
        raise InvalidInputError(f"mlp must be a dict with the tensors {', '.join(_MLP_KEYS)}")
    hidden = mlp["w1"].shape[1] if isinstance(mlp["w1"], torch.Tensor) and mlp["w1"].ndim == 2 else -1
    shapes = {"w1": (num_features, hidden), "b1": (hidden,), "w2": (hidden, hidden), "b2": (hidden,),
              "w3": (hidden, k), "b3": (k,)}
    out = {}
    for key, shape in shapes.items():
        tensor = mlp[key]
        if hidden < 1 or not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != shape:
            raise InvalidInputError(f"mlp {key} must have shape {list(shape)}")
        if not bool(torch.isfinite(tensor).all()):
            raise InvalidInputError(f"mlp {key} holds NaN or infinite values")
        out[key] = tensor.detach().to(torch.float32).contiguous()
    return out


def _mlp_forward(mlp: Mapping[str, torch.Tensor], z: torch.Tensor) -> torch.Tensor:
    """Standardised features [N, F] -> standardised outputs [N, K] (two SiLU hidden layers)."""
    dtype = z.dtype
    h = torch.nn.functional.silu(z @ mlp["w1"].to(dtype) + mlp["b1"].to(dtype))
    h = torch.nn.functional.silu(h @ mlp["w2"].to(dtype) + mlp["b2"].to(dtype))
    return h @ mlp["w3"].to(dtype) + mlp["b3"].to(dtype)


def _fit_mlp(z: np.ndarray, y: np.ndarray, train: np.ndarray, *, hidden: int, epochs: int, weight_decay: float,
             seed: int) -> dict[str, torch.Tensor]:
    """Train one MLP on standardised features ``z [n, F]`` -> standardised targets ``y [n, K]`` (NaN = no target).

    Only ``train`` rows are used. AdamW (lr 1e-3), batches of 256, a fixed number of epochs,
    squared error over the defined targets. Deterministic for a given seed.
    """
    gen = torch.Generator().manual_seed(int(seed) + 2)
    x = torch.from_numpy(z[train]).float()
    t = torch.from_numpy(y[train]).float()
    mask = torch.isfinite(t)
    t = torch.where(mask, t, torch.zeros_like(t))
    num_features, k = x.shape[1], t.shape[1]

    def init(fan_in: int, fan_out: int) -> tuple[torch.Tensor, torch.Tensor]:
        bound = 1.0 / math.sqrt(fan_in)
        w = (torch.rand(fan_in, fan_out, generator=gen) * 2 - 1) * bound
        return w.requires_grad_(True), torch.zeros(fan_out, requires_grad=True)

    params = dict(zip(_MLP_KEYS, (*init(num_features, hidden), *init(hidden, hidden), *init(hidden, k))))
    opt = torch.optim.AdamW(list(params.values()), lr=1e-3, weight_decay=weight_decay)
    with torch.enable_grad():
        for _ in range(epochs):
            order = torch.randperm(len(x), generator=gen)
            for i in range(0, len(x), 256):
                idx = order[i:i + 256]
                error = (_mlp_forward(params, x[idx]) - t[idx]).square() * mask[idx]
                loss = error.sum() / mask[idx].sum().clamp_min(1)
                opt.zero_grad()
                loss.backward()
                opt.step()
    return {key: value.detach() for key, value in params.items()}
