"""Write network pickles in the format of official StyleGAN3 snapshots, for tests.

No NVIDIA code is needed or imported: the stream refers by name to globals that do not exist
in this process (``torch_utils.persistence._reconstruct_persistent_obj``, ``dnnlib.util.EasyDict``),
which a pure-Python pickler subclass writes as plain GLOBAL/STACK_GLOBAL opcodes. Tensors are
written the way torch pickles them (``_rebuild_parameter`` / ``_rebuild_tensor_v2`` over
``torch.storage._load_from_bytes`` of a legacy ``torch.save`` stream), but byte for byte by this
file, so a "torch 1.x" variant (OrderedDict module dicts, fewer hook keys, ``numpy.core``) can
be written with any installed torch. The structure follows
``tests/data/golden/pickle_format.md``; embedded module sources are placeholders.

    python -m tests.tools.make_official_pickle T32_c10_gray out.pkl [--variant torch1]
"""

from __future__ import annotations

import argparse
import io
import pickle
import struct
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "LEGACY_MAGIC",
    "PLACEHOLDER_SRC",
    "PLACEHOLDER_SRC_D",
    "Call",
    "Discriminator",
    "EasyDict",
    "GlobalRef",
    "NamePickler",
    "dumps",
    "legacy_storage_stream",
    "module_record",
    "official_pickle_bytes",
    "snapshot_dumps",
    "storage_blob",
    "tensor_call",
    "write_official_pickle",
]

PLACEHOLDER_SRC = "# placeholder module source for tests (networks)\n"
PLACEHOLDER_SRC_D = "# placeholder module source for tests (discriminator)\n"
VARIANTS = ("torch2", "torch1")

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_SYS_INFO = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}
_STORAGE_NAMES = {
    torch.float32: "FloatStorage",
    torch.float64: "DoubleStorage",
    torch.float16: "HalfStorage",
    torch.bfloat16: "BFloat16Storage",
    torch.int64: "LongStorage",
    torch.int32: "IntStorage",
    torch.int16: "ShortStorage",
    torch.int8: "CharStorage",
    torch.uint8: "ByteStorage",
    torch.bool: "BoolStorage",
}


# ---------------------------------------------------------------------------------------------
# Pickling names that do not exist here.


_GLOBAL_REFS: dict[tuple[str, str], GlobalRef] = {}


class GlobalRef:
    """A reference to ``module.name`` that the pickle will name without importing it."""

    module: str
    name: str

    def __new__(cls, module: str, name: str) -> GlobalRef:  # noqa: PYI034
        # One object per name, so the pickler memoizes repeated references like real pickles.
        key = (module, name)
        if key not in _GLOBAL_REFS:
            obj = super().__new__(cls)
            obj.module, obj.name = module, name
            _GLOBAL_REFS[key] = obj
        return _GLOBAL_REFS[key]

    def __repr__(self) -> str:
        return f"GlobalRef({self.module}.{self.name})"

    def __call__(self, *args: Any) -> Any:  # pickle insists that REDUCE targets be callable
        raise TypeError(f"{self!r} only names a global; it cannot be called here")


class Call:
    """Pickles as ``func(*args)`` (a REDUCE), with func a GlobalRef, another Call, or a real global."""

    def __init__(self, func: Any, args: tuple = (), state: Any = None) -> None:
        self.func, self.args, self.state = func, tuple(args), state

    def __call__(self, *args: Any) -> Any:  # a Call may itself be the target of a REDUCE
        raise TypeError("Call objects only describe a REDUCE; they cannot be called here")


class EasyDict(dict):
    """Stands for ``dnnlib.util.EasyDict``: a dict subclass pickled with NEWOBJ + SETITEMS."""


