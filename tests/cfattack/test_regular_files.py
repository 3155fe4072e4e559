"""Inputs that must be regular files: FIFOs, devices, sockets and link loops are refused at once, never read."""

from __future__ import annotations

import hashlib
import os
import socket
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cfattack.errors import InvalidInputError
from cfattack.images import load_image
from cfattack.regular_files import open_regular_file, printable_path, read_regular_file, sha256_regular_file

pytestmark = pytest.mark.skipif(os.name != "posix", reason="FIFOs, devices and sockets as POSIX has them")


def hostile_files(folder: Path) -> dict[str, tuple[Path, str]]:
    """name -> (path, words the refusal must contain): a FIFO, a /dev/zero link, a socket, loops, a folder."""
    folder.mkdir(parents=True, exist_ok=True)
    os.mkfifo(folder / "fifo.png")
    (folder / "zero.png").symlink_to("/dev/zero")
    (folder / "loop.png").symlink_to("loop.png")
    (folder / "a.png").symlink_to("b.png")
    (folder / "b.png").symlink_to("a.png")
    (folder / "dangling.png").symlink_to("nowhere.png")
    (folder / "dir.png").mkdir()
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(folder / "sock.png"))
    server.close()  # the socket file stays
    return {
        "fifo": (folder / "fifo.png", "FIFO"),
        "dev-zero": (folder / "zero.png", "character device"),
        "loop": (folder / "loop.png", "loop of symbolic links"),
        "two-link loop": (folder / "a.png", "loop of symbolic links"),
        "dangling": (folder / "dangling.png", "link to a missing file"),
        "folder": (folder / "dir.png", "directory"),
        "socket": (folder / "sock.png", "socket"),
        "missing": (folder / "missing.png", "not found"),
    }


def test_every_non_regular_file_is_refused_at_once_by_name(tmp_path):
    for name, (path, words) in hostile_files(tmp_path).items():
        began = time.perf_counter()
        for reader in (lambda p: open_regular_file(p, what="image file"),
                       lambda p: read_regular_file(p, what="image file", max_bytes=1 << 20),
                       lambda p: sha256_regular_file(p, what="image file"),
                       lambda p: load_image(p)):
            with pytest.raises(InvalidInputError) as info:
                reader(path)
            message = str(info.value)
            assert words in message and str(path) in message and "\n" not in message, (name, message)
        assert time.perf_counter() - began < 2, name  # nothing blocked or read forever


def test_regular_files_read_and_hash_exactly(tmp_path):
    path = tmp_path / "x.bin"
    data = os.urandom(3 << 20)  # three read chunks
    path.write_bytes(data)
    (tmp_path / "link.bin").symlink_to("x.bin")  # links to regular files are fine
    assert read_regular_file(tmp_path / "link.bin", max_bytes=len(data)) == data
    assert sha256_regular_file(path) == hashlib.sha256(data).hexdigest()
    with open_regular_file(path) as fh:
        assert fh.read(5) == data[:5]


def test_size_limit_and_nul_byte(tmp_path):
    path = tmp_path / "big.png"
    path.write_bytes(bytes(1001))
    with pytest.raises(InvalidInputError, match="1001 bytes, over the limit of 1000"):
        read_regular_file(path, what="image file", max_bytes=1000)
    with pytest.raises(InvalidInputError, match="NUL"):
        open_regular_file(str(tmp_path / "a\x00b.png"))


def test_load_image_still_reads_a_regular_image_through_a_link(tmp_path):
    pixels = np.arange(64, dtype=np.uint8).reshape(8, 8)
    Image.fromarray(pixels).save(tmp_path / "real.png")
    (tmp_path / "link.png").symlink_to("real.png")
    x = load_image(tmp_path / "link.png")
    assert x.shape == (1, 8, 8)
    np.testing.assert_array_equal(((x[0] + 1) * 127.5).round().numpy().astype(np.uint8), pixels)


def test_printable_path_escapes_undecodable_bytes_only():
    assert printable_path("plain/ünïcode.png") == "plain/ünïcode.png"
    undecodable = os.fsdecode(b"in/bad\xff\xfe.png")  # how Python holds a non-UTF-8 file name
    shown = printable_path(undecodable)
    assert shown == "in/bad\\xff\\xfe.png"
    shown.encode("utf-8")  # writable into JSON and messages
    assert printable_path(b"raw\xff") == "raw\\xff"
    assert printable_path("lone \ud800 surrogate") == "lone \\ud800 surrogate"
