"""Building our Generator from constructor kwargs and weights read from a file, checked to fit.

Both file formats end here: an official pickle (`cfattack.stylegan.official_pickle`) and our
checkpoint (`cfattack.stylegan.checkpoint`) supply untrusted kwargs and a state dict; the
network is only built if its size is sane and the weights match it exactly (names, shapes,
float dtypes), then loaded strictly, put in eval mode with ``requires_grad`` off.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from cfattack.errors import CfattackError, InvalidInputError, NetworkLoadError
from cfattack.stylegan.file_access import _one_line
from cfattack.stylegan.generator import Generator

def _summarise(names: list[str], limit: int = 3) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _construct(init_kwargs: dict[str, Any], what: str, source: str) -> Generator:
    try:
        return Generator(**init_kwargs)
    except (TypeError, ValueError, ArithmeticError, RuntimeError, NotImplementedError, CfattackError) as exc:
        raise NetworkLoadError(
            f"{source}: cannot build a Generator from the init_kwargs of {what} ({_one_line(exc)})"
        ) from exc


def _check_weights_fit(
    expected: Mapping[str, torch.Tensor], state_dict: Mapping[str, torch.Tensor], what: str, source: str
) -> None:
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong = [
        f"{k} {list(state_dict[k].shape)} vs {list(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and state_dict[k].shape != v.shape
    ]
    bad_dtype = [k for k in expected if k in state_dict and not state_dict[k].is_floating_point()]
    problems = []
    if missing:
        problems.append(f"missing {_summarise(missing)}")
    if unexpected:
        problems.append(f"unexpected {_summarise(unexpected)}")
    if wrong:
        problems.append(f"shape mismatch {_summarise(wrong)} (file vs model)")
    if bad_dtype:
        problems.append(f"non-float tensors {_summarise(bad_dtype)}")
    if problems:
        raise NetworkLoadError(
            f"{source}: the weights of {what} do not match a Generator built from its init_kwargs: "
            + "; ".join(problems)
        )


# Upper limits of NVIDIA's released StyleGAN3 networks (1024 px, 1024 channels, 14 layers, 3x3).
_ORDINARY_LIMITS = {"img_resolution": 1024, "channel_max": 1024, "num_layers": 14, "conv_kernel": 3,
                    "z_dim": 1024, "w_dim": 1024, "c_dim": 1024, "img_channels": 4}


def _ordinary_size(init_kwargs: Mapping[str, Any]) -> bool:
    """Whether the kwargs describe a network no larger than NVIDIA's own releases."""
    for key, limit in _ORDINARY_LIMITS.items():
        value = init_kwargs.get(key, 0)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= limit:
            return False
    mapping = init_kwargs.get("mapping_kwargs") or {}
    layers = mapping.get("num_layers", 0) if isinstance(mapping, Mapping) else None
    return isinstance(layers, int) and 0 <= layers <= 8


def _build_generator(
    init_kwargs: dict[str, Any], state_dict: Mapping[str, torch.Tensor], what: str, source: str, device: torch.device
) -> Generator:
    """Our Generator from constructor kwargs and a state dict that must match it exactly."""
    # The kwargs come from the file, and a corrupt or hostile one could ask for a network far
    # larger than the weights. Kwargs within the sizes of NVIDIA's own releases are built
    # directly; anything larger first as a skeleton on the meta device (no memory), checked
    # against the weights. (The meta route costs ~1.5 s of one-time torch imports, too much for
    # the everyday load of a small bundle.)
    skeleton = None
    if not _ordinary_size(init_kwargs):
        try:
            with torch.device("meta"):
                skeleton = _construct(init_kwargs, what, source)
        except NetworkLoadError as exc:
            if not isinstance(exc.__cause__, (RuntimeError, NotImplementedError)):
                raise
            skeleton = None  # an op without meta support: check against the real network below
    if skeleton is not None:
        _check_weights_fit(skeleton.state_dict(), state_dict, what, source)
        del skeleton

    G = _construct(init_kwargs, what, source)
    _check_weights_fit(G.state_dict(), state_dict, what, source)
    G.load_state_dict(state_dict, strict=True)
    return G.to(device).eval().requires_grad_(False)



def _as_device(device: Any) -> torch.device:
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InvalidInputError(f"device {device!r} is not a valid torch device ({_one_line(exc)})") from exc


