"""Reading the ``torch.save`` zips of our own checkpoints without ``torch.load``.

cfattack's weights-only formats (generator, classifier, encoder, descriptor model) are
``torch.save`` zips of plain values and tensors. ``torch.load(weights_only=True)`` runs no code,
but it believes the sizes a file declares: zero-stride tensors of any size over one stored
value, compressed records that inflate without limit, ``bytearray(n)`` of any n, a memo of any
size. `read_torch_zip` reads the same files through `cfattack.bounded_pickle`: the zip directory
is checked first (stored records only, sizes that fit the limit), ``data.pkl`` is unpickled on a
budget with five allowed globals (``OrderedDict``, ``torch._utils._rebuild_tensor_v2`` /
``_rebuild_parameter`` and the ``torch.<X>Storage`` types), each storage record must hold exactly
the bytes its id declares, and every tensor must be a fair view of its storage. Everything else
(TorchScript, pickled classes, functions) is refused by name as `UnsafePickleError`.

Example::

    payload = read_torch_zip("classifier.pt", max_bytes=None)   # dict of plain values and tensors
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import IO, Any

import torch

from cfattack.bounded_pickle import (
    BoundedReader,
    BoundedUnpickler,
    ByteBudget,
    MAX_NETWORK_BYTES_ENV,
    FormatError,
    LimitError,
    TruncatedError,
    check_strided,
    format_bytes,
    network_bytes_limit,
    new_ordered_dict,
)
from cfattack.errors import NetworkLoadError, UnsafePickleError

__all__ = ["MAX_ZIP_RECORDS", "read_torch_zip"]

MAX_ZIP_RECORDS = 100_000
"""Records one checkpoint zip may hold (one per tensor plus a handful)."""
_MAX_DATA_PKL = 256 * 1024**2  # the pickle describes tensors; their bytes are separate records
_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


class _StorageType:
    """A ``torch.<X>Storage`` global: only a dtype token here."""

    __slots__ = ("dtype",)

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype

    def __setstate__(self, state: Any) -> None:
        raise FormatError("the pickle tries to set the state of a storage type")


class _Storage:
    """One storage record as a flat tensor, with the elements tensors have claimed from it."""

    __slots__ = ("claimed", "data")

    def __init__(self, data: torch.Tensor) -> None:
        self.data = data
        self.claimed = 0

    def __setstate__(self, state: Any) -> None:
        raise FormatError("the pickle tries to set the state of a storage")


def _claim(storage: Any, offset: Any, size: Any, stride: Any) -> torch.Tensor:
    if not isinstance(storage, _Storage):
        raise FormatError("tensor data is not a storage")
    numel = check_strided(size, stride, offset, storage.data.numel())
    # Two tensors over the same elements would let a file of N bytes build networks of k * N.
    storage.claimed += numel
    if storage.claimed > storage.data.numel():
        raise FormatError("tensors share storage elements (their views overlap)")
    return torch.as_strided(storage.data, tuple(size), tuple(stride), offset)


def _no_hooks(hooks: Any) -> None:
    if not isinstance(hooks, dict) or hooks:
        raise FormatError("tensors with backward hooks are not supported")


def _rebuild_tensor_v2(storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any,
                       backward_hooks: Any, metadata: Any = None) -> torch.Tensor:
    """Our ``torch._utils._rebuild_tensor_v2``: a checked view of a read storage."""
    if not isinstance(requires_grad, bool) or metadata:
        raise FormatError("malformed tensor")
    _no_hooks(backward_hooks)
    return _claim(storage, offset, size, stride)


def _rebuild_parameter(data: Any, requires_grad: Any, backward_hooks: Any) -> torch.Tensor:
    """Our ``torch._utils._rebuild_parameter``: the data tensor itself."""
    if not isinstance(data, torch.Tensor) or not isinstance(requires_grad, bool):
        raise FormatError("malformed parameter")
    _no_hooks(backward_hooks)
    return data


class _Callable:
    """An allowed global as the stream sees it: callable by REDUCE, not a type (no NEWOBJ/BUILD)."""

    __slots__ = ("fn",)

    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def __call__(self, *args: Any) -> Any:
        return self.fn(*args)

    def __setstate__(self, state: Any) -> None:
        raise FormatError("the pickle tries to set the state of a function")


_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): _Callable(new_ordered_dict),
    ("torch._utils", "_rebuild_tensor_v2"): _Callable(_rebuild_tensor_v2),
    ("torch._utils", "_rebuild_parameter"): _Callable(_rebuild_parameter),
    **{("torch", name): _StorageType(dtype) for name, dtype in _STORAGE_DTYPES.items()},
}


class _ZipUnpickler(BoundedUnpickler):
    """``data.pkl`` of a torch.save zip: storages come from the zip's records, on a byte budget."""

    def __init__(self, file: Any, archive: zipfile.ZipFile, prefix: str, budget: ByteBudget) -> None:
        super().__init__(file, _ALLOWED)
        self._archive = archive
        self._prefix = prefix
        self._budget = budget
        self._storages: dict[str, _Storage] = {}

    def persistent_load(self, pid: Any) -> _Storage:
        if not isinstance(pid, tuple) or len(pid) != 5 or pid[0] != "storage":
            raise FormatError("unexpected persistent id (not a storage)")
        _, storage_type, key, location, numel = pid
        if not isinstance(storage_type, _StorageType) or not isinstance(key, str) or not isinstance(location, str):
            raise FormatError("malformed storage id")
        if not isinstance(numel, int) or isinstance(numel, bool) or numel < 0:
            raise FormatError("malformed storage size")
        if key in self._storages:
            return self._storages[key]
        dtype = storage_type.dtype
        name = f"{self._prefix}data/{key}"
        try:
            info = self._archive.getinfo(name)
        except KeyError:
            raise FormatError(f"the record {name!r:.80} of a storage is missing") from None
        nbytes = numel * dtype.itemsize
        if info.file_size != nbytes:
            raise FormatError(f"storage {key!r:.40} declares {numel:,} elements ({nbytes:,} bytes) "
                              f"but its record holds {info.file_size:,} bytes")
        self._budget.charge(numel, dtype.itemsize, f"storage {key!r:.40} ({format_bytes(nbytes)})")
        buffer = bytearray(nbytes)
        view = memoryview(buffer)
        with self._archive.open(info) as record:
            pos = 0
            while pos < nbytes:
                chunk = record.read(min(1 << 22, nbytes - pos))
                if not chunk:
                    raise TruncatedError()
                view[pos:pos + len(chunk)] = chunk
                pos += len(chunk)
        data = torch.frombuffer(buffer, dtype=dtype) if nbytes else torch.empty(0, dtype=dtype)
        storage = self._storages[key] = _Storage(data)
        return storage


