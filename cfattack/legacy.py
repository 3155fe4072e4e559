"""Safe reading of official StyleGAN3 network pickles, and our own generator checkpoints.

An official snapshot (``stylegan3-t-afhqv2-512x512.pkl`` ...) is a pickle whose network
objects carry the Python source of the module that defines them; NVIDIA's loader executes
that source. We never do. A restricted unpickler resolves only the handful of globals such a
pickle legitimately references, each mapped to an inert replacement written here: network
objects become `PersistentRecord` values (class name, a hash of the embedded source, the
attribute dict), tensors are rebuilt from their raw bytes, numpy values through a numeric-only
reconstruction. Any other global raises `UnsafePickleError` before anything is called. Our own
`Generator` is then built from the record's constructor kwargs and loaded with a strict state
dict.

Generators we train are saved in a separate, simpler format: a ``torch.save`` zip of plain
types (``format``, ``class``, ``init_kwargs``, ``state_dict``, ``extra``) read back with
``torch.load(weights_only=True)``.

Example::

    from cfattack.legacy import load_network_pkl, load_generator
    data = load_network_pkl("stylegan3-t-afhqv2-512x512.pkl")   # dict: G_ema, G, D, ...
    G = data["G_ema"]                                           # our Generator, eval, no grad
    G = load_generator("net.pkl")                               # either format, G_ema only
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import pickle
import re
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from cfattack.atomic import atomic_write
from cfattack.errors import (
    CfattackError,
    InvalidInputError,
    NetworkLoadError,
    UnsafePickleError,
)
from cfattack.generator import Generator

__all__ = [
    "CHECKPOINT_FORMAT",
    "NetworkLoadError",
    "PersistentRecord",
    "UnsafePickleError",
    "load_generator",
    "load_generator_checkpoint",
    "load_network_pkl",
    "read_generator_checkpoint",
    "save_generator_checkpoint",
]

CHECKPOINT_FORMAT = "cfattack.generator/1"
"""Value of the ``format`` entry of a checkpoint written by `save_generator_checkpoint`."""

NETWORK_KEYS = ("G_ema", "G", "D", "augment_pipe")
"""Networks `load_network_pkl` can be asked for (its ``load`` argument)."""

_ZIP_MAGIC = b"PK\x03\x04"
_PERSISTENCE_VERSION = 6  # the only version of torch_utils.persistence records in StyleGAN3
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # first value of a legacy (non-zip) torch.save stream
_LEGACY_PROTOCOL = 1001
_MAX_DEPTH = 64  # nesting limit when walking module trees and kwargs from a file

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


class _FormatError(Exception):
    """The pickle is well-formed but not a network pickle we understand (internal)."""


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
            plain attributes); tensors in it are opaque until read via this module.
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
    """A storage read from a nested legacy stream: a flat 1-D tensor of its dtype."""

    __slots__ = ("data",)

    def __init__(self, data: torch.Tensor) -> None:
        self.data = data


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

    __slots__ = ("array",)

    def __init__(self) -> None:
        self.array: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        if self.array is not None or not isinstance(state, tuple) or len(state) != 5:
            raise _FormatError("unexpected numpy array state")
        version, shape, dtype, is_fortran, raw = state
        if version != 1 or not isinstance(dtype, _DtypeSpec) or is_fortran not in (False, True):
            raise _FormatError("unexpected numpy array state")
        shape = _check_int_tuple(shape, "numpy array shape")
        if not isinstance(raw, (bytes, bytearray)) or len(raw) != math.prod(shape) * dtype.dtype.itemsize:
            raise _FormatError("numpy array data does not match its shape and dtype")
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
    """Our version of ``torch._utils._rebuild_tensor_v2``: a strided view of a read storage."""
    if not isinstance(storage, _Storage):
        raise _FormatError("tensor data is not a storage")
    offset = _check_int(storage_offset, "tensor storage offset")
    size = _check_int_tuple(size, "tensor size")
    stride = _check_int_tuple(stride, "tensor stride")
    if len(size) != len(stride) or not isinstance(requires_grad, bool):
        raise _FormatError("malformed tensor")
    _check_no_hooks(backward_hooks)
    if metadata:
        raise _FormatError("tensors with extra metadata are not supported")
    if math.prod(size) == 0:
        return _TensorRef(storage.data.new_empty(size))
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= storage.data.numel():
        raise _FormatError("tensor reaches past the end of its storage")
    return _TensorRef(torch.as_strided(storage.data, size, stride, offset))


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


def _numpy_reconstruct(subtype: Any, shape: Any, typecode: Any) -> _ArraySpec:
    """Our version of ``numpy.core.multiarray._reconstruct``: only plain ndarrays."""
    if not isinstance(subtype, _NdarrayClass) or shape != (0,) or typecode not in (b"b", "b"):
        raise _FormatError("unexpected numpy array reconstruction")
    return _ArraySpec()


def _numpy_scalar(dtype: Any, raw: Any = None) -> Any:
    """Our version of ``numpy.core.multiarray.scalar``: a numeric numpy scalar from its bytes."""
    if not isinstance(dtype, _DtypeSpec) or not isinstance(raw, bytes) or len(raw) != dtype.dtype.itemsize:
        raise _FormatError("malformed numpy scalar")
    return np.frombuffer(raw, dtype=dtype.dtype, count=1)[0].copy()


def _new_ordered_dict(*args: Any) -> OrderedDict:
    # REDUCE with () (then SETITEMS) is what pickles contain; an iterable of pairs is harmless.
    if len(args) > 1:
        raise _FormatError("malformed OrderedDict")
    return OrderedDict(*args)


class _NestedStorageUnpickler(pickle.Unpickler):
    """Reads the pickles inside a legacy ``torch.save`` stream of one storage.

    Allowed globals: ``torch.<X>Storage`` classes only (as inert type tokens); the persistent id
    ``('storage', type, key, location, numel, None)`` becomes a `_StorageRef`.
    """

    def __init__(self, file: IO[bytes], refs: dict[str, _StorageRef]) -> None:
        super().__init__(file)
        self._refs = refs

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name, _STORAGE_DTYPES[name])
        raise UnsafePickleError(f"{module}.{name}")

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


def _load_from_bytes(payload: Any) -> _Storage:
    """Our version of ``torch.storage._load_from_bytes``: parse the legacy stream ourselves.

    The stream is five small pickles (magic number, protocol version, system info, the storage
    as a persistent id, the list of storage keys), then for the storage an int64 element count
    and the raw little-endian bytes.
    """
    if not isinstance(payload, (bytes, bytearray)):
        raise _FormatError("storage payload is not bytes")
    stream = io.BytesIO(payload)
    refs: dict[str, _StorageRef] = {}

    def next_value() -> Any:
        try:
            return _NestedStorageUnpickler(stream, refs).load()
        except (UnsafePickleError, _FormatError):
            raise
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
    if nbytes == 0:
        return _Storage(torch.empty(0, dtype=dtype))
    raw = np.frombuffer(payload, dtype=np.uint8, count=nbytes, offset=start).copy()
    return _Storage(torch.from_numpy(raw).view(dtype))


_NUMPY_GLOBALS: dict[str, Callable[..., Any]] = {
    "_reconstruct": _numpy_reconstruct,
    "scalar": _numpy_scalar,
}


def _allowed_globals(reconstruct_persistent: Callable[..., Any]) -> dict[tuple[str, str], Any]:
    """The whole allow-list of an official network pickle (pickle_format.md section 6)."""
    table: dict[tuple[str, str], Any] = {
        ("torch_utils.persistence", "_reconstruct_persistent_obj"): reconstruct_persistent,
        ("collections", "OrderedDict"): _new_ordered_dict,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
        ("torch.storage", "_load_from_bytes"): _load_from_bytes,
        ("numpy", "dtype"): _numpy_dtype,
    }
    for numpy_core in ("numpy.core.multiarray", "numpy._core.multiarray"):  # numpy 1.x / 2.x
        for name, fn in _NUMPY_GLOBALS.items():
            table[(numpy_core, name)] = fn
    wrapped: dict[tuple[str, str], Any] = {
        key: _SafeCallable(f"{key[0]}.{key[1]}", fn) for key, fn in table.items()
    }
    wrapped[("numpy", "ndarray")] = _NdarrayClass()
    # EasyDict is a dict subclass pickled with NEWOBJ, which needs a type: plain dict is one,
    # and an immutable builtin (BUILD cannot set attributes on it).
    wrapped[("dnnlib.util", "EasyDict")] = dict
    return wrapped


class _NetworkUnpickler(pickle.Unpickler):
    """The restricted unpickler for official network pickles (no persistent ids at this level)."""

    def __init__(self, file: IO[bytes]) -> None:
        super().__init__(file)
        self._src_hashes: dict[str, str] = {}
        self._globals = _allowed_globals(self._reconstruct_persistent_obj)

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._globals[(module, name)]
        except KeyError:
            raise UnsafePickleError(f"{module}.{name}") from None

    def _reconstruct_persistent_obj(self, meta: Any) -> PersistentRecord:
        if not isinstance(meta, dict) or meta.get("type") != "class":
            raise _FormatError("unexpected persistent object metadata")
        if meta.get("version") != _PERSISTENCE_VERSION:
            raise _FormatError(f"unsupported persistence version {meta.get('version')!r:.20}")
        src, class_name, state = meta.get("module_src"), meta.get("class_name"), meta.get("state")
        if not isinstance(src, str) or not isinstance(class_name, str) or not isinstance(state, dict):
            raise _FormatError("malformed persistent object")
        if not class_name.isidentifier():
            raise _FormatError(f"malformed class name {class_name!r:.60}")
        # The source is hashed for identification only; it is never compiled or executed.
        digest = self._src_hashes.get(src)
        if digest is None:
            digest = self._src_hashes[src] = hashlib.sha256(src.encode("utf-8", "surrogatepass")).hexdigest()
        return PersistentRecord(class_name, digest, state)


# ---------------------------------------------------------------------------------------------
# Reading the file.


class _BoundedReader:
    """File wrapper for the unpickler: refuses reads past the known end (truncation) up front.

    Without it a corrupt length field could make the unpickler allocate a huge buffer before
    noticing the file is short. ``peek``/``readinto`` are deliberately absent, so the unpickler
    asks for exactly the bytes each opcode needs.
    """

    def __init__(self, raw: IO[bytes], remaining: int | None) -> None:
        self._raw = raw
        self._remaining = remaining

    def _take(self, n: int) -> None:
        if self._remaining is not None:
            if n > self._remaining:
                raise _TruncatedError()
            self._remaining -= n

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            data = self._raw.read()
        else:
            self._take(n)
            data = self._raw.read(n)
            if len(data) != n:
                raise _TruncatedError()
            return data
        self._take(len(data))
        return data

    def readline(self, limit: int = -1) -> bytes:
        line = self._raw.readline(limit)
        self._take(len(line))
        return line


class _TruncatedError(Exception):
    pass


def _source_name(path_or_file: Any) -> str:
    if isinstance(path_or_file, (str, os.PathLike)):
        return os.fspath(path_or_file)
    name = getattr(path_or_file, "name", None)
    return name if isinstance(name, str) else "<file object>"


def _open_binary(path_or_file: Any, source: str) -> tuple[IO[bytes], bool]:
    """(binary file, whether we opened it). Raises NetworkLoadError for missing/unreadable files."""
    if isinstance(path_or_file, (str, os.PathLike)):
        path = Path(path_or_file)
        if not path.exists():
            raise NetworkLoadError(f"{source}: no such file")
        if not path.is_file():
            raise NetworkLoadError(f"{source}: not a regular file")
        try:
            return path.open("rb"), True
        except OSError as exc:
            raise NetworkLoadError(f"{source}: cannot open ({exc.strerror or exc})") from exc
    if not callable(getattr(path_or_file, "read", None)):
        raise InvalidInputError(
            f"path_or_file must be a path or a binary file object, got {type(path_or_file).__name__}"
        )
    return path_or_file, False


def _remaining_bytes(f: IO[bytes]) -> int | None:
    """Bytes left from the current position, or None when the file cannot seek."""
    try:
        if not f.seekable():
            return None
        here = f.tell()
        end = f.seek(0, os.SEEK_END)
        f.seek(here)
    except (OSError, AttributeError, ValueError):
        return None
    return end - here


def _sniff(f: IO[bytes], n: int) -> tuple[bytes, IO[bytes]]:
    """The first n bytes, and a file positioned at the start again (wrapped if unseekable)."""
    head = f.read(n)
    if not isinstance(head, bytes):
        raise InvalidInputError("the file object must be opened in binary mode")
    try:
        f.seek(-len(head), os.SEEK_CUR)
        return head, f
    except (OSError, AttributeError, ValueError):
        return head, io.BufferedReader(_PrefixedReader(head, f))


class _PrefixedReader(io.RawIOBase):
    """An unseekable file with some already-read bytes put back in front."""

    def __init__(self, prefix: bytes, raw: IO[bytes]) -> None:
        super().__init__()
        self._prefix = prefix
        self._raw = raw

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._prefix:
            n = min(len(view), len(self._prefix))
            view[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        data = self._raw.read(len(view))
        view[: len(data)] = data
        return len(data)


def _is_pickle_header(head: bytes) -> bool:
    # Official pickles are written with protocol 4; anything from 2 on starts with PROTO.
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _unpickle_network(path_or_file: Any, source: str) -> Any:
    """Run the restricted unpickler over a file; every failure becomes a one-line error."""
    f, owned = _open_binary(path_or_file, source)
    try:
        head, f = _sniff(f, len(_ZIP_MAGIC))
        if not head:
            raise NetworkLoadError(f"{source}: the file is empty")
        if head == _ZIP_MAGIC:
            raise NetworkLoadError(
                f"{source}: this is a zip archive (a cfattack checkpoint or torch.save file?), "
                "not a network pickle; use load_generator or load_generator_checkpoint"
            )
        if not _is_pickle_header(head):
            if len(head) < 2 and head[:1] == b"\x80":
                raise NetworkLoadError(f"{source}: the file is truncated")
            raise NetworkLoadError(f"{source}: not a network pickle (no pickle protocol 2-5 header)")
        reader = _BoundedReader(f, _remaining_bytes(f))
        try:
            return _NetworkUnpickler(reader).load()
        except UnsafePickleError as exc:
            raise UnsafePickleError(
                exc.global_name,
                f"{source}: refusing to load: the pickle references the disallowed global "
                f"{exc.global_name!r} (nothing from it was executed)",
            ) from None
        except (_TruncatedError, EOFError) as exc:
            raise NetworkLoadError(f"{source}: the file is truncated") from exc
        except _FormatError as exc:
            raise NetworkLoadError(f"{source}: not a valid StyleGAN3 network pickle: {exc}") from exc
        except MemoryError as exc:
            raise NetworkLoadError(f"{source}: corrupt pickle (absurd size field)") from exc
        except Exception as exc:
            # The bytes are untrusted: whatever the C unpickler trips over (bad opcode, memo
            # index, wrong types in REDUCE ...) means the same thing to the user: a corrupt file.
            if "truncated" in str(exc):
                raise NetworkLoadError(f"{source}: the file is truncated") from exc
            raise NetworkLoadError(f"{source}: not a valid pickle ({_one_line(exc)})") from exc
    finally:
        if owned:
            f.close()


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


def _as_device(device: Any) -> torch.device:
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InvalidInputError(f"device {device!r} is not a valid torch device ({_one_line(exc)})") from exc


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
        `cfattack.generator.Generator` in eval mode with ``requires_grad`` off; a record is
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


# ---------------------------------------------------------------------------------------------
# Our checkpoint format.


def _check_plain(value: Any, what: str, depth: int = 0) -> None:
    if depth > _MAX_DEPTH:
        raise InvalidInputError(f"{what} is nested too deeply")
    if value is None or isinstance(value, (bool, int, float, str)):
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidInputError(f"{what} has a non-string key {key!r}")
            _check_plain(item, f"{what}[{key!r}]", depth + 1)
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(item, f"{what}[{i}]", depth + 1)
        return
    raise InvalidInputError(
        f"{what} holds a {type(value).__name__}; only None, bool, int, float, str, list, tuple and dict are allowed"
    )


def _plain_copy(value: Any) -> Any:
    """Deep copy of a checked plain value with dict subclasses turned into dicts."""
    if isinstance(value, dict):
        return {k: _plain_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_copy(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_plain_copy(v) for v in value)
    return value


def save_generator_checkpoint(G: Generator, path: str | os.PathLike, *, extra: dict | None = None) -> Path:
    """Write G to ``path`` atomically as a cfattack checkpoint (a ``torch.save`` zip).

    The file holds ``{"format": "cfattack.generator/1", "class": "Generator", "init_kwargs",
    "state_dict", "extra"}`` with plain types and CPU tensors only, so `load_generator_checkpoint`
    can read it with ``torch.load(weights_only=True)``. It is written to a temporary file in the
    same folder and renamed over ``path``: a crash leaves the previous file intact.

    Args:
        G: our `cfattack.generator.Generator`.
        path: destination file (its folder must exist).
        extra: optional plain metadata (str keys; None/bool/int/float/str/list/tuple/dict values),
            e.g. training step and metrics.

    Returns:
        ``path`` as a Path.
    """

    if not isinstance(G, Generator):
        raise InvalidInputError(f"G must be a cfattack.generator.Generator, got {type(G).__name__}")
    init_kwargs = G.init_kwargs
    _check_plain(init_kwargs, "G.init_kwargs")
    extra = {} if extra is None else extra
    if not isinstance(extra, dict):
        raise InvalidInputError(f"extra must be a dict or None, got {type(extra).__name__}")
    _check_plain(extra, "extra")
    payload = {
        "format": CHECKPOINT_FORMAT,
        "class": "Generator",
        "init_kwargs": _plain_copy(init_kwargs),
        "state_dict": {k: v.detach().to("cpu", copy=True).contiguous() for k, v in G.state_dict().items()},
        "extra": _plain_copy(extra),
    }

    path = Path(path)
    if not path.parent.is_dir():
        raise InvalidInputError(f"cannot write {path}: folder {path.parent} does not exist")
    atomic_write(path, lambda f: torch.save(payload, f), make_parents=False)
    return path


_TORCH_LOAD_FAILURES = (
    RuntimeError,
    pickle.UnpicklingError,
    EOFError,
    ValueError,
    KeyError,
    TypeError,
    AttributeError,
    IndexError,
    OSError,
    zipfile.BadZipFile,
    MemoryError,
)


def read_generator_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The validated contents of a cfattack checkpoint, without building the network.

    Returns:
        ``{"format", "class", "init_kwargs", "state_dict", "extra"}`` (CPU tensors).
    """
    source = _source_name(path)
    f, _ = _open_binary(path, source)
    with f:
        head = f.read(4)
        if not head:
            raise NetworkLoadError(f"{source}: the file is empty")
        if head != _ZIP_MAGIC:
            raise NetworkLoadError(f"{source}: not a cfattack generator checkpoint (not a zip archive)")
        f.seek(0)
        try:
            data = torch.load(f, map_location="cpu", weights_only=True)
        except _TORCH_LOAD_FAILURES as exc:
            raise NetworkLoadError(f"{source}: not a readable cfattack checkpoint ({_one_line(exc)})") from exc

    def fail(problem: str) -> NetworkLoadError:
        return NetworkLoadError(f"{source}: not a cfattack generator checkpoint: {problem}")

    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise fail(f"expected format {CHECKPOINT_FORMAT!r}, found {found!r:.60}")
    if data.get("class") != "Generator":
        raise fail(f"unsupported class {data.get('class')!r:.60}")
    init_kwargs, state_dict, extra = data.get("init_kwargs"), data.get("state_dict"), data.get("extra", {})
    if not isinstance(init_kwargs, dict) or not isinstance(extra, dict):
        raise fail("init_kwargs and extra must be dicts")
    if not isinstance(state_dict, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state_dict.items()
    ):
        raise fail("state_dict must map names to tensors")
    try:
        _check_plain(init_kwargs, "init_kwargs")
        _check_plain(extra, "extra")
    except InvalidInputError as exc:
        raise fail(str(exc)) from exc
    return {"format": CHECKPOINT_FORMAT, "class": "Generator", "init_kwargs": init_kwargs,
            "state_dict": state_dict, "extra": extra}


def load_generator_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> Generator:
    """Our Generator from a checkpoint written by `save_generator_checkpoint`.

    Returns a Generator in eval mode with ``requires_grad`` off, on ``device``. Use
    `read_generator_checkpoint` for the ``extra`` metadata.
    """
    device = _as_device(device)
    data = read_generator_checkpoint(path)
    return _build_generator(data["init_kwargs"], data["state_dict"], "the generator", _source_name(path), device)


def load_generator(path: str | os.PathLike, device: str | torch.device = "cpu") -> Generator:
    """Our Generator from either a cfattack checkpoint or an official pickle (its ``G_ema``).

    The format is recognised by content (zip archive vs pickle), not by file name.
    """
    source = _source_name(path)
    f, _ = _open_binary(path, source)
    with f:
        head = f.read(4)
    if not head:
        raise NetworkLoadError(f"{source}: the file is empty")
    if head == _ZIP_MAGIC:
        return load_generator_checkpoint(path, device)
    if _is_pickle_header(head):
        return load_network_pkl(path, device=device, load=("G_ema",))["G_ema"]
    raise NetworkLoadError(
        f"{source}: not a generator file (expected a cfattack checkpoint or an official StyleGAN3 network pickle)"
    )