class NamePickler(pickle._Pickler):
    """Pure-Python pickler that can write GLOBAL references to any ``module.name``.

    Reductions: GlobalRef -> the global itself; Call -> REDUCE; EasyDict -> NEWOBJ of
    ``dnnlib.util.EasyDict``; plus whatever ``reducers`` (a {type: fn(obj) -> reduce tuple})
    adds for this pickler.
    """

    def __init__(self, file: Any, protocol: int, reducers: dict[type, Callable[[Any], Any]] | None = None) -> None:
        super().__init__(file, protocol=protocol)
        self._reducers = reducers or {}

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, GlobalRef) or obj is EasyDict:
            return obj.name if isinstance(obj, GlobalRef) else "EasyDict"  # -> save_global below
        if isinstance(obj, Call):
            return (obj.func, obj.args) if obj.state is None else (obj.func, obj.args, obj.state)
        for kind, reducer in self._reducers.items():
            if isinstance(obj, kind):
                return reducer(obj)
        return NotImplemented

    def save_global(self, obj: Any, name: str | None = None) -> None:
        if obj is EasyDict:
            module, name = "dnnlib.util", "EasyDict"
        elif isinstance(obj, GlobalRef):
            module, name = obj.module, obj.name
        else:
            super().save_global(obj, name)
            return
        if self.proto >= 4:
            self.save(module)
            self.save(name)
            self.write(pickle.STACK_GLOBAL)
        else:
            self.write(pickle.GLOBAL + f"{module}\n{name}\n".encode())
        self.memoize(obj)


def dumps(obj: Any, protocol: int = 4, reducers: dict | None = None) -> bytes:
    buf = io.BytesIO()
    NamePickler(buf, protocol, reducers).dump(obj)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# Tensors.


class _Blob:
    """A storage: reduces to ``torch.storage._load_from_bytes(<legacy stream>)``."""

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor


class _StorageMarker:
    """The storage inside a nested stream (pickled as a persistent id)."""


def legacy_storage_stream(flat: torch.Tensor, key: str = "0", *, object_payload: Any = None) -> bytes:
    """A legacy (non-zip) ``torch.save`` stream of one storage holding ``flat``'s elements.

    Five protocol-2 pickles (magic, protocol, sys info, the storage as a persistent id, the
    key list), then the int64 element count and the raw bytes. ``object_payload`` replaces the
    fourth pickle's object (tests use it to smuggle globals into a nested stream).
    """
    flat = flat.detach().cpu().contiguous().reshape(-1)
    numel = flat.numel()
    marker = _StorageMarker()
    storage_global = GlobalRef("torch", _STORAGE_NAMES[flat.dtype])

    class _StreamPickler(NamePickler):
        def persistent_id(self, obj: Any) -> Any:
            if obj is marker:
                return ("storage", storage_global, key, "cpu", numel, None)
            return None

    buf = io.BytesIO()
    for value in (LEGACY_MAGIC, _LEGACY_PROTOCOL, _SYS_INFO):
        NamePickler(buf, 2).dump(value)
    _StreamPickler(buf, 2).dump(marker if object_payload is None else object_payload)
    NamePickler(buf, 2).dump([key])
    buf.write(struct.pack("<q", numel))
    buf.write(flat.view(torch.uint8).numpy().tobytes() if numel else b"")
    return buf.getvalue()


class _TensorValue:
    """A tensor to write; ``parameter`` selects the nn.Parameter form."""

    _next_key = 0

    def __init__(self, tensor: torch.Tensor, parameter: bool) -> None:
        self.tensor = tensor.detach().cpu().clone(memory_format=torch.contiguous_format)
        self.parameter = parameter


def storage_blob(flat: torch.Tensor) -> _Blob:
    """A storage holding ``flat``'s elements; the same object written twice is one memoized storage."""
    return _Blob(flat)


def tensor_call(storage: _Blob, shape: tuple, stride: tuple, offset: int = 0, parameter: bool = False) -> Call:
    """A tensor as ``_rebuild_tensor_v2(storage, offset, shape, stride, ...)`` with any strides
    (tests use it for views the reader must refuse), optionally wrapped in ``_rebuild_parameter``."""
    plain = Call(GlobalRef("torch._utils", "_rebuild_tensor_v2"),
                 (storage, offset, tuple(shape), tuple(stride), False, OrderedDict()))
    return Call(GlobalRef("torch._utils", "_rebuild_parameter"), (plain, False, OrderedDict())) if parameter else plain


def _reduce_tensor_value(value: _TensorValue) -> Any:
    t = value.tensor
    storage = _Blob(t)
    plain = Call(
        GlobalRef("torch._utils", "_rebuild_tensor_v2"),
        (storage, 0, tuple(t.shape), tuple(t.stride()), False, OrderedDict()),
    )
    if value.parameter:
        return GlobalRef("torch._utils", "_rebuild_parameter"), (plain, False, OrderedDict())
    return plain.func, plain.args


