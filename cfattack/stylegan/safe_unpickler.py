"""The restricted unpickler that reads an official StyleGAN3 network pickle without running it.

An official snapshot (``stylegan3-t-afhqv2-512x512.pkl`` ...) is a pickle whose network
objects carry the Python source of the module that defines them; NVIDIA's loader executes
that source. We never do. A restricted unpickler resolves only the handful of globals such a
pickle legitimately references, each mapped to an inert replacement from
`cfattack.stylegan.pickle_records`: network objects become `PersistentRecord` values, tensors
are rebuilt from their raw bytes, numpy values through a numeric-only reconstruction. Any other
global raises `UnsafePickleError` before anything is called. The stream runs through the
metered pure-Python unpickler of `cfattack.bounded_pickle` (bounded opcodes, memo, nesting and
tensor bytes), read through the bounded, sniffing reader of `cfattack.stylegan.file_access`;
turning the records into networks is `cfattack.stylegan.official_pickle`'s job.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from typing import IO, Any

from cfattack.bounded_pickle import BoundedUnpickler, ByteBudget, LimitError, network_bytes_limit
from cfattack.errors import NetworkLoadError, UnsafePickleError
from cfattack.stylegan.file_access import (
    _ZIP_MAGIC,
    _BoundedReader,
    _is_pickle_header,
    _may_be_old_pickle,
    _one_line,
    _open_binary,
    _remaining_bytes,
    _sniff,
    _TruncatedError,
)
from cfattack.stylegan.pickle_records import (
    LoadState,
    PersistentRecord,
    _FormatError,
    _load_from_bytes,
    _NdarrayClass,
    _new_ordered_dict,
    _numpy_dtype,
    _numpy_reconstruct,
    _numpy_scalar,
    _rebuild_parameter,
    _rebuild_tensor_v2,
    _SafeCallable,
)

_PERSISTENCE_VERSION = 6  # the only version of torch_utils.persistence records in StyleGAN3


def _allowed_globals(reconstruct_persistent: Callable[..., Any], state: LoadState) -> dict[tuple[str, str], Any]:
    """The whole allow-list of an official network pickle (pickle_format.md section 6)."""
    table: dict[tuple[str, str], Any] = {
        ("torch_utils.persistence", "_reconstruct_persistent_obj"): reconstruct_persistent,
        ("collections", "OrderedDict"): _new_ordered_dict,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
        ("torch.storage", "_load_from_bytes"): functools.partial(_load_from_bytes, state),
        ("numpy", "dtype"): _numpy_dtype,
    }
    for numpy_core in ("numpy.core.multiarray", "numpy._core.multiarray"):  # numpy 1.x / 2.x
        table[(numpy_core, "_reconstruct")] = functools.partial(_numpy_reconstruct, state)
        table[(numpy_core, "scalar")] = _numpy_scalar
    wrapped: dict[tuple[str, str], Any] = {
        key: _SafeCallable(f"{key[0]}.{key[1]}", fn) for key, fn in table.items()
    }
    wrapped[("numpy", "ndarray")] = _NdarrayClass()
    # EasyDict is a dict subclass pickled with NEWOBJ, which needs a type: plain dict is one,
    # and an immutable builtin (BUILD cannot set attributes on it).
    wrapped[("dnnlib.util", "EasyDict")] = dict
    return wrapped


class _NetworkUnpickler(BoundedUnpickler):
    """The restricted unpickler for official network pickles (no persistent ids at this level).

    ``max_bytes`` limits the storages and arrays it reads (default: `network_bytes_limit`).
    """

    def __init__(self, file: IO[bytes], max_bytes: int | None = None) -> None:
        self._src_hashes: dict[str, str] = {}
        self.state = LoadState(ByteBudget(network_bytes_limit(max_bytes)))
        super().__init__(file, _allowed_globals(self._reconstruct_persistent_obj, self.state))

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


def _unpickle_network(path_or_file: Any, source: str, max_bytes: int | None = None) -> Any:
    """Run the restricted unpickler over a file; every failure becomes a one-line error."""
    limit = network_bytes_limit(max_bytes)
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
        not_network = NetworkLoadError(f"{source}: not a network pickle (no pickle protocol 2-5 header)")
        # Protocol 0/1 streams are never networks; they are read (as safely) only so that one
        # calling, say, posix.system is reported as what it is.
        old_protocol = not _is_pickle_header(head)
        if old_protocol and (head[:1] == b"\x80" or not _may_be_old_pickle(head)):
            raise NetworkLoadError(f"{source}: the file is truncated") if len(head) < 2 else not_network
        reader = _BoundedReader(f, _remaining_bytes(f))
        try:
            data = _NetworkUnpickler(reader, limit).load()
        except UnsafePickleError as exc:
            raise UnsafePickleError(
                exc.global_name,
                f"{source}: refusing to load: the pickle references the disallowed global "
                f"{exc.global_name!r} (nothing from it was executed)",
            ) from None
        except Exception as exc:
            raise (not_network if old_protocol else _read_error(exc, source)) from exc
        if old_protocol:
            raise not_network
        return data
    finally:
        if owned:
            f.close()


def _read_error(exc: Exception, source: str) -> NetworkLoadError:
    """The one-line error for a failure inside the unpickler."""
    if isinstance(exc, (_TruncatedError, EOFError)):
        return NetworkLoadError(f"{source}: the file is truncated")
    if isinstance(exc, LimitError):
        return NetworkLoadError(f"{source}: refusing to load: {exc}")
    if isinstance(exc, _FormatError):
        return NetworkLoadError(f"{source}: not a valid StyleGAN3 network pickle: {exc}")
    if isinstance(exc, MemoryError):
        return NetworkLoadError(f"{source}: corrupt pickle (absurd size field)")
    # The bytes are untrusted: whatever the unpickler trips over (bad opcode, memo index, wrong
    # types in REDUCE ...) means the same thing to the user: a corrupt file.
    if "truncated" in str(exc):
        return NetworkLoadError(f"{source}: the file is truncated")
    return NetworkLoadError(f"{source}: not a valid pickle ({_one_line(exc)})")
