"""The inert values an official network pickle is rebuilt into, never its code.

A ``torch_utils.persistence`` object becomes a `PersistentRecord` (class name, a hash of the
embedded source, the attribute dict); tensors are rebuilt from their raw bytes (including the
nested legacy ``torch.save`` stream of each storage, parsed here); numpy values go through a
numeric-only reconstruction. These are the replacements the restricted unpickler of
`cfattack.stylegan.safe_unpickler` maps its allow-list to; none of them can be mutated by pickle
BUILD opcodes, so a hostile stream cannot tamper with them either. Sizes are checked before
anything is allocated (`cfattack.bounded_pickle`): a storage holds exactly the bytes its stream
declares and is read once however often it is referenced, every tensor is a fair view of its
storage (no zero or overlapping strides, no two tensors over the same elements), and storages
and numpy arrays count against the byte limit of the load (`LoadState`).
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from cfattack.bounded_pickle import (
    BoundedReader,
    BoundedUnpickler,
    ByteBudget,
    FormatError,
    InertOrderedDict,
    TruncatedError,
    check_strided,
    format_bytes,
    new_ordered_dict,
)
from cfattack.errors import UnsafePickleError
from cfattack.stylegan.file_access import _one_line

__all__ = ["LoadState", "PersistentRecord"]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # first value of a legacy (non-zip) torch.save stream
_LEGACY_PROTOCOL = 1001
_NESTED_MAX_OPS = 512  # a storage stream is five tiny pickles (about 40 opcodes)

# The pickle is well-formed but not a network pickle we understand, or it exceeds a limit.
_FormatError = FormatError


class LoadState:
    """What one load shares between the replacement functions: the byte budget, storages read."""

    def __init__(self, budget: ByteBudget) -> None:
        self.budget = budget
        # id(payload) -> (payload, storage): a payload referenced again is the same storage,
        # not a second copy (the payload is kept so its id cannot be reused).
        self.storages: dict[int, tuple[bytes, _Storage]] = {}


# ---------------------------------------------------------------------------------------------
# Inert values the restricted unpickler produces. None of them can be mutated by pickle BUILD
# opcodes (each rejects __setstate__), so a hostile stream cannot tamper with them either.


class _Inert:
    __slots__ = ()

    def __setstate__(self, state: Any) -> None:
        raise _FormatError(f"the pickle tries to set the state of a {type(self).__name__.lstrip('_')}")

    def __reduce__(self) -> Any:
        raise TypeError(f"{type(self).__name__} values cannot be pickled")


class PersistentRecord(_Inert):
    """What a ``torch_utils.persistence`` object becomes here: data, never code.

    Attributes:
        class_name: the bare class name the pickle gives (``"Generator"``, ``"SynthesisLayer"``...).
        module_src_sha256: hex SHA-256 of the embedded module source (which is never executed).
        state: the object's attribute dict as stored (``_parameters``, ``_buffers``, ``_modules``,
            plain attributes); tensors in it are opaque until read via
            `cfattack.stylegan.official_pickle`.
    """

    __slots__ = ("class_name", "module_src_sha256", "state")

    def __init__(self, class_name: str, module_src_sha256: str, state: dict) -> None:
        self.class_name = class_name
        self.module_src_sha256 = module_src_sha256
        self.state = state

    def __repr__(self) -> str:
        return f"PersistentRecord({self.class_name!r}, src={self.module_src_sha256[:12]})"


class _SafeCallable(_Inert):
    """A replacement for an allowed global: callable by REDUCE, but no type (so no NEWOBJ)."""

    __slots__ = ("fn", "name")

    def __init__(self, name: str, fn: Callable[..., Any]) -> None:
        self.name = name
        self.fn = fn

    def __call__(self, *args: Any) -> Any:
        return self.fn(*args)

    def __repr__(self) -> str:
        return f"<allowed global {self.name}>"


class _TensorRef(_Inert):
    """A tensor rebuilt from the pickle, kept opaque while the pickle is still being read."""

    __slots__ = ("tensor",)

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor


class _Storage(_Inert):
    """A storage read from a nested legacy stream: a flat 1-D tensor of its dtype.

    ``claimed`` counts the elements tensors have taken from it: views may not overlap.
    """

    __slots__ = ("claimed", "data")

    def __init__(self, data: torch.Tensor) -> None:
        self.data = data
        self.claimed = 0


class _StorageType(_Inert):
    """Stand-in for a legacy ``torch.<X>Storage`` class inside a nested storage stream."""

    __slots__ = ("dtype", "name")

    def __init__(self, name: str, dtype: torch.dtype) -> None:
        self.name = name
        self.dtype = dtype


class _StorageRef(_Inert):
    """A nested stream's persistent id, before the raw bytes that follow it are read."""

    __slots__ = ("key", "numel", "storage_type")

    def __init__(self, storage_type: _StorageType, key: str, numel: int) -> None:
        self.storage_type = storage_type
        self.key = key
        self.numel = numel


