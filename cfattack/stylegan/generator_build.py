"""Building our Generator from constructor kwargs and weights read from a file, checked to fit.

Both file formats end here: an official pickle (`cfattack.stylegan.official_pickle`) and our
checkpoint (`cfattack.stylegan.checkpoint`) supply untrusted kwargs and a state dict. Before
anything is allocated the kwargs are checked on paper: each value in range, the layer plan
they imply (sampling rates, filter lengths) sane, the largest intermediate image of one layer
within `MAX_ACTIVATION_ELEMENTS` (``margin_size=4096`` would need hundreds of GB per image), and
the number of weights they imply no larger than the weights the file holds, which are within
the byte limit. Only then is the network built; the weights must match it exactly (names,
shapes, float dtypes) and are loaded strictly, in eval mode with ``requires_grad`` off.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from cfattack.bounded_pickle import format_bytes
from cfattack.errors import CfattackError, InvalidInputError, NetworkLoadError
from cfattack.stylegan.file_access import _one_line
from cfattack.stylegan.generator import Generator
from cfattack.stylegan.mapping import MappingNetwork
from cfattack.stylegan.synthesis import SynthesisLayer, SynthesisNetwork, _plan_layers

MAX_ACTIVATION_ELEMENTS = 1 << 30
"""Largest intermediate image (channels x height x width, per image) a generator's layer may need.

NVIDIA's config-R 1024 px networks need about 0.3 G; a hostile ``margin_size`` asks for far more."""

# Generous bounds on the integer kwargs (released models use at most 1024 px, 1024 channels,
# 14 layers, margin 10): values beyond them would only make construction exhaust memory or time.
_INT_LIMITS = {
    "z_dim": 65536, "c_dim": 1 << 20, "w_dim": 65536, "img_resolution": 16384, "img_channels": 64,
    "channel_base": 1 << 24, "channel_max": 65536, "num_layers": 256, "num_critical": 256,
    "margin_size": 256, "num_fp16_res": 64, "conv_kernel": 15, "filter_size": 64, "lrelu_upsampling": 16,
}
_MAPPING_INT_LIMITS = {"num_layers": 256}
_REQUIRED = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")
_POSITIVE_FLOATS = ("first_cutoff", "first_stopband", "last_stopband_rel")
_MAX_FILTER_ELEMENTS = 1 << 20  # one up/down filter (radial filters are taps x taps)


