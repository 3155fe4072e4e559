"""Opening input files that must be regular files, without ever blocking on one that is not.

A path handed to cfattack can name a FIFO (opening it waits for a writer forever), a device
(``/dev/zero`` never ends), a socket, or a loop of symbolic links; a file name can hold bytes
that are not UTF-8 and so cannot be written into a JSON record as they are. `open_regular_file`
stats the path first (stat opens nothing, so no device sees an open), opens it with
``O_NONBLOCK``, checks the open file again with ``fstat`` (the path may have been swapped in
between) and refuses anything but a regular file, or one over a size limit, with one line that
says what the path is. `printable_path` gives the safe form of a name for records and messages.

Example::

    with open_regular_file("photo.png", what="image file", max_bytes=1 << 20) as fh:
        header = fh.read(8)
    digest = sha256_regular_file("net.pt", what="network file")
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from typing import BinaryIO

from cfattack.errors import InvalidInputError

__all__ = ["open_regular_file", "printable_path", "read_regular_file", "sha256_regular_file"]

_CHUNK = 1 << 20


def printable_path(path: str | os.PathLike) -> str:
    """``path`` as text that encodes as UTF-8: undecodable bytes become ``\\xNN`` escapes.

    Python keeps a name's non-UTF-8 bytes as lone surrogates (``'a\\udcff.png'``), which every
    UTF-8 writer refuses; this form (``'a\\\\xff.png'``) can go into JSON and one-line messages.
    A name that is valid UTF-8 comes back unchanged.
    """
    text = os.fspath(path)
    if isinstance(text, bytes):
        return text.decode("utf-8", "backslashreplace")
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        raw = text.encode("utf-8", "surrogateescape")  # the bytes the file system holds
    except UnicodeEncodeError:  # a surrogate that stands for no byte (e.g. from JSON text)
        raw = text.encode("utf-8", "backslashreplace")
    return raw.decode("utf-8", "backslashreplace")


def _kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _refusal(exc: OSError, what: str, shown: str, path: str | os.PathLike) -> InvalidInputError:
    """The one-line error for an OSError met while stat-ing or opening ``path``."""
    if exc.errno == errno.ENOENT:
        if os.path.islink(path):
            return InvalidInputError(f"{what} {shown} is a symbolic link to a missing file")
        return InvalidInputError(f"{what} not found: {shown}")
    if exc.errno == errno.ELOOP:
        return InvalidInputError(f"{what} {shown} is a loop of symbolic links")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return InvalidInputError(f"cannot read {what} (permission denied): {shown}")
    if exc.errno == errno.ENAMETOOLONG:
        return InvalidInputError(f"{what} path is too long for the file system: {shown}")
    if exc.errno == errno.ENXIO:  # opening a socket
        return InvalidInputError(f"{what} {shown} is a socket or a device without a reader, not a regular file")
    return InvalidInputError(f"cannot read {what} {shown}: {exc.strerror or exc}")


def _check(info: os.stat_result, what: str, shown: str, max_bytes: int | None) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise InvalidInputError(f"{what} {shown} is {_kind(info.st_mode)}, not a regular file")
    if max_bytes is not None and info.st_size > max_bytes:
        raise InvalidInputError(
            f"{what} {shown} is {info.st_size} bytes, over the limit of {max_bytes} bytes"
        )


def open_regular_file(path: str | os.PathLike, *, what: str = "file", max_bytes: int | None = None) -> BinaryIO:
    """Open ``path`` for binary reading if it is a regular file (links followed), never blocking.

    Args:
        path: the file.
        what: how messages name it (``"image file"``).
        max_bytes: refuse a larger file (None: no limit).

    Returns:
        The open file (the caller closes it); reading it never blocks.

    Raises:
        InvalidInputError: missing, a dangling link or a loop of links, a directory, FIFO,
            device or socket, no permission, over ``max_bytes``, or a name with a NUL byte.
            The message names the path (in its `printable_path` form).
    """
    shown = printable_path(path)
    try:
        _check(os.stat(path), what, shown, max_bytes)  # stat first: a device is never opened
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
        flags |= getattr(os, "O_BINARY", 0)
        fd = os.open(path, flags)
    except OSError as exc:
        raise _refusal(exc, what, shown, path) from None
    except InvalidInputError:  # from _check (it is a ValueError too)
        raise
    except ValueError:  # "embedded null byte"
        raise InvalidInputError(f"{what} path contains a NUL character: {shown!r}") from None
    try:
        _check(os.fstat(fd), what, shown, max_bytes)  # the object actually opened
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular_file(path: str | os.PathLike, *, what: str = "file", max_bytes: int) -> bytes:
    """All bytes of a regular file of at most ``max_bytes`` (one that grows past it while read is refused).

    Raises:
        InvalidInputError: as `open_regular_file`, or the file grew over ``max_bytes``.
    """
    with open_regular_file(path, what=what, max_bytes=max_bytes) as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise InvalidInputError(f"{what} {printable_path(path)} grew over the limit of {max_bytes} bytes while read")
    return data


def sha256_regular_file(path: str | os.PathLike, *, what: str = "file", max_bytes: int | None = None) -> str:
    """SHA-256 (hex) of a regular file's bytes, read in chunks of 1 MiB.

    Raises:
        InvalidInputError: as `open_regular_file`, or the file grew over ``max_bytes`` while read.
    """
    digest = hashlib.sha256()
    total = 0
    with open_regular_file(path, what=what, max_bytes=max_bytes) as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            total += len(chunk)
            if max_bytes is not None and total > max_bytes:
                raise InvalidInputError(
                    f"{what} {printable_path(path)} grew over the limit of {max_bytes} bytes while read"
                )
            digest.update(chunk)
    return digest.hexdigest()
