"""Content hashes of the bundle files behind a batch job's resume key, cached so a resume stays fast.

A job folder's results stay valid only while the networks that computed them are unchanged, so
the config hash (`cfattack.batch.manifest.config_hash`) covers the SHA-256 of ``bundle.json`` and
of each network file an explanation uses: weights changed in place, even to the same size, make
a resumed job refuse to mix old and new results. Hashing a large generator takes a second or
more, so each hash is kept in ``DIR/.file-hashes.json`` with the file's stamp (size, mtime,
ctime, inode, device) and reused while the stamp is the same. The ctime cannot be set back by a
user (``touch -d`` sets it to now), so an edit that restores the size and the mtime is still seen.

Example::

    cache = FileHashCache("report/.file-hashes.json")
    hashes = bundle_file_hashes(spec, spec_path, "baseline", cache)   # {"bundle.json": "9f2c...", ...}
    cache.save()
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from cfattack.atomic import atomic_write_text
from cfattack.bundle.spec import BundleSpec
from cfattack.errors import InvalidInputError
from cfattack.regular_files import printable_path, sha256_regular_file

__all__ = ["CACHE_NAME", "FileHashCache", "bundle_file_hashes"]

CACHE_NAME = ".file-hashes.json"
CACHE_FORMAT = "cfattack.file-hashes/1"


def _stamp(info: os.stat_result) -> list[int]:
    return [info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino, info.st_dev]


class FileHashCache:
    """SHA-256 of files by absolute path, reused while a file's stamp is unchanged.

    Args:
        path: the cache file (None: keep hashes in memory only). A missing, unreadable or
            malformed cache file is an empty cache.
    """

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = None if path is None else Path(path)
        self._known: dict[str, dict] = self._read()
        self._used: dict[str, dict] = {}

    def _read(self) -> dict[str, dict]:
        if self.path is None:
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT or not isinstance(data.get("files"), dict):
            return {}
        return {k: v for k, v in data["files"].items()
                if isinstance(v, dict) and isinstance(v.get("sha256"), str) and isinstance(v.get("stamp"), list)}

    def sha256(self, path: str | os.PathLike) -> str | None:
        """The file's SHA-256, from the cache when its stamp matches; None when it cannot be read.

        Only regular files are read (`cfattack.regular_files`): a FIFO or device named by a
        bundle never blocks the job here (the bundle loader refuses it with its own message).
        """
        key = printable_path(os.path.abspath(path))
        try:
            stamp = _stamp(os.stat(path))
        except (OSError, ValueError):
            return None
        entry = self._known.get(key)
        if entry is None or entry["stamp"] != stamp:
            try:
                digest = sha256_regular_file(path, what="bundle file")
                after = _stamp(os.stat(path))
            except (InvalidInputError, OSError):
                return None
            if after != stamp:  # written while hashed: hash it again next time
                return digest
            entry = {"stamp": stamp, "sha256": digest}
        self._used[key] = entry
        return entry["sha256"]

    def save(self) -> None:
        """Write the entries used since this cache was created (atomically); other entries are dropped."""
        if self.path is None or self._used == self._known:
            return
        data = {"format": CACHE_FORMAT, "files": dict(sorted(self._used.items()))}
        atomic_write_text(self.path, json.dumps(data, indent=1) + "\n")
        self._known = dict(self._used)


def bundle_file_hashes(
    spec: BundleSpec, spec_path: Path | None, classifier: str, cache: FileHashCache | None = None
) -> dict[str, str | None]:
    """SHA-256 of ``bundle.json`` and of each file an explanation with ``classifier`` uses.

    Those are the generator, the encoder, the descriptor model and the explained classifier's
    file; the bundle's other classifiers cannot change its numbers and are left out. A file that
    cannot be read has None. A bundle built in memory (``spec_path`` None) has no files: ``{}``.
    """
    if spec_path is None:
        return {}
    cache = cache or FileHashCache()
    used = {role: relative for role, relative in spec.files().items()
            if not role.startswith("classifier ") or role == f"classifier {classifier!r}"}
    hashes = {"bundle.json": cache.sha256(spec_path)}
    for role, relative in sorted(used.items()):
        hashes[role] = cache.sha256(spec_path.parent / relative)
    return hashes