class _NdarrayClass(_Inert):
    """Stand-in for ``numpy.ndarray``: only usable as the subtype argument of _reconstruct."""

    __slots__ = ()


class _DtypeSpec(_Inert):
    """A numeric numpy dtype under reconstruction (``numpy.dtype`` REDUCE, then BUILD)."""

    __slots__ = ("_built", "dtype")

    def __init__(self, dtype: np.dtype) -> None:
        self.dtype = dtype
        self._built = False

    def __setstate__(self, state: Any) -> None:
        # (version, byte order, subarray, names, fields, elsize, alignment, flags[, metadata])
        if self._built or not isinstance(state, tuple) or len(state) not in (8, 9) or state[0] not in (3, 4):
            raise _FormatError("unexpected numpy dtype state")
        order = state[1]
        if order not in ("<", ">", "|", "=") or any(v is not None for v in state[2:5]):
            raise _FormatError("only plain numeric numpy dtypes are allowed")
        if order in ("<", ">") and self.dtype.itemsize > 1:
            self.dtype = self.dtype.newbyteorder(order)
        self._built = True


class _ArraySpec(_Inert):
    """A numpy array under reconstruction (``_reconstruct`` REDUCE, then BUILD with its bytes)."""

    __slots__ = ("array", "budget")

    def __init__(self, budget: ByteBudget) -> None:
        self.array: np.ndarray | None = None
        self.budget = budget

    def __setstate__(self, state: Any) -> None:
        if self.array is not None or not isinstance(state, tuple) or len(state) != 5:
            raise _FormatError("unexpected numpy array state")
        version, shape, dtype, is_fortran, raw = state
        if version != 1 or not isinstance(dtype, _DtypeSpec) or is_fortran not in (False, True):
            raise _FormatError("unexpected numpy array state")
        shape = _check_int_tuple(shape, "numpy array shape")
        if not isinstance(raw, (bytes, bytearray)) or len(raw) != math.prod(shape) * dtype.dtype.itemsize:
            raise _FormatError("numpy array data does not match its shape and dtype")
        # Each array is a copy: the same bytes referenced many times count every time.
        self.budget.charge(math.prod(shape), dtype.dtype.itemsize, f"a numpy array of {format_bytes(len(raw))}")
        flat = np.frombuffer(raw, dtype=dtype.dtype).copy()
        self.array = flat.reshape(shape, order="F" if is_fortran else "C")


# ---------------------------------------------------------------------------------------------
# Replacements for the allowed globals.

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}
_NUMPY_DTYPE_CODE = re.compile(r"[<>|=]?[biuf]\d{1,2}|[<>|=]?c\d{1,2}")