def _reduce_tensor_natively(value: _TensorValue) -> Any:
    # torch's own reduction (for checking the reader against the installed torch's output).
    if value.parameter:
        return torch.nn.Parameter(value.tensor, requires_grad=False).__reduce_ex__(4)
    return value.tensor.__reduce_ex__(4)


def _reduce_blob(blob: _Blob) -> Any:
    _TensorValue._next_key += 1
    stream = legacy_storage_stream(blob.tensor, key=str(94000000000000 + 16 * _TensorValue._next_key))
    return GlobalRef("torch.storage", "_load_from_bytes"), (stream,)


# ---------------------------------------------------------------------------------------------
# numpy values, written under the numpy module name of the chosen era.


class _NumpyValue:
    def __init__(self, value: np.ndarray | np.generic, core: str) -> None:
        self.value, self.core = value, core


def _dtype_call(dtype: np.dtype, numpy1: bool) -> Call:
    code = dtype.str.lstrip("<>|=")
    order = "|" if dtype.itemsize == 1 else "<"
    align, copy = (0, 1) if numpy1 else (False, True)  # numpy 1.x wrote ints here
    return Call(GlobalRef("numpy", "dtype"), (code, align, copy), state=(3, order, None, None, None, -1, -1, 0))


def _reduce_numpy(value: _NumpyValue) -> Any:
    v = value.value
    numpy1 = value.core == "numpy.core.multiarray"
    if isinstance(v, np.generic):
        return GlobalRef(value.core, "scalar"), (_dtype_call(v.dtype, numpy1), v.tobytes())
    arr = np.ascontiguousarray(v)
    state = (1, tuple(arr.shape), _dtype_call(arr.dtype, numpy1), False, arr.tobytes())
    return GlobalRef(value.core, "_reconstruct"), (GlobalRef("numpy", "ndarray"), (0,), b"b"), state


# ---------------------------------------------------------------------------------------------
# Module trees -> persistent records.

_INT_ARRAY_ATTRS = {"size", "in_size", "out_size"}
_FLOAT64_ATTRS = {
    "sampling_rate", "bandwidth", "in_cutoff", "out_cutoff", "in_half_width", "out_half_width", "weight_gain",
}
_HOOK_KEYS = {
    # torch 2.x Module.__init__ bookkeeping, in order (keys between _buffers and _modules).
    "torch2": [
        "_non_persistent_buffers_set", "_backward_pre_hooks", "_backward_hooks", "_is_full_backward_hook",
        "_forward_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called", "_forward_pre_hooks",
        "_forward_pre_hooks_with_kwargs", "_state_dict_hooks", "_state_dict_pre_hooks",
        "_load_state_dict_pre_hooks", "_load_state_dict_post_hooks",
    ],
    # torch 1.9-era.
    "torch1": [
        "_non_persistent_buffers_set", "_backward_hooks", "_is_full_backward_hook", "_forward_hooks",
        "_forward_pre_hooks", "_state_dict_hooks", "_load_state_dict_pre_hooks",
    ],
}


class _Persistent:
    """Reduces to ``torch_utils.persistence._reconstruct_persistent_obj(meta)``."""

    def __init__(self, meta: dict) -> None:
        self.meta = meta


def _reduce_persistent(obj: _Persistent) -> Any:
    return GlobalRef("torch_utils.persistence", "_reconstruct_persistent_obj"), (obj.meta,)


def _plain_attr(name: str, value: Any, core: str) -> Any:
    """An attribute value as NVIDIA's modules hold it, or ``_SKIP`` for what is not plain data."""
    if name in _INT_ARRAY_ATTRS and isinstance(value, (np.ndarray, list, tuple)):
        return _NumpyValue(np.asarray(value, dtype=np.int64), core)
    if name in _FLOAT64_ATTRS and isinstance(value, (int, float, np.floating)) and not isinstance(value, bool):
        return _NumpyValue(np.float64(value), core)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, (bool, int, float, str)) for v in value):
        return type(value)(value)
    if isinstance(value, np.generic):
        return _NumpyValue(value, core)
    return _SKIP


_SKIP = object()


def _easydicts(value: Any) -> Any:
    """init_kwargs as NVIDIA's train.py stores them: nested kwargs dicts are EasyDicts."""
    if isinstance(value, dict):
        return {k: (EasyDict(v) if isinstance(v, dict) else v) for k, v in value.items()}
    return value


