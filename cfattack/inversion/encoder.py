"""GAN-inversion encoder: image -> ws, the starting point that optimisation then refines.

The encoder predicts offsets from the generator's average latent ``w_avg`` (one offset per
ws entry in W+ mode, one shared offset in W mode): starting at the mean keeps early
predictions on the generator's manifold, and offsets are small, well-scaled targets.

Checkpoints (``cfattack.encoder/1``) hold only plain kwargs and tensors, read with
`cfattack.torch_zip.read_torch_zip` (no code runs, every declared size is checked first; the
kwargs are built on the meta device and must need exactly the tensors the file holds)::

    E = Encoder(img_resolution=32, img_channels=1, num_ws=G.num_ws, w_dim=G.w_dim, w_avg=G.mapping.w_avg)
    ws = E(images)                      # [N, num_ws, w_dim]
    save_encoder_checkpoint(E, "encoder.pt"); E2 = load_encoder_checkpoint("encoder.pt")
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F

from cfattack.atomic import atomic_torch_save
from cfattack.bounded_pickle import FormatError, network_bytes_limit, plain_copy
from cfattack.errors import NetworkLoadError
from cfattack.torch_zip import read_torch_zip

__all__ = ["Encoder", "save_encoder_checkpoint", "load_encoder_checkpoint", "ENCODER_FORMAT"]

ENCODER_FORMAT = "cfattack.encoder/1"


class _ResBlock(torch.nn.Module):
    """Pre-activation residual block that halves the resolution."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.norm0 = torch.nn.GroupNorm(min(8, in_ch), in_ch)
        self.conv0 = torch.nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.norm1 = torch.nn.GroupNorm(min(8, out_ch), out_ch)
        self.conv1 = torch.nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = torch.nn.Conv2d(in_ch, out_ch, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv0(F.silu(self.norm0(x)))
        y = self.conv1(F.silu(self.norm1(y)))
        return F.avg_pool2d(y + self.skip(x), 2)


class Encoder(torch.nn.Module):
    """images [N, C, R, R] in [-1, 1] -> ws [N, num_ws, w_dim] (= w_avg + predicted offsets)."""

    def __init__(
        self,
        img_resolution: int,
        img_channels: int,
        num_ws: int,
        w_dim: int,
        latent: Literal["w", "w+"] = "w+",
        channels: int = 64,
        channel_max: int = 256,
        w_avg: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        if latent not in ("w", "w+"):
            raise ValueError(f"latent must be 'w' or 'w+', got {latent!r}")
        if img_resolution < 4 or img_resolution & (img_resolution - 1):
            raise ValueError(f"img_resolution must be a power of two >= 4, got {img_resolution}")
        self._init_kwargs = dict(img_resolution=img_resolution, img_channels=img_channels, num_ws=num_ws,
                                 w_dim=w_dim, latent=latent, channels=channels, channel_max=channel_max)
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.num_ws = num_ws
        self.w_dim = w_dim
        self.latent = latent

        self.stem = torch.nn.Conv2d(img_channels, channels, 3, padding=1)
        blocks, ch, res = [], channels, img_resolution
        while res > 4:
            out_ch = min(ch * 2, channel_max)
            blocks.append(_ResBlock(ch, out_ch))
            ch, res = out_ch, res // 2
        self.blocks = torch.nn.Sequential(*blocks)
        self.norm = torch.nn.GroupNorm(min(8, ch), ch)
        outputs = (num_ws if latent == "w+" else 1) * w_dim
        self.fc = torch.nn.Linear(ch * 16, 4 * w_dim)
        self.out = torch.nn.Linear(4 * w_dim, outputs)
        torch.nn.init.zeros_(self.out.weight)  # start exactly at w_avg
        torch.nn.init.zeros_(self.out.bias)
        self.register_buffer("w_avg", torch.zeros([w_dim]) if w_avg is None else w_avg.detach().clone().float())

    @property
    def init_kwargs(self) -> dict[str, Any]:
        return copy.deepcopy(self._init_kwargs)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        assert images.ndim == 4 and images.shape[1:] == (
            self.img_channels, self.img_resolution, self.img_resolution
        ), images.shape
        x = self.blocks(self.stem(images))
        x = F.silu(self.norm(x)).flatten(1)
        offsets = self.out(F.silu(self.fc(x)))
        offsets = offsets.view(images.shape[0], -1, self.w_dim).expand(-1, self.num_ws, -1)
        return self.w_avg + offsets


def save_encoder_checkpoint(E: Encoder, path: str | os.PathLike, *, metadata: dict | None = None) -> Path:
    """Write ``E`` atomically (temp file + rename) in the ``cfattack.encoder/1`` format."""
    payload = {
        "format": ENCODER_FORMAT,
        "kwargs": E.init_kwargs,
        "state_dict": {k: v.detach().cpu().clone() for k, v in E.state_dict().items()},
        "metadata": dict(metadata or {}),
    }
    return atomic_torch_save(payload, path)


def _first_line(exc: BaseException) -> str:
    return f"{(str(exc).strip().splitlines() or [type(exc).__name__])[0]:.200}"


def _fit_problem(expected: dict[str, torch.Tensor], state: dict[str, Any]) -> str | None:
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {list(state[k].shape)} vs {list(v.shape)}" for k, v in expected.items()
             if k in state and isinstance(state[k], torch.Tensor) and state[k].shape != v.shape]
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    parts = [f"{label} {', '.join(map(str, names[:3]))}" for label, names in
             (("missing", missing), ("unexpected", unexpected), ("shape mismatch (file vs model)", wrong),
              ("not tensors", bad)) if names]
    return "; ".join(parts) or None


def load_encoder_checkpoint(
    path: str | os.PathLike, device: str | torch.device = "cpu", *, max_bytes: int | None = None
) -> Encoder:
    """Read an encoder written by `save_encoder_checkpoint` (no code from the file runs).

    ``max_bytes`` limits the bytes of its tensors (default `cfattack.bounded_pickle.MAX_NETWORK_BYTES`
    or ``$CFATTACK_MAX_NETWORK_BYTES``). Raises `NetworkLoadError` (one line) for anything wrong.
    """
    path = Path(path)
    if not path.is_file():
        raise NetworkLoadError(f"encoder file {path} does not exist")
    limit = network_bytes_limit(max_bytes)
    payload = read_torch_zip(path, str(path), what="cfattack encoder checkpoint", max_bytes=limit)
    if not isinstance(payload, dict) or payload.get("format") != ENCODER_FORMAT:
        raise NetworkLoadError(f"{path} is not a cfattack encoder checkpoint (expected format {ENCODER_FORMAT})")
    state = payload.get("state_dict")
    if not isinstance(state, dict):
        raise NetworkLoadError(f"{path}: encoder checkpoint has no state_dict")
    try:
        kwargs = plain_copy(payload.get("kwargs"), "kwargs")
        if not isinstance(kwargs, dict):
            raise FormatError("kwargs is not a dict")
        # The architecture on the meta device (no memory) must need exactly the file's tensors.
        with torch.device("meta"):
            expected = Encoder(**kwargs).state_dict()
    except Exception as exc:  # untrusted kwargs: any failure to build means bad settings
        raise NetworkLoadError(f"{path}: encoder settings are unusable: {_first_line(exc)}") from exc
    problem = _fit_problem(expected, state)
    if problem is None and sum(t.numel() for t in expected.values()) * 4 > limit:
        problem = "it needs more than the byte limit (raise it with max_bytes= or CFATTACK_MAX_NETWORK_BYTES)"
    if problem is not None:
        raise NetworkLoadError(f"{path}: encoder weights do not match its settings: {problem}")
    try:
        E = Encoder(**kwargs)
        state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
        E.load_state_dict(state, strict=True)
    except (TypeError, ValueError, RuntimeError, KeyError) as exc:
        raise NetworkLoadError(f"{path}: encoder weights do not match its settings: {_first_line(exc)}") from exc
    return E.to(device).eval()
