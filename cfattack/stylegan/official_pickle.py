"""Official StyleGAN3 network pickles: from the unpickler's records to our Generator.

`load_network_pkl` runs the restricted unpickler (`cfattack.stylegan.safe_unpickler`, which
never executes the source such pickles embed), checks that ``G_ema``/``G`` are StyleGAN3
generators with constructor kwargs NVIDIA's code knows, flattens their records into state
dicts, and has `cfattack.stylegan.generator_build` build our `Generator` with a strict state
dict. Other networks (``D``, ``augment_pipe``) come back as plain data.

Example::

    from cfattack.stylegan.official_pickle import load_network_pkl
    data = load_network_pkl("stylegan3-t-afhqv2-512x512.pkl")   # dict: G_ema, G, D, ...
    G = data["G_ema"]                                           # our Generator, eval, no grad
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import IO, Any

import numpy as np
import torch

from cfattack.errors import InvalidInputError, NetworkLoadError, UnsafePickleError
from cfattack.stylegan.file_access import _MAX_DEPTH, _source_name
from cfattack.stylegan.generator_build import _as_device, _build_generator
from cfattack.stylegan.pickle_records import PersistentRecord, _ArraySpec, _FormatError, _TensorRef
from cfattack.stylegan.safe_unpickler import _unpickle_network

__all__ = ["NETWORK_KEYS", "NetworkLoadError", "PersistentRecord", "UnsafePickleError", "load_network_pkl"]

NETWORK_KEYS = ("G_ema", "G", "D", "augment_pipe")
"""Networks `load_network_pkl` can be asked for (its ``load`` argument)."""

# Constructor arguments of NVIDIA's StyleGAN3 Generator (incl. those it forwards to the
# synthesis network, its layers and the mapping network). An official pickle naming anything
# else was made by modified code we cannot reproduce faithfully.
_OFFICIAL_GENERATOR_KWARGS = frozenset(
    {
        "z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs",
        "channel_base", "channel_max", "num_layers", "num_critical", "first_cutoff", "first_stopband",
        "last_stopband_rel", "margin_size", "output_scale", "num_fp16_res",
        "conv_kernel", "filter_size", "lrelu_upsampling", "use_radial_filters", "conv_clamp",
        "magnitude_ema_beta",
    }
)
_OFFICIAL_MAPPING_KWARGS = frozenset({"num_layers", "lr_multiplier", "w_avg_beta"})
# Generous bounds on the integer kwargs (released models use at most 1024 px, 1024 channels,
# 14 layers): values beyond them would only make construction exhaust memory or time.
_OFFICIAL_INT_LIMITS = {
    "z_dim": 65536, "c_dim": 1 << 20, "w_dim": 65536, "img_resolution": 16384, "img_channels": 64,
    "channel_base": 1 << 24, "channel_max": 65536, "num_layers": 256, "num_critical": 256,
    "margin_size": 4096, "num_fp16_res": 64, "conv_kernel": 15, "filter_size": 64, "lrelu_upsampling": 16,
    "mapping.num_layers": 256,
}


# ---------------------------------------------------------------------------------------------
# From records to networks.


def _to_plain(value: Any, what: str, depth: int = 0) -> Any:
    """A copy of a kwargs-like value with only plain Python types (numpy scalars converted)."""
    if depth > _MAX_DEPTH:
        raise _FormatError(f"{what} is nested too deeply")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        return value.item()
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise _FormatError(f"{what} has a non-string key {key!r:.40}")
            out[key] = _to_plain(item, what, depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        items = [_to_plain(item, what, depth + 1) for item in value]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, _ArraySpec) and value.array is not None:
        return value.array.tolist()
    raise _FormatError(f"{what} holds an unsupported value of type {type(value).__name__}")


def _module_dicts(record: PersistentRecord, where: str) -> tuple[Mapping, Mapping, Mapping, set]:
    state = record.state
    dicts = []
    for key in ("_parameters", "_buffers", "_modules"):
        value = state.get(key)
        if not isinstance(value, dict):  # dict in torch 2.x pickles, OrderedDict in torch 1.x
            raise _FormatError(f"{where} ({record.class_name}) is not a torch module (no {key})")
        for name in value:
            if not isinstance(name, str) or not name or "." in name:
                raise _FormatError(f"{where} has a malformed member name {name!r:.40}")
        dicts.append(value)
    non_persistent = state.get("_non_persistent_buffers_set", set())
    if not isinstance(non_persistent, (set, frozenset)):
        raise _FormatError(f"{where} has a malformed _non_persistent_buffers_set")
    return dicts[0], dicts[1], dicts[2], set(non_persistent)


def _state_dict_of(record: PersistentRecord, what: str) -> dict[str, torch.Tensor]:
    """The flat ``state_dict()`` of a module record: names and order as torch would give them."""
    out: dict[str, torch.Tensor] = {}
    active: set[int] = set()

    def visit(rec: PersistentRecord, prefix: str) -> None:
        where = f"{what}.{prefix[:-1]}" if prefix else what
        if id(rec) in active or len(active) > _MAX_DEPTH:
            raise _FormatError(f"{where}: the module tree is cyclic or too deep")
        active.add(id(rec))
        params, buffers, modules, non_persistent = _module_dicts(rec, where)
        for kind, members in (("parameter", params), ("buffer", buffers)):
            for name, value in members.items():
                if value is None or (kind == "buffer" and name in non_persistent):
                    continue
                if not isinstance(value, _TensorRef):
                    raise _FormatError(f"{kind} {prefix}{name} of {what} is not a tensor")
                out[prefix + name] = value.tensor.detach()
        for name, child in modules.items():
            if child is None:
                continue
            if not isinstance(child, PersistentRecord):
                raise _FormatError(f"submodule {prefix}{name} of {what} is not a network object")
            visit(child, f"{prefix}{name}.")
        active.discard(id(rec))

    visit(record, "")
    return out


def _check_stylegan3_generator(record: Any, what: str) -> None:
    if not isinstance(record, PersistentRecord):
        raise _FormatError(f"{what} is not a network object (got {type(record).__name__})")
    if record.class_name != "Generator":
        raise _FormatError(f"{what} is a {record.class_name!r}, not a StyleGAN3 'Generator'")
    modules = _module_dicts(record, what)[2]
    synthesis, mapping = modules.get("synthesis"), modules.get("mapping")
    ok = (
        isinstance(synthesis, PersistentRecord)
        and synthesis.class_name == "SynthesisNetwork"
        and isinstance(mapping, PersistentRecord)
        and mapping.class_name == "MappingNetwork"
    )
    if ok:
        child = _module_dicts(synthesis, f"{what}.synthesis")[2].get("input")
        ok = isinstance(child, PersistentRecord) and child.class_name == "SynthesisInput"
    if not ok:
        raise _FormatError(
            f"{what} is not a StyleGAN3 generator (no synthesis.input of class SynthesisInput; "
            "StyleGAN2/ADA pickles are not supported)"
        )


def _official_init_kwargs(record: PersistentRecord, what: str) -> dict[str, Any]:
    args = record.state.get("_init_args", ())
    if args not in ((), []):
        raise _FormatError(f"{what} was constructed with positional arguments, which is not supported")
    kwargs = _to_plain(record.state.get("_init_kwargs"), f"{what} init_kwargs")
    if not isinstance(kwargs, dict):
        raise _FormatError(f"{what} has no init_kwargs")
    unknown = sorted(set(kwargs) - _OFFICIAL_GENERATOR_KWARGS)
    mapping_kwargs = kwargs.get("mapping_kwargs") or {}
    if not isinstance(mapping_kwargs, dict):
        raise _FormatError(f"{what} init_kwargs: mapping_kwargs is not a dict")
    unknown += [f"mapping_kwargs.{k}" for k in sorted(set(mapping_kwargs) - _OFFICIAL_MAPPING_KWARGS)]
    if unknown:
        raise _FormatError(f"{what} has unknown generator init_kwargs {unknown} (made by modified code?)")
    for key, limit in _OFFICIAL_INT_LIMITS.items():
        value = mapping_kwargs.get(key[8:]) if key.startswith("mapping.") else kwargs.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= limit):
            raise _FormatError(f"{what} init_kwargs: {key}={value!r:.40} is not an int in [0, {limit}]")
    return kwargs



def _network_record(record: Any, what: str) -> dict[str, Any]:
    """A network we have no class for (D, augment_pipe), as plain data."""
    if not isinstance(record, PersistentRecord):
        raise _FormatError(f"{what} is not a network object (got {type(record).__name__})")
    kwargs = record.state.get("_init_kwargs", {})
    return {
        "class_name": record.class_name,
        "module_src_sha256": record.module_src_sha256,
        "init_kwargs": _to_plain(kwargs, f"{what} init_kwargs") if kwargs is not None else {},
        "state_dict": _state_dict_of(record, what),
    }



def load_network_pkl(
    path_or_file: str | os.PathLike | IO[bytes],
    *,
    device: str | torch.device = "cpu",
    load: Iterable[str] = ("G_ema", "G", "D"),
) -> dict[str, Any]:
    """Read an official StyleGAN3 network pickle without executing anything from it.

    Args:
        path_or_file: the ``.pkl`` path, or a binary file object (read from its position; it is
            streamed, so multi-GB files are fine).
        device: where the returned generators live.
        load: which networks to build, out of ``"G_ema"``, ``"G"``, ``"D"``, ``"augment_pipe"``
            (others are returned as None).

    Returns:
        ``{"G_ema": Generator, "G": Generator | None, "D": record | None,
        "augment_pipe": record | None, "training_set_kwargs": dict | None}``. Generators are our
        `cfattack.stylegan.generator.Generator` in eval mode with ``requires_grad`` off; a record is
        ``{"class_name", "module_src_sha256", "init_kwargs", "state_dict"}`` (CPU tensors).

    Raises:
        UnsafePickleError: the pickle references a global outside the allow-list (naming it).
        NetworkLoadError: the file is missing, empty, truncated, not a pickle, not a StyleGAN3
            network pickle, or its weights do not fit its constructor kwargs.

    Example::

        data = load_network_pkl("stylegan3-r-ffhqu-256x256.pkl", load=("G_ema",))
        img = data["G_ema"](torch.randn(1, 512), None)   # [1, 3, 256, 256]
    """
    wanted = (load,) if isinstance(load, str) else tuple(load)
    bad = [name for name in wanted if name not in NETWORK_KEYS]
    if bad:
        raise InvalidInputError(f"load={wanted!r}: unknown network names {bad}; allowed: {list(NETWORK_KEYS)}")
    device = _as_device(device)
    source = _source_name(path_or_file)
    data = _unpickle_network(path_or_file, source)

    try:
        if isinstance(data, tuple) and len(data) == 3:
            raise _FormatError("this looks like a TensorFlow-era (StyleGAN/StyleGAN2) pickle, which is not supported")
        if not isinstance(data, dict):
            raise _FormatError(f"expected a dict of networks, got {type(data).__name__}")
        if data.get("G_ema") is None:
            keys = [k for k in data if isinstance(k, str)][:8]
            raise _FormatError(f"no 'G_ema' network in it (keys: {keys})")
        result: dict[str, Any] = dict.fromkeys((*NETWORK_KEYS, "training_set_kwargs"))
        generators = {}
        for name in ("G_ema", "G"):
            record = data.get(name)
            if record is None or name not in wanted and name != "G_ema":
                continue
            _check_stylegan3_generator(record, name)
            if name in wanted:
                generators[name] = (_official_init_kwargs(record, name), _state_dict_of(record, name))
        for name in ("D", "augment_pipe"):
            if data.get(name) is not None and name in wanted:
                result[name] = _network_record(data[name], name)
        kwargs = data.get("training_set_kwargs")
        if kwargs is not None:
            result["training_set_kwargs"] = _to_plain(kwargs, "training_set_kwargs")
            if not isinstance(result["training_set_kwargs"], dict):
                raise _FormatError("training_set_kwargs is not a dict")
    except _FormatError as exc:
        raise NetworkLoadError(f"{source}: not a valid StyleGAN3 network pickle: {exc}") from exc

    for name, (init_kwargs, state_dict) in generators.items():
        result[name] = _build_generator(init_kwargs, state_dict, name, source, device)
    return result