def _defaults(*functions: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for fn in functions:
        for name, param in inspect.signature(fn).parameters.items():
            if param.default is not inspect.Parameter.empty:
                out.setdefault(name, param.default)
    return out


# The defaults the constructors fill in, read from them so the plan below cannot drift.
_SYNTHESIS_DEFAULTS = _defaults(SynthesisNetwork.__init__, SynthesisLayer.__init__)
_MAPPING_DEFAULTS = _defaults(MappingNetwork.__init__)


def _summarise(names: list[str], limit: int = 3) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_values(init_kwargs: Mapping[str, Any]) -> str | None:
    """What is wrong with the kwargs' values (None if nothing): types and ranges, before any maths."""
    missing = [k for k in _REQUIRED if k not in init_kwargs]
    if missing:
        return f"missing {', '.join(missing)}"
    mapping = init_kwargs.get("mapping_kwargs") or {}
    if not isinstance(mapping, Mapping):
        return "mapping_kwargs is not a dict"
    for table, values, prefix in ((_INT_LIMITS, init_kwargs, ""), (_MAPPING_INT_LIMITS, mapping, "mapping_kwargs.")):
        for key, limit in table.items():
            value = values.get(key)
            if value is not None and (not _is_int(value) or not 0 <= value <= limit):
                return f"{prefix}{key}={value!r:.40} is not an int in [0, {limit}]"
    for key in _POSITIVE_FLOATS:
        value = init_kwargs.get(key, 1.0)
        if not _is_number(value) or value <= 0:
            return f"{key}={value!r:.40} is not a positive finite number"
    for key, values in (("output_scale", init_kwargs), ("magnitude_ema_beta", init_kwargs),
                        ("lr_multiplier", mapping), ("w_avg_beta", mapping)):
        value = values.get(key, 1.0)
        if not _is_number(value):
            return f"{key}={value!r:.40} is not a finite number"
    clamp = init_kwargs.get("conv_clamp")
    if clamp is not None and not _is_number(clamp):
        return f"conv_clamp={clamp!r:.40} is not None or a finite number"
    if init_kwargs["img_resolution"] < 1 or init_kwargs["img_channels"] < 1 or init_kwargs["w_dim"] < 1:
        return "img_resolution, img_channels and w_dim must be positive"
    return None


def _planned_size(init_kwargs: Mapping[str, Any]) -> tuple[int, int]:
    """(number of weights the kwargs' Generator has, its largest per-image layer activation).

    Follows the constructors' layer plan on paper (no tensors); raises ValueError for plans the
    constructors could not build either (rates below 1, filters too long, ...).
    """
    kw = {**_SYNTHESIS_DEFAULTS, **init_kwargs}
    mapping = {**_MAPPING_DEFAULTS, **(init_kwargs.get("mapping_kwargs") or {})}
    w_dim, c_dim, z_dim = kw["w_dim"], kw["c_dim"], kw["z_dim"]
    num_layers, num_critical, k = kw["num_layers"], kw["num_critical"], kw["conv_kernel"]
    if num_layers <= num_critical:
        raise ValueError(f"num_layers ({num_layers}) must exceed num_critical ({num_critical})")
    with np.errstate(all="ignore"):
        plans, _ = _plan_layers(kw["img_resolution"], kw["img_channels"], kw["channel_base"], kw["channel_max"],
                                num_layers, num_critical, kw["first_cutoff"], kw["first_stopband"],
                                kw["last_stopband_rel"], kw["margin_size"])
    for plan in plans:
        if not (plan.sampling_rate >= 1 and plan.channels >= 1 and math.isfinite(plan.cutoff)):
            raise ValueError("the layer plan has a sampling rate below 1 or no channels")

    # Mapping: optional class embedding, fully connected layers, w_avg.
    weights = (c_dim * w_dim + w_dim) if c_dim > 0 else 0
    width = z_dim + (w_dim if c_dim > 0 else 0)
    for _ in range(mapping["num_layers"]):
        weights += width * w_dim + w_dim
        width = w_dim
    weights += w_dim
    # Synthesis input: channel mixing, affine (4 outputs), transform, frequencies, phases.
    first = plans[0]
    weights += first.channels**2 + 4 * w_dim + 4 + 9 + 3 * first.channels
    activation = first.channels * first.size**2
    for idx, out in enumerate(plans):
        src = plans[max(idx - 1, 0)]
        torgb = idx == num_layers
        kernel = 1 if torgb else k
        tmp_rate = max(src.sampling_rate, out.sampling_rate) * (1 if torgb else kw["lrelu_upsampling"])
        up, down = round(tmp_rate / src.sampling_rate), round(tmp_rate / out.sampling_rate)
        up_taps = kw["filter_size"] * up if up > 1 and not torgb else 1
        down_taps = kw["filter_size"] * down if down > 1 and not torgb else 1
        radial = kw["use_radial_filters"] and idx < num_layers - num_critical
        down_elements = down_taps**2 if radial else down_taps
        if max(up_taps, down_elements) > _MAX_FILTER_ELEMENTS:
            raise ValueError(f"layer {idx} would need a filter of {max(up_taps, down_elements):,} taps")
        weights += (src.channels * w_dim + src.channels) + out.channels * src.channels * kernel**2 + out.channels + 1
        weights += (up_taps if up_taps > 1 else 0) + (down_elements if down_taps > 1 else 0)
        # The upsampled signal inside filtered_lrelu is the largest intermediate of a layer.
        side = max((src.size + kernel - 1) * up, (out.size - 1) * down + 1) + up_taps + down_taps
        activation = max(activation, out.channels * side**2)
    return weights, activation


def _check_plan(init_kwargs: Mapping[str, Any], state_dict: Mapping[str, torch.Tensor], what: str, source: str,
                limit: int) -> None:
    """Refuse kwargs that ask for more than the file's weights or the limits, before building."""

    def fail(problem: str) -> NetworkLoadError:
        return NetworkLoadError(f"{source}: refusing to build {what}: {problem}")

    problem = _check_values(init_kwargs)
    if problem is not None:
        raise fail(f"init_kwargs: {problem}")
    try:
        planned, activation = _planned_size(init_kwargs)
    except (ValueError, TypeError, ArithmeticError, OverflowError, KeyError) as exc:
        raise fail(f"its init_kwargs describe no buildable network ({_one_line(exc)})") from exc
    present = 0
    stored = 0
    for tensor in state_dict.values():  # a tensor named twice counts twice: it would be copied twice
        present += tensor.numel()
        stored += tensor.numel() * max(tensor.element_size(), 4)
    if stored > limit:
        raise fail(f"its weights take {format_bytes(stored)}, over the limit of {format_bytes(limit)} "
                   "(raise it with max_bytes= or CFATTACK_MAX_NETWORK_BYTES if you trust the file)")
    if activation > MAX_ACTIVATION_ELEMENTS:
        raise fail(f"one of its layers would need {activation:,} values per image (at most "
                   f"{MAX_ACTIVATION_ELEMENTS:,}; margin_size={init_kwargs.get('margin_size')!r:.20}, "
                   f"img_resolution={init_kwargs.get('img_resolution')!r:.20})")
    # The plan is exact for today's layers; the slack keeps a future buffer from locking files out.
    if planned > present + present // 100 + 4096:
        raise fail(f"its init_kwargs describe {planned:,} weights but the file holds {present:,}")


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


def _build_generator(
    init_kwargs: dict[str, Any],
    state_dict: Mapping[str, torch.Tensor],
    what: str,
    source: str,
    device: torch.device,
    limit: int,
) -> Generator:
    """Our Generator from constructor kwargs and a state dict that must match it exactly.

    ``limit`` is the byte limit of the load (`cfattack.bounded_pickle.network_bytes_limit`).
    """
    _check_plan(init_kwargs, state_dict, what, source, limit)
    G = _construct(init_kwargs, what, source)
    _check_weights_fit(G.state_dict(), state_dict, what, source)
    G.load_state_dict(state_dict, strict=True)
    return G.to(device).eval().requires_grad_(False)


def _as_device(device: Any) -> torch.device:
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InvalidInputError(f"device {device!r} is not a valid torch device ({_one_line(exc)})") from exc
