"""Opening untrusted network files: open, sniff the first bytes, read no further than the end.

Shared by the official-pickle reader (`cfattack.stylegan.safe_unpickler`), our checkpoint
format (`cfattack.stylegan.checkpoint`) and `cfattack.stylegan.loading`, which all accept a path
or (for pickles) a binary file object and report every failure as a one-line error naming it.
The reader that refuses reads past the known end is `cfattack.bounded_pickle.BoundedReader`.
"""

from __future__ import annotations

import io
import os
import pickletools
from pathlib import Path
from typing import IO, Any

# Re-exported under their old names for the readers of this package.
from cfattack.bounded_pickle import BoundedReader as _BoundedReader  # noqa: F401
from cfattack.bounded_pickle import TruncatedError as _TruncatedError  # noqa: F401
from cfattack.errors import InvalidInputError, NetworkLoadError

_ZIP_MAGIC = b"PK\x03\x04"
_MAX_DEPTH = 64  # nesting limit when walking module trees and kwargs from a file
# First bytes a protocol 0/1 pickle can start with (any opcode those protocols know).
_OLD_PICKLE_OPCODES = frozenset(op.code.encode("latin-1")[0] for op in pickletools.opcodes if op.proto <= 1)


# ---------------------------------------------------------------------------------------------
# Reading the file.


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


def _may_be_old_pickle(head: bytes) -> bool:
    """Whether the first byte is an opcode of pickle protocol 0 or 1 (which have no header)."""
    return bool(head) and head[0] in _OLD_PICKLE_OPCODES


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def read_head(path: Any, n: int = 4) -> tuple[str, bytes]:
    """(the file's name for messages, its first ``n`` bytes); an empty file is a NetworkLoadError."""
    source = _source_name(path)
    f, _ = _open_binary(path, source)
    with f:
        head = f.read(n)
    if not head:
        raise NetworkLoadError(f"{source}: the file is empty")
    return source, head
