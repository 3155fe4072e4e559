"""Reading untrusted pickle streams on a budget: allow-listed names only, bounded growth, no code.

Every network reader of cfattack unpickles through here: official StyleGAN3 pickles
(`cfattack.stylegan.safe_unpickler`) and the ``torch.save`` zips of our own checkpoints
(`cfattack.torch_zip`). Python's C unpickler believes the sizes a stream declares: one 6-byte
``LONG_BINPUT`` makes it allocate a memo table of up to 32 GB, and ``BYTEARRAY8`` allocates
whatever length it reads before reading anything. So `BoundedUnpickler` drives the pure-Python
unpickler (memo in a dict) and meters every opcode: a total number of objects and references
(`MAX_PICKLE_OPS`), a nesting depth (`MAX_NESTING`), text lines of bounded length, and globals
resolved from an allow-list only (anything else raises `UnsafePickleError` before it is called).

Tensors are what make a network file large, so their declared sizes are checked against the
bytes actually present and against one limit, `MAX_NETWORK_BYTES` (argument ``max_bytes`` of
every reader, or the ``CFATTACK_MAX_NETWORK_BYTES`` environment variable): `check_strided`
refuses zero, overlapping or out-of-storage strides, `ByteBudget` counts the bytes every tensor
needs, and `plain_copy` walks settings with a node budget (shared references cannot expand).
"""

from __future__ import annotations

import math
import os
import pickle
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import IO, Any

from cfattack.errors import InvalidInputError, UnsafePickleError

__all__ = [
    "MAX_NETWORK_BYTES",
    "MAX_NETWORK_BYTES_ENV",
    "MAX_NESTING",
    "MAX_PICKLE_OPS",
    "MAX_PLAIN_VALUES",
    "BoundedReader",
    "BoundedUnpickler",
    "ByteBudget",
    "FormatError",
    "InertOrderedDict",
    "LimitError",
    "TruncatedError",
    "check_strided",
    "format_bytes",
    "network_bytes_limit",
    "plain_copy",
]

MAX_NETWORK_BYTES = 4 * 1024**3
"""Default limit on the tensors of one network file (4 GiB; each element counted as at least 4 bytes).

NVIDIA's largest StyleGAN3 release (config R at 1024 px: G, G_ema and D) holds well under 1 GiB.
Raise it per call with ``max_bytes=`` or for every call with ``CFATTACK_MAX_NETWORK_BYTES``."""
MAX_NETWORK_BYTES_ENV = "CFATTACK_MAX_NETWORK_BYTES"
MAX_PICKLE_OPS = 500_000
"""Opcodes one stream may run (objects, references, memo entries); official pickles use ~40,000."""
MAX_NESTING = 256
"""Deepest nesting of MARK frames and of tuples in a stream (hashing deeper tuples can crash Python)."""
MAX_PLAIN_VALUES = 100_000
"""Values `plain_copy` visits in one settings tree, counting every repeat of a shared reference."""
_MAX_LINE = 1 << 16  # text opcodes (GLOBAL names, protocol-0 numbers) are short in any real file
_CHUNK = 1 << 20


class FormatError(Exception):
    """The stream is not what the reader expects or exceeds a limit (readers add the file name)."""


class LimitError(FormatError):
    """The stream exceeds one of the limits (size, count, depth): refused before it grows further."""


class TruncatedError(Exception):
    """The stream ends before the bytes it declares."""


def format_bytes(n: int) -> str:
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def network_bytes_limit(max_bytes: int | None = None) -> int:
    """The tensor-byte limit in force: ``max_bytes``, else ``$CFATTACK_MAX_NETWORK_BYTES``, else the default."""
    where = "max_bytes"
    if max_bytes is None:
        raw = os.environ.get(MAX_NETWORK_BYTES_ENV, "").strip()
        if not raw:
            return MAX_NETWORK_BYTES
        where = MAX_NETWORK_BYTES_ENV
        try:
            value = float(raw)
        except ValueError:
            raise InvalidInputError(f"{where}={raw!r} is not a number of bytes") from None
        max_bytes = int(value) if math.isfinite(value) and value.is_integer() else -1
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
        raise InvalidInputError(f"{where} must be a positive whole number of bytes, got {max_bytes!r}")
    return max_bytes


def _limit_hint() -> str:
    return f"raise it with max_bytes= or {MAX_NETWORK_BYTES_ENV} if you trust the file"