def module_record(
    module: torch.nn.Module,
    *,
    variant: str = "torch2",
    module_src: str = PLACEHOLDER_SRC,
    init_kwargs: dict | None = None,
    edit_state: Callable[[str, dict], None] | None = None,
    path: str = "",
    tensor_form: Callable[[torch.Tensor, bool], Any] | None = None,
) -> _Persistent:
    """The persistent record of ``module`` and its submodules (class names from the module types).

    ``init_kwargs`` goes to the root's ``_init_kwargs`` (nested dicts become EasyDicts);
    submodules get an empty one. ``edit_state(path, state)`` may change each record's state
    before it is written (tests use it to break files in controlled ways). ``tensor_form(tensor,
    is_parameter)`` replaces how each parameter and buffer is written (e.g. with `tensor_call`,
    so a module on the meta device can be described by views of a tiny storage).
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    core = "numpy._core.multiarray" if variant == "torch2" else "numpy.core.multiarray"
    container = dict if variant == "torch2" else OrderedDict

    form = tensor_form or (lambda tensor, parameter: _TensorValue(tensor, parameter=parameter))
    state: dict[str, Any] = {"training": False}
    state["_parameters"] = container(
        (n, None if p is None else form(p, True)) for n, p in module._parameters.items()
    )
    state["_buffers"] = container(
        (n, None if b is None else form(b, False)) for n, b in module._buffers.items()
    )
    for key in _HOOK_KEYS[variant]:
        if key == "_non_persistent_buffers_set":
            state[key] = set(module._non_persistent_buffers_set)
        elif key == "_is_full_backward_hook":
            state[key] = None
        else:
            state[key] = OrderedDict()
    state["_modules"] = container(
        (
            n,
            None
            if child is None
            else module_record(
                child, variant=variant, module_src=module_src, edit_state=edit_state, path=f"{path}{n}.",
                tensor_form=tensor_form,
            ),
        )
        for n, child in module._modules.items()
    )
    for name, value in vars(module).items():
        if name.startswith("_") or name == "training":
            continue
        plain = _plain_attr(name, value, core)
        if plain is not _SKIP:
            state[name] = plain
    state["_init_args"] = ()
    state["_init_kwargs"] = _easydicts(dict(init_kwargs or {}))
    if edit_state is not None:
        edit_state(path.rstrip("."), state)
    meta = {"type": "class", "version": 6, "module_src": module_src, "class_name": type(module).__name__,
            "state": state}
    return _Persistent(meta)


class Discriminator(torch.nn.Module):
    """A few-tensor stand-in for the official discriminator (only its record is written)."""

    def __init__(self, img_channels: int = 1, c_dim: int = 0) -> None:
        super().__init__()
        self.b32 = DiscriminatorBlock(img_channels)
        self.b4 = DiscriminatorEpilogue(c_dim)
        self.img_channels = img_channels


class DiscriminatorBlock(torch.nn.Module):
    def __init__(self, img_channels: int) -> None:
        super().__init__()
        self.fromrgb = Conv2dLayer(img_channels, 4, 1)
        self.conv0 = Conv2dLayer(4, 4, 3)
        self.resolution = 32


class DiscriminatorEpilogue(torch.nn.Module):
    def __init__(self, c_dim: int) -> None:
        super().__init__()
        self.mbstd = MinibatchStdLayer()
        self.out = Conv2dLayer(4, max(c_dim, 1), 1)


class Conv2dLayer(torch.nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(in_channels * 100 + out_channels * 10 + kernel_size)
        shape = [out_channels, in_channels, kernel_size, kernel_size]
        self.weight = torch.nn.Parameter(torch.randn(shape, generator=g))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))
        self.register_buffer("resample_filter", torch.tensor([[1.0, 3.0, 3.0, 1.0]]) / 8)
        self.weight_gain = 1 / np.sqrt(in_channels * kernel_size**2)
        self.activation = "lrelu"


class MinibatchStdLayer(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.group_size = 4
        self.num_channels = 1


def official_pickle_bytes(
    G_ema: torch.nn.Module,
    *,
    G: torch.nn.Module | None = None,
    D: torch.nn.Module | None = None,
    augment_pipe: torch.nn.Module | None = None,
    training_set_kwargs: dict | None = None,
    variant: str = "torch2",
    module_src: str = PLACEHOLDER_SRC,
    init_kwargs: dict | None = None,
    edit_state: Callable[[str, dict], None] | None = None,
    top_level: Callable[[dict], Any] | None = None,
    native_tensors: bool = False,
) -> bytes:
    """An official-format snapshot pickle (protocol 4) of our modules.

    Args:
        G_ema: a module tree with NVIDIA's class names (our Generator); its ``init_kwargs``
            property gives ``_init_kwargs`` unless ``init_kwargs`` overrides it.
        G: the training generator (default: the same weights as G_ema, written separately).
        D: the discriminator record (default: a `Discriminator`).
        augment_pipe: default None (``--aug=noaug``).
        training_set_kwargs: default: a plausible ImageFolderDataset dict.
        variant: ``"torch2"`` (dict module dicts, numpy._core) or ``"torch1"`` (OrderedDicts,
            torch 1.9 hook keys, numpy.core).
        module_src: the embedded "source" (never executed by cfattack).
        edit_state: ``fn(path, state)`` hook applied to every G/G_ema record (path "" = root).
        top_level: ``fn(snapshot_dict) -> object`` to replace what is pickled (bad-shape tests).
        native_tensors: let the installed torch reduce tensors itself instead of this file.
    """
    if init_kwargs is None:
        init_kwargs = G_ema.init_kwargs
    if training_set_kwargs is None:
        training_set_kwargs = {
            "class_name": "training.dataset.ImageFolderDataset", "path": "datasets/example-32x32.zip",
            "use_labels": bool(init_kwargs.get("c_dim", 0)), "max_size": 1000, "xflip": False,
            "resolution": int(init_kwargs.get("img_resolution", 32)), "random_seed": 0,
        }
    if D is None:
        D = Discriminator(int(init_kwargs.get("img_channels", 1)), int(init_kwargs.get("c_dim", 0)))

    def generator_record(module: torch.nn.Module) -> _Persistent:
        return module_record(module, variant=variant, module_src=module_src, init_kwargs=init_kwargs,
                             edit_state=edit_state)

    d_kwargs = {"c_dim": int(init_kwargs.get("c_dim", 0)), "img_resolution": 32, "img_channels": D.img_channels,
                "block_kwargs": {"freeze_layers": 0}, "mapping_kwargs": {}, "epilogue_kwargs": {"mbstd_group_size": 4}}
    snapshot = {
        "G": generator_record(G if G is not None else G_ema),
        "D": module_record(D, variant=variant, module_src=PLACEHOLDER_SRC_D, init_kwargs=d_kwargs),
        "G_ema": generator_record(G_ema),
        "augment_pipe": None if augment_pipe is None else module_record(augment_pipe, variant=variant),
        "training_set_kwargs": dict(training_set_kwargs),
    }
    return snapshot_dumps(snapshot if top_level is None else top_level(snapshot), native_tensors=native_tensors)


def snapshot_dumps(obj: Any, *, native_tensors: bool = False) -> bytes:
    """Protocol-4 pickle of ``obj`` where records (from `module_record`), tensors and numpy
    values inside take their official forms."""
    reducers = {
        _Persistent: _reduce_persistent,
        _TensorValue: _reduce_tensor_natively if native_tensors else _reduce_tensor_value,
        _Blob: _reduce_blob,
        _NumpyValue: _reduce_numpy,
    }
    return dumps(obj, protocol=4, reducers=reducers)


def write_official_pickle(path: str | Path, G_ema: torch.nn.Module, **kwargs: Any) -> Path:
    """`official_pickle_bytes` written to ``path``; returns the path."""
    path = Path(path)
    path.write_bytes(official_pickle_bytes(G_ema, **kwargs))
    return path


def main(argv: list[str] | None = None) -> int:
    from tests.golden import available_generator_cases, build_golden_generator

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("case", choices=available_generator_cases(), help="golden generator case")
    parser.add_argument("out", type=Path, help="output .pkl path")
    parser.add_argument("--variant", choices=VARIANTS, default="torch2")
    args = parser.parse_args(argv)
    G, _ = build_golden_generator(args.case)
    path = write_official_pickle(args.out, G, variant=args.variant)
    print(f"wrote {path} ({path.stat().st_size} bytes, {args.variant})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
