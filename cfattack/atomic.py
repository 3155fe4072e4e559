"""Atomic file writing: a reader sees the old file or the complete new one, never a partial one.

Every output cfattack writes (checkpoints, images, reports, bundle files) goes through
`atomic_write`: the data goes to a fresh temporary file in the destination's folder, is
flushed to disk, then renamed over the destination. A failure (full disk, interrupt) removes
the temporary file and leaves any previous file untouched.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import BinaryIO, Callable

__all__ = ["atomic_write", "atomic_torch_save", "atomic_write_text", "fsync_directory"]


def fsync_directory(directory: Path) -> None:
    # Makes the rename durable on POSIX; where a folder cannot be opened this is a no-op.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None], *, make_parents: bool = True) -> Path:
    """Call ``write(file)`` on a temporary file next to ``path``, then rename it to ``path``.

    Raises the writer's exception, or ``OSError`` naming ``path`` (not the temporary file)
    when the file system refuses, e.g. "No space left on device".
    """
    path = Path(path)
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    try:
        # O_EXCL on a random name never clobbers another writer's temporary file; mode 0o666
        # goes through the umask like a plainly created file.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno is not None and exc.filename in (None, str(tmp)):
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    fsync_directory(path.parent)
    return path


def atomic_torch_save(obj: object, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to ``path`` atomically."""
    import torch

    return atomic_write(path, lambda fh: torch.save(obj, fh))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 text to ``path`` atomically."""
    return atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))