class ByteBudget:
    """Counts the bytes tensors will take (at least 4 per element, their float32 size) against a limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def charge(self, numel: int, itemsize: int, what: str) -> None:
        self.used += numel * max(itemsize, 4)
        if self.used > self.limit:
            raise LimitError(
                f"{what} takes the tensors past {format_bytes(self.limit)}, the limit for one network file "
                f"({_limit_hint()})"
            )


# ---------------------------------------------------------------------------------------------
# Tensor layouts.


def _int_tuple(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or len(value) > 32:
        raise FormatError(f"{what} must be a tuple of at most 32 ints")
    for v in value:
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise FormatError(f"{what} must hold non-negative ints, got {v!r:.40}")
    return tuple(value)


def check_strided(size: Any, stride: Any, offset: Any, storage_numel: int, what: str = "a tensor") -> int:
    """The element count of a strided view, after checking it is a fair view of its storage.

    Refuses (FormatError) strides that are zero or overlap (a few stored values posing as many:
    the loaded network would allocate the full size) and views reaching past the storage.
    """
    size = _int_tuple(size, f"{what} size")
    stride = _int_tuple(stride, f"{what} stride")
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise FormatError(f"{what} storage offset must be a non-negative int")
    if len(size) != len(stride):
        raise FormatError(f"{what} has {len(size)} sizes but {len(stride)} strides")
    numel = math.prod(size)
    if numel == 0:
        return 0
    span = 1  # storage elements the inner dimensions cover
    for step, n in sorted((s, n) for n, s in zip(size, stride) if n > 1):
        if step == 0:
            raise FormatError(f"{what} of shape {list(size)} has a zero stride (its values would repeat "
                              f"{n} times: {numel:,} elements from far fewer stored)")
        if step < span:
            raise FormatError(f"{what} of shape {list(size)} has overlapping strides {list(stride)}")
        span += step * (n - 1)
    if offset + span > storage_numel:
        raise FormatError(f"{what} of shape {list(size)} reaches past the end of its storage "
                          f"({offset + span:,} > {storage_numel:,} elements)")
    return numel


# ---------------------------------------------------------------------------------------------
# Plain settings values.


def plain_copy(value: Any, what: str, *, convert: Callable[[Any], Any] | None = None,
               max_values: int = MAX_PLAIN_VALUES, max_depth: int = 64) -> Any:
    """A copy of a settings tree with only None/bool/int/float/str/list/tuple/dict (str keys).

    ``convert(value)`` may map other leaf types to plain ones (return NotImplemented to refuse).
    Every visit counts against ``max_values``, so a tree of shared references (each level twice
    the one below) is refused instead of being expanded; nesting deeper than ``max_depth`` too.
    """
    left = [max_values]

    def copy(v: Any, depth: int) -> Any:
        left[0] -= 1
        if left[0] < 0:
            raise LimitError(f"{what} holds more than {max_values:,} values (counting shared references)")
        if depth > max_depth:
            raise LimitError(f"{what} is nested more than {max_depth} levels deep")
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        if isinstance(v, dict):
            out = {}
            for key, item in dict.items(v):
                if not isinstance(key, str):
                    raise FormatError(f"{what} has a non-string key {key!r:.40}")
                out[key] = copy(item, depth + 1)
            return out
        if isinstance(v, (list, tuple)):
            items = [copy(item, depth + 1) for item in v]
            return items if isinstance(v, list) else tuple(items)
        converted = NotImplemented if convert is None else convert(v)
        if converted is NotImplemented:
            raise FormatError(f"{what} holds an unsupported value of type {type(v).__name__}")
        return converted

    return copy(value, 0)


# ---------------------------------------------------------------------------------------------
# Reading the stream.


class BoundedReader:
    """File wrapper for the unpickler: refuses reads past the known end (truncation) up front.

    Without it a corrupt length field could make the unpickler allocate a huge buffer before
    noticing the file is short. With an unknown end (an unseekable stream) large reads go in
    1 MiB chunks, so memory follows the bytes that really arrive. Lines are capped at 64 KiB.
    """

    def __init__(self, raw: IO[bytes], remaining: int | None) -> None:
        self._raw = raw
        self._remaining = remaining

    def _take(self, n: int) -> None:
        if self._remaining is not None:
            if n > self._remaining:
                raise TruncatedError()
            self._remaining -= n

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            raise FormatError("unbounded read")
        self._take(n)
        if self._remaining is not None or n <= _CHUNK:
            data = self._raw.read(n)
        else:
            parts, got = [], 0
            while got < n:
                part = self._raw.read(min(_CHUNK, n - got))
                if not part:
                    break
                parts.append(part)
                got += len(part)
            data = b"".join(parts)
        if len(data) != n:
            raise TruncatedError()
        return data

    def readline(self, limit: int = -1) -> bytes:
        line = self._raw.readline(_MAX_LINE + 1)
        if len(line) > _MAX_LINE:
            raise LimitError(f"a text field is longer than {_MAX_LINE} bytes")
        self._take(len(line))
        return line


class InertOrderedDict(OrderedDict):
    """The OrderedDict a stream gets: it cannot be given attributes (BUILD would shadow get/items)."""

    def __setstate__(self, state: Any) -> None:
        # torch pickles a state_dict()'s version table as the attribute _metadata; it is dropped.
        if isinstance(state, dict) and set(dict.keys(state)) <= {"_metadata"}:
            return
        raise FormatError("the pickle tries to set attributes on an OrderedDict")


def new_ordered_dict(*args: Any) -> InertOrderedDict:
    """Replacement for ``collections.OrderedDict``: REDUCE with () then SETITEMS, as pickles write it."""
    if args:  # an argument would be copied once per reference to it: quadratic growth
        raise FormatError("OrderedDict with constructor arguments")
    return InertOrderedDict()


_REFUSED_OPCODES = {
    pickle.BYTEARRAY8[0]: "protocol-5 bytearrays",  # allocates the declared length before reading
    pickle.NEXT_BUFFER[0]: "out-of-band buffers",
    pickle.READONLY_BUFFER[0]: "out-of-band buffers",
    pickle.EXT1[0]: "extension codes",
    pickle.EXT2[0]: "extension codes",
    pickle.EXT4[0]: "extension codes",
}
_TUPLE_OPCODES = {pickle.TUPLE[0], pickle.TUPLE1[0], pickle.TUPLE2[0], pickle.TUPLE3[0]}


def _refused(what: str) -> Callable[[Any], None]:
    def op(self: Any) -> None:
        raise FormatError(f"the pickle uses {what}, which network files never contain")
    return op


def _metered(op: Callable[[Any], None], is_tuple: bool) -> Callable[[Any], None]:
    def run(self: BoundedUnpickler) -> None:
        self._ops_left -= 1
        if self._ops_left < 0:
            raise LimitError(f"the pickle holds more than {self._max_ops:,} objects and references "
                              "(the limit for a network file)")
        op(self)
        if len(self.metastack) > MAX_NESTING:
            raise LimitError(f"the pickle is nested more than {MAX_NESTING} levels deep")
        if is_tuple:
            self._note_tuple(self.stack[-1])
    return run


def _dispatch_table() -> dict[int, Callable[[Any], None]]:
    table: dict[int, Callable[[Any], None]] = {}
    for code in range(256):
        op = pickle._Unpickler.dispatch.get(code)  # type: ignore[attr-defined]
        if code in _REFUSED_OPCODES:
            table[code] = _refused(_REFUSED_OPCODES[code])
        elif op is None:
            table[code] = _refused(f"the unknown opcode {code:#04x}")
        else:
            table[code] = _metered(op, code in _TUPLE_OPCODES)
    return table


class BoundedUnpickler(pickle._Unpickler):  # type: ignore[name-defined]
    """The pure-Python unpickler with an allow-list of globals and metered growth.

    Args:
        file: a `BoundedReader` (or any object with ``read``/``readline``).
        allowed: ``{(module, name): replacement}``; the only globals the stream may name.
        max_ops: opcodes the stream may run (every object, reference and memo entry is one).

    Subclasses add ``persistent_load`` where their format has persistent ids.
    """

    dispatch = _dispatch_table()

    def __init__(self, file: Any, allowed: Mapping[tuple[str, str], Any], *, max_ops: int = MAX_PICKLE_OPS) -> None:
        super().__init__(file)
        self._allowed = allowed
        self._max_ops = self._ops_left = max_ops
        # id -> (depth, tuple): the tuple is kept alive so its id cannot be reused.
        self._tuple_depth: dict[int, tuple[int, tuple]] = {}

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except (KeyError, TypeError):
            raise UnsafePickleError(f"{module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        raise FormatError("the pickle uses persistent ids, which this format does not have")

    def _note_tuple(self, value: Any) -> None:
        if type(value) is not tuple or not value:
            return
        depth = 1 + max((self._tuple_depth.get(id(v), (1,))[0] for v in value if type(v) is tuple), default=0)
        if depth > MAX_NESTING:
            raise LimitError(f"the pickle nests tuples more than {MAX_NESTING} levels deep")
        self._tuple_depth[id(value)] = (depth, value)
