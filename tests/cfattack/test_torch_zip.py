"""cfattack.torch_zip: our checkpoints read without torch.load, with every declared size checked."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import torch

from cfattack.errors import NetworkLoadError, UnsafePickleError
from cfattack.torch_zip import read_torch_zip

ASSETS = Path(__file__).resolve().parents[2] / "cfattack" / "assets" / "default"


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


@pytest.mark.parametrize("path", sorted(ASSETS.rglob("*.pt")), ids=lambda p: p.name)
def test_reads_the_shipped_networks_exactly_as_torch_load(path):
    assert _same(read_torch_zip(path), torch.load(path, map_location="cpu", weights_only=True))


def test_views_dtypes_and_shared_references(tmp_path):
    base = torch.arange(12, dtype=torch.float32)
    shared = torch.ones(3, dtype=torch.float16)
    payload = {"first": base[:6].view(2, 3), "second": base[6:], "t": torch.eye(3).t(), "same": shared,
               "again": shared, "long": torch.tensor([1, -2]), "bool": torch.tensor([True]), "empty": torch.zeros(0, 4),
               "nested": {"list": [1, 2.5, None, "x"], "tuple": (1, 2)}}
    torch.save(payload, tmp_path / "a.pt")
    loaded = read_torch_zip(tmp_path / "a.pt")
    assert _same(loaded, torch.load(tmp_path / "a.pt", weights_only=True))
    assert loaded["same"] is loaded["again"]


def test_overlapping_views_of_one_storage_are_refused(tmp_path):
    base = torch.arange(10.0)
    torch.save({"a": base[:6], "b": base[4:]}, tmp_path / "overlap.pt")
    with pytest.raises(NetworkLoadError, match="share storage elements"):
        read_torch_zip(tmp_path / "overlap.pt")


class _Pickled:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_anything_but_tensors_and_plain_values_is_refused_by_name(tmp_path, capsys):
    torch.save({"x": _Pickled()}, tmp_path / "code.pt")
    with pytest.raises(UnsafePickleError) as info:
        read_torch_zip(tmp_path / "code.pt")
    # protocol 2 spells builtins the Python 2 way; the name is reported as the file wrote it
    assert info.value.global_name == "__builtin__.print" and "\n" not in str(info.value)
    assert "must never run" not in capsys.readouterr().out


def test_torchscript_archives_are_refused_unread(tmp_path):
    with zipfile.ZipFile(tmp_path / "script.pt", "w") as z:
        z.writestr("script/data.pkl", b"\x80\x02}q\x00.")
        z.writestr("script/constants.pkl", b"\x80\x02)q\x00.")
        z.writestr("script/code/__torch__.py", "def forward(self):\n    while True: pass\n")
    with pytest.raises(NetworkLoadError, match="TorchScript archive"):
        read_torch_zip(tmp_path / "script.pt")


def test_limits_and_broken_archives(tmp_path):
    torch.save({"w": torch.zeros(1000)}, tmp_path / "w.pt")
    with pytest.raises(NetworkLoadError, match="refusing to load the checkpoint: .*takes the tensors past 1000 bytes"):
        read_torch_zip(tmp_path / "w.pt", max_bytes=1000)
    assert read_torch_zip(tmp_path / "w.pt", max_bytes=4000)["w"].shape == (1000,)

    data = (tmp_path / "w.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) - 200])
    with zipfile.ZipFile(tmp_path / "w.pt") as src, zipfile.ZipFile(tmp_path / "big.pt", "w") as dst:
        for info in src.infolist():
            dst.writestr(info, b"big" if info.filename.endswith("byteorder") else src.read(info))
    for name, problem in (("cut.pt", "not a readable classifier"), ("big.pt", "big-endian"),
                          ("missing.pt", "no such classifier file")):
        with pytest.raises(NetworkLoadError, match=problem) as info:
            read_torch_zip(tmp_path / name, what="classifier")
        assert str(tmp_path / name) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(NetworkLoadError, match="not a regular file"):
        read_torch_zip(tmp_path)
