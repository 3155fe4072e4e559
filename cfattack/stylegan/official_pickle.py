"""Official StyleGAN3 network pickles: from the unpickler's records to our Generator.

`load_network_pkl` runs the restricted unpickler (`cfattack.stylegan.safe_unpickler`, which
never executes the source such pickles embed), checks that ``G_ema``/``G`` are StyleGAN3
generators with constructor kwargs NVIDIA's code knows, flattens their records into state
dicts, and has `cfattack.stylegan.generator_build` build our `Generator` with a strict state
dict. Other networks (``D``, ``augment_pipe``) come back as plain data. The walks over the
records are bounded too: settings by a value budget (shared references cannot expand), module
trees by depth and size, and each record may appear once in a tree.

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

from cfattack.bounded_pickle import LimitError, network_bytes_limit, plain_copy
from cfattack.errors import CfattackError, InvalidInputError, NetworkLoadError, UnsafePickleError
from cfattack.stylegan.file_access import _MAX_DEPTH, _one_line, _source_name
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
_MAX_MODULES = 10_000  # modules in one network tree (a 1024 px StyleGAN3 G has about 50)
_MAX_TENSORS = 100_000  # parameters and buffers in one network tree
_MAX_NAME = 256  # characters of one member name
_MAX_SETTING_ARRAY = 4096  # elements of a numpy array inside settings (NVIDIA's hold a few)


# ---------------------------------------------------------------------------------------------
# From records to networks.


def _numpy_leaf(value: Any) -> Any:
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        return value.item()
    if isinstance(value, _ArraySpec) and value.array is not None:
        if value.array.size > _MAX_SETTING_ARRAY:
            raise LimitError(f"a numpy array of {value.array.size:,} values in settings (at most {_MAX_SETTING_ARRAY})")
        return value.array.tolist()
    return NotImplemented


def _to_plain(value: Any, what: str) -> Any:
    """A copy of a kwargs-like value with only plain Python types (numpy scalars converted).

    Shared references count once per visit (`plain_copy`), so a small file cannot expand here.
    """
    return plain_copy(value, what, convert=_numpy_leaf, max_depth=_MAX_DEPTH)


def _module_dicts(record: PersistentRecord, where: str) -> tuple[Mapping, Mapping, Mapping, set]:
    state = record.state
    dicts = []
    for key in ("_parameters", "_buffers", "_modules"):
        value = state.get(key)
        if not isinstance(value, dict):  # dict in torch 2.x pickles, OrderedDict in torch 1.x
            raise _FormatError(f"{where} ({record.class_name}) is not a torch module (no {key})")
        for name in value:
            if not isinstance(name, str) or not name or "." in name or len(name) > _MAX_NAME:
                raise _FormatError(f"{where} has a malformed member name {name!r:.40}")
        dicts.append(value)
    non_persistent = state.get("_non_persistent_buffers_set", set())
    if not isinstance(non_persistent, (set, frozenset)):
        raise _FormatError(f"{where} has a malformed _non_persistent_buffers_set")
    return dicts[0], dicts[1], dicts[2], set(non_persistent)


def _state_dict_of(record: PersistentRecord, what: str) -> dict[str, torch.Tensor]:
    """The flat ``state_dict()`` of a module record: names and order as torch would give them.

    Each record may appear once in the tree: a record shared by two parents would be walked
    once per path (2**40 times for a 40-level tree of shared pairs).
    """
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    depth = [0]

    def visit(rec: PersistentRecord, prefix: str) -> None:
        where = f"{what}.{prefix[:-1]}" if prefix else what
        if len(where) > 120:
            where = f"{where[:60]}...{where[-57:]}"
        if id(rec) in seen:
            raise _FormatError(f"{where}: a module appears twice in the tree (shared or cyclic)")
        if depth[0] > _MAX_DEPTH or len(seen) >= _MAX_MODULES:
            raise LimitError(f"{where}: the module tree is deeper than {_MAX_DEPTH} levels or has more "
                             f"than {_MAX_MODULES:,} modules")
        seen.add(id(rec))
        depth[0] += 1
        params, buffers, modules, non_persistent = _module_dicts(rec, where)
        for kind, members in (("parameter", params), ("buffer", buffers)):
            for name, value in members.items():
                if value is None or (kind == "buffer" and name in non_persistent):
                    continue
                if not isinstance(value, _TensorRef):
                    raise _FormatError(f"{kind} {prefix}{name} of {what} is not a tensor")
                if len(out) >= _MAX_TENSORS:
                    raise LimitError(f"{what} has more than {_MAX_TENSORS:,} tensors")
                out[prefix + name] = value.tensor.detach()
        for name, child in modules.items():
            if child is None:
                continue
            if not isinstance(child, PersistentRecord):
                raise _FormatError(f"submodule {prefix}{name} of {what} is not a network object")
            visit(child, f"{prefix}{name}.")
        depth[0] -= 1

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
    if not isinstance(args, (tuple, list)) or len(args) != 0:
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
    return kwargs  # their values are checked, for both file formats, by generator_build



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
    max_bytes: int | None = None,
) -> dict[str, Any]:
    """Read an official StyleGAN3 network pickle without executing anything from it.

    Args:
        path_or_file: the ``.pkl`` path, or a binary file object (read from its position; it is
            streamed, so multi-GB files are fine).
        device: where the returned generators live.
        load: which networks to build, out of ``"G_ema"``, ``"G"``, ``"D"``, ``"augment_pipe"``
            (others are returned as None).
        max_bytes: limit on the bytes of the file's tensors and of each generator built
            (default `cfattack.bounded_pickle.MAX_NETWORK_BYTES`, 4 GiB, or
            ``$CFATTACK_MAX_NETWORK_BYTES``); every official release fits the default.

    Returns:
        ``{"G_ema": Generator, "G": Generator | None, "D": record | None,
        "augment_pipe": record | None, "training_set_kwargs": dict | None}``. Generators are our
        `cfattack.stylegan.generator.Generator` in eval mode with ``requires_grad`` off; a record is
        ``{"class_name", "module_src_sha256", "init_kwargs", "state_dict"}`` (CPU tensors).

    Raises:
        UnsafePickleError: the pickle references a global outside the allow-list (naming it).
        NetworkLoadError: the file is missing, empty, truncated, not a pickle, not a StyleGAN3
            network pickle, over a limit (sizes, counts, nesting; checked before allocating), or
            its weights do not fit its constructor kwargs.

    Example::

        data = load_network_pkl("stylegan3-r-ffhqu-256x256.pkl", load=("G_ema",))
        img = data["G_ema"](torch.randn(1, 512), None)   # [1, 3, 256, 256]
    """
    wanted = (load,) if isinstance(load, str) else tuple(load)
    bad = [name for name in wanted if name not in NETWORK_KEYS]
    if bad:
        raise InvalidInputError(f"load={wanted!r}: unknown network names {bad}; allowed: {list(NETWORK_KEYS)}")
    device = _as_device(device)
    limit = network_bytes_limit(max_bytes)
    source = _source_name(path_or_file)
    data = _unpickle_network(path_or_file, source, limit)
    try:
        generators, result = _read_records(data, wanted)
        for name, (init_kwargs, state_dict) in generators.items():
            result[name] = _build_generator(init_kwargs, state_dict, name, source, device, limit)
    except LimitError as exc:
        raise NetworkLoadError(f"{source}: refusing to load: {exc}") from exc
    except _FormatError as exc:
        raise NetworkLoadError(f"{source}: not a valid StyleGAN3 network pickle: {exc}") from exc
    except CfattackError:
        raise
    except Exception as exc:
        # The records are untrusted data; a failure we did not foresee is still a bad file.
        raise NetworkLoadError(f"{source}: not a valid StyleGAN3 network pickle ({_one_line(exc)})") from exc
    return result


def _read_records(data: Any, wanted: tuple[str, ...]) -> tuple[dict[str, tuple[dict, dict]], dict[str, Any]]:
    """(generator kwargs and state dicts to build, the result dict with the other networks)."""
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
    return generators, result