def _data_pickle(archive: zipfile.ZipFile, limit: int) -> tuple[zipfile.ZipInfo, str]:
    """The ``<prefix>/data.pkl`` record and the prefix, after checking the whole directory."""
    infos = archive.infolist()
    if len(infos) > MAX_ZIP_RECORDS:
        raise LimitError(f"the archive holds {len(infos):,} records (at most {MAX_ZIP_RECORDS:,})")
    total = 0
    for info in infos:
        if info.compress_type != zipfile.ZIP_STORED:
            raise FormatError(f"record {info.filename!r:.80} is compressed; torch.save archives never are "
                              "(refusing what could inflate without limit)")
        total += info.file_size
    if total > limit + _MAX_DATA_PKL:
        raise LimitError(f"the archive holds {format_bytes(total)}, over the limit of {format_bytes(limit)} for "
                         f"one network file (raise it with max_bytes= or {MAX_NETWORK_BYTES_ENV} if you trust the file)")
    pickles = [i for i in infos if i.filename.endswith("/data.pkl") and i.filename.count("/") == 1]
    if len(pickles) != 1:
        raise FormatError("not a torch.save archive (no single <name>/data.pkl record)")
    info = pickles[0]
    if info.file_size > _MAX_DATA_PKL:
        raise LimitError(f"its data.pkl is {format_bytes(info.file_size)} (at most {format_bytes(_MAX_DATA_PKL)})")
    prefix = info.filename[: -len("data.pkl")]
    names = {i.filename for i in infos}
    if f"{prefix}constants.pkl" in names or any(n.startswith(f"{prefix}code/") for n in names):
        raise FormatError("this is a TorchScript archive (code), not a weights-only file")
    if f"{prefix}byteorder" in names and archive.getinfo(f"{prefix}byteorder").file_size > 16:
        raise FormatError("malformed byteorder record")
    if f"{prefix}byteorder" in names and archive.read(f"{prefix}byteorder").strip() not in (b"little", b""):
        raise FormatError("big-endian archives are not supported")
    return info, prefix


