"""cfattack.stylegan.checkpoint and .loading: our own generator checkpoint format, and load_generator."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile

import pytest
import torch

from cfattack.errors import InvalidInputError, NetworkLoadError
from cfattack.stylegan.checkpoint import (
    CHECKPOINT_FORMAT,
    load_generator_checkpoint,
    read_generator_checkpoint,
    save_generator_checkpoint,
)
from cfattack.stylegan.generator import Generator
from cfattack.stylegan.loading import load_generator
from tests.cfattack.stylegan.conftest import (
    IMAGE_ATOL,
    REPO_ROOT,
    assert_state_equal,
    golden_image_error,
    small_generator,
)


def test_checkpoint_round_trip(tmp_path, t32):
    G_golden, case = t32
    path = save_generator_checkpoint(G_golden, tmp_path / "g.pt", extra={"step": 1200, "metrics": {"fid": 12.5}})
    assert path == tmp_path / "g.pt" and zipfile.is_zipfile(path)
    assert [p.name for p in tmp_path.iterdir()] == ["g.pt"]  # no temporary file left behind

    raw = torch.load(path, weights_only=True)
    assert raw["format"] == CHECKPOINT_FORMAT and raw["class"] == "Generator"
    contents = read_generator_checkpoint(path)
    assert contents["extra"] == {"step": 1200, "metrics": {"fid": 12.5}}
    assert contents["init_kwargs"] == case.init_kwargs

    G = load_generator_checkpoint(path)
    assert isinstance(G, Generator) and not G.training
    assert not any(p.requires_grad for p in G.parameters())
    assert_state_equal(G, case.state_dict())
    assert golden_image_error(G, case) < IMAGE_ATOL


def test_checkpoint_survives_a_crash_mid_write(tmp_path):
    original = small_generator(0)
    path = save_generator_checkpoint(original, tmp_path / "g.pt")
    before = path.read_bytes()

    # A hard crash (no cleanup runs) halfway through writing the replacement.
    script = (
        "import os, sys, torch\n"
        "from cfattack import legacy\n"
        "from tests.cfattack.stylegan.conftest import small_generator\n"
        "def crash(obj, f, *args, **kwargs):\n"
        "    f.write(b'PK\\x03\\x04 half a checkpoint')\n"
        "    f.flush()\n"
        "    os._exit(17)\n"
        "torch.save = crash\n"
        "legacy.save_generator_checkpoint(small_generator(1), sys.argv[1])\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(path)], cwd=REPO_ROOT, timeout=120,
                            capture_output=True, check=False)
    assert result.returncode == 17, result.stderr.decode()[-2000:]
    leftovers = list(tmp_path.glob(".g.pt.*.tmp"))
    assert len(leftovers) == 1 and leftovers[0].stat().st_size > 0
    assert path.read_bytes() == before
    assert_state_equal(load_generator(path), original.state_dict())

    # An exception (not a crash) cleans up its temporary file; the original stays.
    def failing_save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 partial")
        raise OSError("disk full")

    real_save = torch.save
    torch.save = failing_save
    try:
        with pytest.raises(OSError, match="disk full"):
            save_generator_checkpoint(small_generator(2), path)
    finally:
        torch.save = real_save
    assert len(list(tmp_path.glob(".g.pt.*.tmp"))) == 1  # only the crash's leftover
    assert path.read_bytes() == before

    # The next save replaces the file normally.
    save_generator_checkpoint(small_generator(3), path)
    assert_state_equal(load_generator_checkpoint(path), small_generator(3).state_dict())


def test_checkpoint_validation(tmp_path):
    G = small_generator(0)
    good = {"format": CHECKPOINT_FORMAT, "class": "Generator", "init_kwargs": G.init_kwargs,
            "state_dict": G.state_dict(), "extra": {}}
    bad_payloads = {
        "format": ({**good, "format": "something/2"}, "expected format"),
        "class": ({**good, "class": "Discriminator"}, "unsupported class"),
        "tensor": (torch.zeros(3), "expected format"),
        "state": ({**good, "state_dict": {"x": 1}}, "state_dict"),
        "missing": ({**good, "state_dict": {k: v for k, v in G.state_dict().items() if "fc0" not in k}},
                    r"missing mapping\.fc0\.weight"),
        "kwargs": ({**good, "init_kwargs": {**G.init_kwargs, "bogus": 1}}, "cannot build a Generator"),
    }
    for name, (payload, message) in bad_payloads.items():
        path = tmp_path / f"{name}.pt"
        torch.save(payload, path)
        with pytest.raises(NetworkLoadError, match=message):
            load_generator_checkpoint(path)

    path = tmp_path / "pickled.pt"
    torch.save(good, path, _use_new_zipfile_serialization=False)  # legacy torch.save: not our format
    with pytest.raises(NetworkLoadError):
        load_generator_checkpoint(path)


def test_checkpoint_save_arguments(tmp_path):
    G = small_generator(0)
    with pytest.raises(InvalidInputError, match="extra"):
        save_generator_checkpoint(G, tmp_path / "a.pt", extra={"callback": print})
    with pytest.raises(InvalidInputError, match="extra"):
        save_generator_checkpoint(G, tmp_path / "a.pt", extra=[1, 2])
    with pytest.raises(InvalidInputError, match="Generator"):
        save_generator_checkpoint(torch.nn.Linear(2, 2), tmp_path / "a.pt")
    with pytest.raises(InvalidInputError, match="does not exist"):
        save_generator_checkpoint(G, tmp_path / "no" / "such" / "dir" / "a.pt")
    assert list(tmp_path.iterdir()) == []


def test_load_generator_dispatches_by_content(tmp_path, t32, t32_pickle):
    G_golden, case = t32
    ckpt = save_generator_checkpoint(G_golden, tmp_path / "network.pkl")  # misleading name on purpose
    pkl = tmp_path / "network.pt"
    pkl.write_bytes(t32_pickle.read_bytes())
    for path in (ckpt, pkl):
        G = load_generator(path)
        assert isinstance(G, Generator) and not G.training
        assert_state_equal(G, case.state_dict())
    assert load_generator(str(pkl), device=torch.device("cpu")).mapping.w_avg.device.type == "cpu"


def test_checkpoint_file_stays_small_and_plain(tmp_path):
    path = save_generator_checkpoint(small_generator(0), tmp_path / "g.pt")
    with zipfile.ZipFile(path) as z:
        pickled = next(n for n in z.namelist() if n.endswith("data.pkl"))
        data = z.read(pickled)
    # Only torch's weights-only building blocks: no cfattack (or any other) classes inside.
    assert b"cfattack" not in data.replace(CHECKPOINT_FORMAT.encode(), b"")
    assert os.path.getsize(path) < 200_000
