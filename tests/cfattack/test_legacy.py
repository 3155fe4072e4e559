"""cfattack.legacy: official StyleGAN3 pickles read safely, and our own checkpoint format."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import cfattack.errors
from cfattack import legacy
from cfattack.errors import InvalidInputError, NetworkLoadError, UnsafePickleError
from cfattack.generator import Generator
from cfattack.legacy import (
    CHECKPOINT_FORMAT,
    load_generator,
    load_generator_checkpoint,
    load_network_pkl,
    read_generator_checkpoint,
    save_generator_checkpoint,
)
from tests.golden import SHIPPED_GENERATOR_CASES, build_golden_generator
from tests.tools.make_official_pickle import (
    PLACEHOLDER_SRC_D,
    EasyDict,
    official_pickle_bytes,
    write_official_pickle,
)
from tests.tools.malicious_pickles import write_malicious_pickles

REPO_ROOT = Path(__file__).resolve().parents[2]
IMAGE_ATOL = 1e-4


def golden_image_error(G: Generator, case, samples: int = 3) -> float:
    """Max |G.synthesis(G.mapping(z, c)) - img_psi1| over the first ``samples`` golden inputs."""
    z = torch.from_numpy(case.arrays["z"][:samples])
    c = torch.from_numpy(case.arrays["c"][:samples])
    with torch.no_grad():
        img = G.synthesis(G.mapping(z, c), noise_mode="const", force_fp32=True)
    expected = torch.from_numpy(case.arrays["img_psi1"][:samples])
    return float((img.double() - expected.double()).abs().max())


def assert_state_equal(G: torch.nn.Module, reference: dict[str, torch.Tensor]) -> None:
    state = G.state_dict()
    assert list(state) == list(reference)
    for name, value in reference.items():
        # (The golden npz stores 0-d buffers as [1].)
        assert torch.equal(state[name].reshape(value.shape), value), name


@pytest.fixture(scope="module")
def t32():
    return build_golden_generator("T32_c10_gray")


@pytest.fixture(scope="module")
def t32_pickle(tmp_path_factory, t32):
    G, _ = t32
    return write_official_pickle(tmp_path_factory.mktemp("pkl") / "t32.pkl", G)


# ---------------------------------------------------------------------------------------------
# Official pickles: round trip of the golden networks.


@pytest.mark.parametrize("variant", ["torch2", "torch1"])
@pytest.mark.parametrize("name", SHIPPED_GENERATOR_CASES)
def test_official_pickle_reproduces_golden_image(tmp_path, name, variant):
    G_golden, case = build_golden_generator(name)
    path = write_official_pickle(tmp_path / f"{name}.pkl", G_golden, variant=variant)
    assert path.read_bytes()[:2] == b"\x80\x04"

    data = load_network_pkl(path)
    G = data["G_ema"]
    assert isinstance(G, Generator)
    assert G.init_kwargs == case.init_kwargs
    assert not G.training and not any(p.requires_grad for p in G.parameters())
    assert_state_equal(G, case.state_dict())
    # (Same weights and kwargs as the torch2 variant: one sample suffices to check the image.)
    assert golden_image_error(G, case, samples=3 if variant == "torch2" else 1) < IMAGE_ATOL


def test_pickle_holds_the_official_globals_only(t32_pickle):
    # Our writer emits exactly the globals of pickle_format.md section 6 (outer stream).
    seen = set()

    class Recording(legacy._NetworkUnpickler):
        def find_class(self, module, name):
            seen.add(f"{module}.{name}")
            return super().find_class(module, name)

    with open(t32_pickle, "rb") as f:
        Recording(f).load()
    assert seen == {
        "torch_utils.persistence._reconstruct_persistent_obj",
        "collections.OrderedDict",
        "torch._utils._rebuild_parameter",
        "torch._utils._rebuild_tensor_v2",
        "torch.storage._load_from_bytes",
        "numpy._core.multiarray._reconstruct",
        "numpy._core.multiarray.scalar",
        "numpy.ndarray",
        "numpy.dtype",
        "dnnlib.util.EasyDict",
    }


def test_load_returns_every_part(t32, t32_pickle):
    _, case = t32
    data = load_network_pkl(t32_pickle)
    assert set(data) == {"G_ema", "G", "D", "augment_pipe", "training_set_kwargs"}
    assert isinstance(data["G"], Generator) and data["G"] is not data["G_ema"]
    assert_state_equal(data["G"], case.state_dict())
    D = data["D"]
    assert D["class_name"] == "Discriminator"
    assert D["module_src_sha256"] == hashlib.sha256(PLACEHOLDER_SRC_D.encode()).hexdigest()
    assert D["init_kwargs"]["epilogue_kwargs"] == {"mbstd_group_size": 4}
    assert type(D["init_kwargs"]["block_kwargs"]) is dict  # EasyDict -> dict
    assert "b32.conv0.weight" in D["state_dict"] and D["state_dict"]["b32.conv0.weight"].shape == (4, 4, 3, 3)
    assert data["augment_pipe"] is None
    assert data["training_set_kwargs"]["class_name"] == "training.dataset.ImageFolderDataset"

    only = load_network_pkl(t32_pickle, load=("G_ema",))
    assert isinstance(only["G_ema"], Generator) and only["G"] is None and only["D"] is None


def test_init_kwargs_come_back_as_plain_dicts(t32_pickle):
    G = load_network_pkl(t32_pickle, load=("G_ema",))["G_ema"]
    assert type(G.init_kwargs["mapping_kwargs"]) is dict


def test_installed_torch_tensor_pickling_is_read(tmp_path, t32):
    # Tensors reduced by the installed torch itself, not by our test writer.
    G_golden, case = t32
    path = tmp_path / "native.pkl"
    path.write_bytes(official_pickle_bytes(G_golden, native_tensors=True))
    assert_state_equal(load_network_pkl(path, load=("G_ema",))["G_ema"], case.state_dict())


def test_tensor_forms_dtypes_and_views():
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    values = {
        "view_with_offset": base[1:, 2:5],
        "transposed": base.t(),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 3),
        "half": torch.linspace(-1, 1, 7).half(),
        "bfloat16": torch.linspace(-1, 1, 5).bfloat16(),
        "double": torch.randn(3, dtype=torch.float64),
        "long": torch.tensor([1, -2, 3**30]),
        "bool": torch.tensor([True, False, True]),
        "param": torch.nn.Parameter(torch.randn(2, 2), requires_grad=False),
    }
    # The private unpickler is the piece under test here: real torch.pickle output, no records.
    loaded = legacy._NetworkUnpickler(io.BytesIO(pickle.dumps(values, protocol=4))).load()
    for name, value in values.items():
        got = loaded[name].tensor
        assert got.dtype == value.dtype and got.shape == value.shape, name
        assert torch.equal(got, value.detach()), name


def test_numpy_values_are_rebuilt_without_numpy_globals():
    values = {"a": np.array([[1, 2], [3, 4]], dtype=np.int64), "f": np.float64(0.25), "u": np.uint8(7),
              "fortran": np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3))}
    loaded = legacy._NetworkUnpickler(io.BytesIO(pickle.dumps(values, protocol=4))).load()
    assert np.array_equal(loaded["a"].array, values["a"])
    assert np.array_equal(loaded["fortran"].array, values["fortran"])
    assert loaded["f"] == 0.25 and loaded["f"].dtype == np.float64 and loaded["u"] == 7


def test_file_objects_and_unseekable_streams(t32, t32_pickle):
    _, case = t32
    with open(t32_pickle, "rb") as f:
        assert_state_equal(load_network_pkl(f, load=("G_ema",))["G_ema"], case.state_dict())

    class Unseekable(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self._f = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, b) -> int:
            chunk = self._f.read(min(len(b), 4096))
            b[: len(chunk)] = chunk
            return len(chunk)

    stream = io.BufferedReader(Unseekable(t32_pickle.read_bytes()))
    assert_state_equal(load_network_pkl(stream, load=("G_ema",))["G_ema"], case.state_dict())


# ---------------------------------------------------------------------------------------------
# Hostile pickles.


@pytest.fixture(scope="module")
def malicious(tmp_path_factory):
    root = tmp_path_factory.mktemp("malicious")
    return write_malicious_pickles(root / "pickles", root / "markers")


def test_there_are_many_distinct_attacks(malicious):
    assert len(malicious) >= 8
    assert len({c.expected_global for c in malicious}) >= 8


def test_malicious_pickles_are_refused_without_side_effects(malicious):
    for case in malicious:
        for loader in (load_network_pkl, load_generator):
            if case.expected_global is None:
                with pytest.raises(NetworkLoadError) as info:
                    loader(case.path)
                assert not isinstance(info.value, UnsafePickleError), case.name
            else:
                with pytest.raises(UnsafePickleError) as info:
                    loader(case.path)
                assert info.value.global_name == case.expected_global, case.name
                message = str(info.value)
                assert case.expected_global in message and str(case.path) in message
                assert "\n" not in message
            assert not case.marker.exists(), f"{case.name}: the payload ran"


def test_armed_payloads_do_run_under_plain_pickle(tmp_path):
    # Proves the attacks are live: an unrestricted unpickler (in a child process) executes them.
    cases = [c for c in write_malicious_pickles(tmp_path / "p", tmp_path / "m") if c.armed]
    assert len(cases) >= 8
    script = (
        "import pickle, sys\n"
        "for p in sys.argv[1:]:\n"
        "    try:\n"
        "        pickle.load(open(p, 'rb'))\n"
        "    except Exception:\n"
        "        pass\n"
        "import time; time.sleep(0.3)\n"  # subprocess.Popen's touch runs asynchronously
    )
    subprocess.run([sys.executable, "-c", script, *map(str, (c.path for c in cases))],
                   cwd=REPO_ROOT, check=True, timeout=120, capture_output=True)
    assert [c.name for c in cases if not c.marker.exists()] == []


def test_embedded_module_source_is_never_executed(tmp_path, t32):
    G_golden, case = t32
    marker = tmp_path / "ran.marker"
    src = f"open({str(marker)!r}, 'w').close()\nclass Generator:\n    pass\n"
    path = write_official_pickle(tmp_path / "evil_src.pkl", G_golden, module_src=src)
    G = load_network_pkl(path)["G_ema"]
    assert isinstance(G, Generator)
    assert_state_equal(G, case.state_dict())
    assert not marker.exists()


@pytest.mark.parametrize(
    "stream",
    [
        # BUILD (setting attributes) on an allowed function, on the EasyDict stand-in, on a tensor.
        b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n}X\x08\x00\x00\x00__code__K\x01sb.",
        b"\x80\x02cdnnlib.util\nEasyDict\n}X\x04\x00\x00\x00keysK\x01sb.",
        b"\x80\x02ccollections\nOrderedDict\n)\x81.",  # NEWOBJ needs a class: refused
        b"\x80\x02ctorch_utils.persistence\n_reconstruct_persistent_obj\nK\x05\x85R.",  # meta not a dict
        b"\x80\x02cnumpy\ndtype\nX\x02\x00\x00\x00O8\x89\x88\x87R.",  # object dtype
        b"\x80\x02ctorch.storage\n_load_from_bytes\nC\x03abc\x85R.",  # not a storage stream
        b"\x80\x02(K\x01\x85Q.",  # persistent id at the outer level
    ],
)
def test_allowed_globals_cannot_be_abused(tmp_path, stream):
    path = tmp_path / "abuse.pkl"
    path.write_bytes(stream)
    with pytest.raises(NetworkLoadError) as info:
        load_network_pkl(path)
    assert not isinstance(info.value, UnsafePickleError)
    assert "__code__" not in vars(legacy._rebuild_tensor_v2) and not hasattr(dict, "__code__")


def test_unsafe_pickle_error_is_reexported():
    assert legacy.UnsafePickleError is cfattack.errors.UnsafePickleError
    assert issubclass(legacy.UnsafePickleError, NetworkLoadError)


# ---------------------------------------------------------------------------------------------
# Broken files.


def test_missing_empty_and_directory(tmp_path):
    with pytest.raises(NetworkLoadError, match="no such file"):
        load_network_pkl(tmp_path / "absent.pkl")
    (tmp_path / "empty.pkl").write_bytes(b"")
    for loader in (load_network_pkl, load_generator, load_generator_checkpoint):
        with pytest.raises(NetworkLoadError, match="empty"):
            loader(tmp_path / "empty.pkl")
    with pytest.raises(NetworkLoadError, match="not a regular file"):
        load_generator(tmp_path)


def test_truncated_pickles(tmp_path, t32_pickle):
    data = t32_pickle.read_bytes()
    for cut in (1, 2, 11, 200, 5000, len(data) // 3, len(data) // 2, len(data) - 100, len(data) - 1):
        path = tmp_path / f"cut{cut}.pkl"
        path.write_bytes(data[:cut])
        with pytest.raises(NetworkLoadError) as info:
            load_network_pkl(path)
        assert not isinstance(info.value, UnsafePickleError)
        message = str(info.value)
        assert "truncated" in message and str(path) in message and "\n" not in message, (cut, message)


def test_garbage_files(tmp_path):
    rng = np.random.default_rng(0)
    files = {
        "random.pkl": rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        "random_after_header.pkl": b"\x80\x04" + rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        "text.pkl": b"This is a text file, not a network.\n" * 10,
        "json.pkl": b'{"G_ema": 1}',
        "html.pkl": b"<html><body>404 Not Found</body></html>",
    }
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
        for loader in (load_network_pkl, load_generator):
            with pytest.raises(NetworkLoadError) as info:
                loader(tmp_path / name)
            assert str(tmp_path / name) in str(info.value) and "\n" not in str(info.value)


def test_zip_that_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "archive.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("readme.txt", "hello")
    for loader in (load_network_pkl, load_generator, load_generator_checkpoint):
        with pytest.raises(NetworkLoadError) as info:
            loader(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value)

    other = tmp_path / "tensor.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(NetworkLoadError, match="cfattack.generator/1"):
        load_generator(other)


@pytest.mark.parametrize(
    ("top_level", "message"),
    [
        (lambda snap: [1, 2, 3], "expected a dict"),
        (lambda snap: {"G": snap["G"]}, "no 'G_ema'"),
        (lambda snap: {**snap, "G_ema": None}, "no 'G_ema'"),
        (lambda snap: {**snap, "G_ema": 5}, "not a network object"),
        (lambda snap: {**snap, "G_ema": snap["D"]}, "not a StyleGAN3 'Generator'"),
        (lambda snap: (snap["G"], snap["D"], snap["G_ema"]), "TensorFlow"),
        (lambda snap: {**snap, "training_set_kwargs": [1]}, "training_set_kwargs"),
    ],
)
def test_pickles_of_the_wrong_shape(tmp_path, t32, top_level, message):
    path = tmp_path / "wrong.pkl"
    path.write_bytes(official_pickle_bytes(t32[0], top_level=top_level))
    with pytest.raises(NetworkLoadError, match=message):
        load_network_pkl(path)


def test_stylegan2_like_generator_is_refused(tmp_path, t32):
    def rename_input(path, state):
        if path == "synthesis":
            state["_modules"] = {("b4" if k == "input" else k): v for k, v in state["_modules"].items()}

    path = write_official_pickle(tmp_path / "sg2.pkl", t32[0], edit_state=rename_input)
    with pytest.raises(NetworkLoadError, match="StyleGAN2"):
        load_network_pkl(path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda kw: {**kw, "use_wavelets": True}, "use_wavelets"),
        (lambda kw: {**kw, "mapping_kwargs": EasyDict(num_layers=2, dropout=0.1)}, "mapping_kwargs.dropout"),
        (lambda kw: {k: v for k, v in kw.items() if k != "z_dim"}, "cannot build a Generator"),
        (lambda kw: {**kw, "channel_max": 10**9}, r"channel_max=1000000000 is not an int"),
        (lambda kw: {**kw, "mapping_kwargs": {"num_layers": "2"}}, r"mapping\.num_layers='2'"),
    ],
)
def test_unusable_init_kwargs(tmp_path, t32, change, message):
    G_golden, _ = t32
    path = write_official_pickle(tmp_path / "kw.pkl", G_golden, init_kwargs=change(G_golden.init_kwargs))
    with pytest.raises(NetworkLoadError, match=message):
        load_network_pkl(path)


def test_weights_that_do_not_fit_the_kwargs(tmp_path, t32):
    G_golden, _ = t32

    def drop_and_add(path, state):
        if path == "synthesis.L1_36_64":
            del state["_parameters"]["bias"]
        if path == "mapping":
            state["_buffers"]["surprise"] = state["_buffers"]["w_avg"]

    path = write_official_pickle(tmp_path / "sd.pkl", G_golden, edit_state=drop_and_add)
    with pytest.raises(NetworkLoadError, match=r"missing synthesis\.L1_36_64\.bias.*unexpected mapping\.surprise"):
        load_network_pkl(path)

    kwargs = {**G_golden.init_kwargs, "z_dim": 32}
    path = write_official_pickle(tmp_path / "shape.pkl", G_golden, init_kwargs=kwargs)
    with pytest.raises(NetworkLoadError, match=r"shape mismatch mapping\.fc0\.weight \[64, 128\] vs \[64, 96\]"):
        load_network_pkl(path)


def test_bad_arguments(t32_pickle):
    with pytest.raises(InvalidInputError, match="unknown network names"):
        load_network_pkl(t32_pickle, load=("G_ema", "generator"))
    with pytest.raises(InvalidInputError, match="device"):
        load_network_pkl(t32_pickle, device="gpu:banana")
    with pytest.raises(InvalidInputError):
        load_network_pkl(12345)


# ---------------------------------------------------------------------------------------------
# Our checkpoint format.


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


def _small_generator(seed: int) -> Generator:
    torch.manual_seed(seed)
    return Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=1, channel_base=256,
                     channel_max=8, num_layers=3, num_critical=1, margin_size=2, mapping_kwargs={"num_layers": 1})


def test_checkpoint_survives_a_crash_mid_write(tmp_path):
    original = _small_generator(0)
    path = save_generator_checkpoint(original, tmp_path / "g.pt")
    before = path.read_bytes()

    # A hard crash (no cleanup runs) halfway through writing the replacement.
    script = (
        "import os, sys, torch\n"
        "from cfattack import legacy\n"
        "from tests.cfattack.test_legacy import _small_generator\n"
        "def crash(obj, f, *args, **kwargs):\n"
        "    f.write(b'PK\\x03\\x04 half a checkpoint')\n"
        "    f.flush()\n"
        "    os._exit(17)\n"
        "torch.save = crash\n"
        "legacy.save_generator_checkpoint(_small_generator(1), sys.argv[1])\n"
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
            save_generator_checkpoint(_small_generator(2), path)
    finally:
        torch.save = real_save
    assert len(list(tmp_path.glob(".g.pt.*.tmp"))) == 1  # only the crash's leftover
    assert path.read_bytes() == before

    # The next save replaces the file normally.
    save_generator_checkpoint(_small_generator(3), path)
    assert_state_equal(load_generator_checkpoint(path), _small_generator(3).state_dict())


def test_checkpoint_validation(tmp_path):
    G = _small_generator(0)
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
    G = _small_generator(0)
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
    path = save_generator_checkpoint(_small_generator(0), tmp_path / "g.pt")
    with zipfile.ZipFile(path) as z:
        pickled = next(n for n in z.namelist() if n.endswith("data.pkl"))
        data = z.read(pickled)
    # Only torch's weights-only building blocks: no cfattack (or any other) classes inside.
    assert b"cfattack" not in data.replace(CHECKPOINT_FORMAT.encode(), b"")
    assert os.path.getsize(path) < 200_000