def read_torch_zip(path_or_file: str | os.PathLike | IO[bytes], source: str | None = None, *,
                   what: str = "checkpoint", max_bytes: int | None = None) -> Any:
    """The object a ``torch.save`` zip holds, read on a budget; tensors are CPU tensors.

    Args:
        path_or_file: the archive, as a path or a seekable binary file object.
        source: the name used in error messages (default: the path).
        what: what the file should be, for error messages (``"classifier checkpoint"``).
        max_bytes: limit on the bytes of all tensors (default `cfattack.bounded_pickle.MAX_NETWORK_BYTES`
            or ``$CFATTACK_MAX_NETWORK_BYTES``).

    Raises:
        UnsafePickleError: ``data.pkl`` names a global outside the allow-list (nothing ran).
        NetworkLoadError: missing, not a zip, truncated, compressed records, tensors that do not
            fit their storages, or more bytes than the limit; one line naming what was wrong.
    """
    limit = network_bytes_limit(max_bytes)
    if source is None:
        source = os.fspath(path_or_file) if isinstance(path_or_file, (str, os.PathLike)) else "<file object>"
    if isinstance(path_or_file, (str, os.PathLike)) and not Path(path_or_file).is_file():
        raise NetworkLoadError(f"{source}: no such {what} file" if not Path(path_or_file).exists()
                               else f"{source}: not a regular file")
    try:
        with zipfile.ZipFile(path_or_file) as archive:
            info, prefix = _data_pickle(archive, limit)
            with archive.open(info) as stream:
                unpickler = _ZipUnpickler(BoundedReader(stream, info.file_size), archive, prefix, ByteBudget(limit))
                return unpickler.load()
    except UnsafePickleError as exc:
        raise UnsafePickleError(
            exc.global_name,
            f"{source}: refusing to load: it references the disallowed global {exc.global_name!r} "
            "(nothing from it was executed)",
        ) from None
    except LimitError as exc:
        raise NetworkLoadError(f"{source}: refusing to load the {what}: {exc}") from exc
    except (TruncatedError, EOFError) as exc:
        raise NetworkLoadError(f"{source}: not a readable {what} (the file is truncated)") from exc
    except FormatError as exc:
        raise NetworkLoadError(f"{source}: not a readable {what} ({exc})") from exc
    except OSError as exc:
        raise NetworkLoadError(f"{source}: cannot read the {what} ({exc.strerror or exc})") from exc
    except MemoryError as exc:
        raise NetworkLoadError(f"{source}: out of memory while reading the {what}") from exc
    except Exception as exc:  # untrusted bytes (BadZipFile, a bad opcode ...): a corrupt file
        first = (str(exc).strip().splitlines() or [""])[0]
        raise NetworkLoadError(f"{source}: not a readable {what} ({type(exc).__name__}: {first:.200})") from exc