def _check_int(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _FormatError(f"{what} must be a non-negative int, got {value!r:.40}")
    return value


def _check_int_tuple(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or len(value) > 32:
        raise _FormatError(f"{what} must be a tuple of ints")
    return tuple(_check_int(v, what) for v in value)


def _check_no_hooks(hooks: Any) -> None:
    # Pickles always store an empty OrderedDict here; hooks would be callables.
    if not isinstance(hooks, dict) or hooks:
        raise _FormatError("tensors with backward hooks are not supported")


def _rebuild_tensor_v2(
    storage: Any,
    storage_offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any,
    backward_hooks: Any,
    metadata: Any = None,
) -> _TensorRef:
    """Our version of ``torch._utils._rebuild_tensor_v2``: a checked strided view of a read storage."""
    if not isinstance(storage, _Storage):
        raise _FormatError("tensor data is not a storage")
    if not isinstance(requires_grad, bool):
        raise _FormatError("malformed tensor")
    _check_no_hooks(backward_hooks)
    if metadata:
        raise _FormatError("tensors with extra metadata are not supported")
    numel = check_strided(size, stride, storage_offset, storage.data.numel())
    # Two tensors over the same elements would let a file of N bytes build networks of k * N.
    storage.claimed += numel
    if storage.claimed > storage.data.numel():
        raise _FormatError("tensors share storage elements (their views overlap)")
    if numel == 0:
        return _TensorRef(storage.data.new_empty(tuple(size)))
    return _TensorRef(torch.as_strided(storage.data, tuple(size), tuple(stride), storage_offset))


def _rebuild_parameter(data: Any, requires_grad: Any, backward_hooks: Any) -> _TensorRef:
    """Our version of ``torch._utils._rebuild_parameter``: the data tensor itself."""
    if not isinstance(data, _TensorRef) or not isinstance(requires_grad, bool):
        raise _FormatError("malformed parameter")
    _check_no_hooks(backward_hooks)
    return data


def _numpy_dtype(obj: Any, align: Any = False, copy: Any = True) -> _DtypeSpec:
    """Our version of ``numpy.dtype(obj, align, copy)`` for numeric type codes only."""
    if not isinstance(obj, str) or not _NUMPY_DTYPE_CODE.fullmatch(obj):
        raise _FormatError(f"numpy dtype {obj!r:.40} is not allowed (only numeric dtypes are)")
    if align not in (False, True) or copy not in (False, True):  # bools (numpy 2) or 0/1 (numpy 1.x)
        raise _FormatError("malformed numpy dtype")
    try:
        dtype = np.dtype(obj)
    except TypeError as exc:
        raise _FormatError(f"unknown numpy dtype {obj!r}") from exc
    if dtype.kind not in "biufc" or dtype.hasobject:
        raise _FormatError(f"numpy dtype {obj!r} is not allowed (only numeric dtypes are)")
    return _DtypeSpec(dtype)


def _numpy_reconstruct(state: LoadState, subtype: Any, shape: Any, typecode: Any) -> _ArraySpec:
    """Our version of ``numpy.core.multiarray._reconstruct``: only plain ndarrays."""
    if not isinstance(subtype, _NdarrayClass) or type(shape) is not tuple or shape != (0,) \
            or typecode not in (b"b", "b"):
        raise _FormatError("unexpected numpy array reconstruction")
    return _ArraySpec(state.budget)


def _numpy_scalar(dtype: Any, raw: Any = None) -> Any:
    """Our version of ``numpy.core.multiarray.scalar``: a numeric numpy scalar from its bytes."""
    if not isinstance(dtype, _DtypeSpec) or not isinstance(raw, bytes) or len(raw) != dtype.dtype.itemsize:
        raise _FormatError("malformed numpy scalar")
    return np.frombuffer(raw, dtype=dtype.dtype, count=1)[0].copy()


def _new_ordered_dict(*args: Any) -> InertOrderedDict:
    # REDUCE with () (then SETITEMS) is what pickles contain. The result refuses BUILD, which
    # would otherwise set attributes such as ``get`` or ``items`` that shadow its methods.
    return new_ordered_dict(*args)


_STORAGE_TYPES = {("torch", name): _StorageType(name, dtype) for name, dtype in _STORAGE_DTYPES.items()}


class _NestedStorageUnpickler(BoundedUnpickler):
    """Reads the pickles inside a legacy ``torch.save`` stream of one storage.

    Allowed globals: ``torch.<X>Storage`` classes only (as inert type tokens); the persistent id
    ``('storage', type, key, location, numel, None)`` becomes a `_StorageRef`.
    """

    def __init__(self, file: Any, refs: dict[str, _StorageRef]) -> None:
        super().__init__(file, _STORAGE_TYPES, max_ops=_NESTED_MAX_OPS)
        self._refs = refs

    def persistent_load(self, pid: Any) -> _StorageRef:
        if not isinstance(pid, tuple) or len(pid) != 6 or pid[0] != "storage":
            raise _FormatError("unexpected persistent id in a storage stream")
        _, storage_type, key, location, numel, view_metadata = pid
        if not isinstance(storage_type, _StorageType) or not isinstance(key, str) or not isinstance(location, str):
            raise _FormatError("malformed storage id")
        if view_metadata is not None:
            raise _FormatError("storage views are not supported")
        ref = self._refs.get(key)
        if ref is None:
            ref = self._refs[key] = _StorageRef(storage_type, key, _check_int(numel, "storage size"))
        return ref


def _load_from_bytes(state: LoadState, payload: Any) -> _Storage:
    """Our version of ``torch.storage._load_from_bytes``: parse the legacy stream ourselves.

    The stream is five small pickles (magic number, protocol version, system info, the storage
    as a persistent id, the list of storage keys), then for the storage an int64 element count
    and the raw little-endian bytes. A payload referenced again gives the same storage.
    """
    if not isinstance(payload, bytes):
        raise _FormatError("storage payload is not bytes")
    seen = state.storages.get(id(payload))
    if seen is not None and seen[0] is payload:
        return seen[1]
    storage = _parse_storage_stream(payload, state.budget)
    state.storages[id(payload)] = (payload, storage)
    return storage


def _parse_storage_stream(payload: bytes, budget: ByteBudget) -> _Storage:
    stream = io.BytesIO(payload)
    reader = BoundedReader(stream, len(payload))
    refs: dict[str, _StorageRef] = {}

    def next_value() -> Any:
        try:
            return _NestedStorageUnpickler(reader, refs).load()
        except (UnsafePickleError, _FormatError):
            raise
        except (TruncatedError, EOFError) as exc:
            raise _FormatError("truncated storage payload") from exc
        except Exception as exc:  # untrusted bytes: any parser failure means a corrupt payload
            raise _FormatError(f"corrupt storage payload ({_one_line(exc)})") from exc

    if next_value() != _LEGACY_MAGIC or next_value() != _LEGACY_PROTOCOL:
        raise _FormatError("storage payload is not a legacy torch.save stream")
    sys_info = next_value()
    if not isinstance(sys_info, dict) or sys_info.get("little_endian") is not True:
        raise _FormatError("only little-endian storages are supported")
    ref = next_value()
    keys = next_value()
    if not isinstance(ref, _StorageRef) or keys != [ref.key] or len(refs) != 1:
        raise _FormatError("storage payload does not hold exactly one storage")

    header = stream.read(8)
    numel = int.from_bytes(header, "little", signed=True) if len(header) == 8 else -1
    if numel != ref.numel:
        raise _FormatError("storage size does not match its header")
    dtype = ref.storage_type.dtype
    nbytes = numel * dtype.itemsize
    start = stream.tell()
    if start + nbytes != len(payload):
        raise _FormatError("storage payload has the wrong length")
    budget.charge(numel, dtype.itemsize, f"a storage of {format_bytes(nbytes)}")
    if nbytes == 0:
        return _Storage(torch.empty(0, dtype=dtype))
    raw = np.frombuffer(payload, dtype=np.uint8, count=nbytes, offset=start).copy()
    return _Storage(torch.from_numpy(raw).view(dtype))
