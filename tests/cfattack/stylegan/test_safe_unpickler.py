"""cfattack.stylegan.safe_unpickler: official pickles are read without running anything in them.

The restricted unpickler's allow-list, the inert values it rebuilds (`pickle_records`), hostile
pickles, and broken or truncated files (read through `file_access`).
"""

from __future__ import annotations

import io
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch

from cfattack.bounded_pickle import FormatError
from cfattack.errors import NetworkLoadError, UnsafePickleError
from cfattack.stylegan.checkpoint import load_generator_checkpoint
from cfattack.stylegan.generator import Generator
from cfattack.stylegan.loading import load_generator
from cfattack.stylegan.official_pickle import load_network_pkl
from cfattack.stylegan.pickle_records import _rebuild_tensor_v2
from cfattack.stylegan.safe_unpickler import _NetworkUnpickler
from tests.cfattack.stylegan.conftest import REPO_ROOT, assert_state_equal
from tests.tools.make_official_pickle import write_official_pickle
from tests.tools.malicious_pickles import write_malicious_pickles


def test_pickle_holds_the_official_globals_only(t32_pickle):
    # Our writer emits exactly the globals of pickle_format.md section 6 (outer stream).
    seen = set()

    class Recording(_NetworkUnpickler):
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
    loaded = _NetworkUnpickler(io.BytesIO(pickle.dumps(values, protocol=4))).load()
    for name, value in values.items():
        got = loaded[name].tensor
        assert got.dtype == value.dtype and got.shape == value.shape, name
        assert torch.equal(got, value.detach()), name


def test_numpy_values_are_rebuilt_without_numpy_globals():
    values = {"a": np.array([[1, 2], [3, 4]], dtype=np.int64), "f": np.float64(0.25), "u": np.uint8(7),
              "fortran": np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3))}
    loaded = _NetworkUnpickler(io.BytesIO(pickle.dumps(values, protocol=4))).load()
    assert np.array_equal(loaded["a"].array, values["a"])
    assert np.array_equal(loaded["fortran"].array, values["fortran"])
    assert loaded["f"] == 0.25 and loaded["f"].dtype == np.float64 and loaded["u"] == 7


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
    assert "__code__" not in vars(_rebuild_tensor_v2) and not hasattr(dict, "__code__")


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


# ---------------------------------------------------------------------------------------------
# Storages and tensors on a budget (issue 18: bounded loading).


def _tensors_over(storages, views):
    """A pickle of tensors (shape, stride, offset) over the given storage objects."""
    from tests.tools.make_official_pickle import snapshot_dumps, tensor_call

    return snapshot_dumps({f"t{i}": tensor_call(storages[i], shape, stride, offset)
                           for i, (shape, stride, offset) in enumerate(views)})


def test_a_payload_referenced_twice_is_one_storage():
    from tests.tools.make_official_pickle import Call, GlobalRef, legacy_storage_stream

    payload = legacy_storage_stream(torch.arange(8.0))  # the same bytes object: memoized in the pickle
    storages = [Call(GlobalRef("torch.storage", "_load_from_bytes"), (payload,)) for _ in range(2)]
    halves = _NetworkUnpickler(io.BytesIO(_tensors_over(storages, [((4,), (1,), 0), ((4,), (1,), 4)]))).load()
    assert halves["t0"].tensor.untyped_storage().data_ptr() == halves["t1"].tensor.untyped_storage().data_ptr()
    assert torch.equal(torch.cat([halves["t0"].tensor, halves["t1"].tensor]), torch.arange(8.0))
    # Overlapping views of it would be two networks' worth of weights from one stored copy.
    with pytest.raises(FormatError, match="share storage elements"):
        _NetworkUnpickler(io.BytesIO(_tensors_over(storages, [((8,), (1,), 0), ((8,), (1,), 0)]))).load()


@pytest.mark.parametrize(("view", "problem"), [
    (((1000, 1000), (0, 1), 0), "zero stride"),
    (((1000, 1000), (1, 1), 0), "overlapping strides"),
    (((4, 4), (4, 1), 1), "past the end"),
])
def test_unfair_tensor_views_are_refused(tmp_path, view, problem):
    from tests.tools.make_official_pickle import storage_blob

    path = tmp_path / "views.pkl"
    path.write_bytes(_tensors_over([storage_blob(torch.zeros(1999 if "overlap" in problem else 16))], [view]))
    with pytest.raises(NetworkLoadError, match=problem) as info:
        load_network_pkl(path)
    assert "\n" not in str(info.value) and not isinstance(info.value, UnsafePickleError)


def test_build_cannot_shadow_ordered_dict_methods(tmp_path):
    # BUILD setting `get`/`items` on an OrderedDict made load_network_pkl raise a bare TypeError.
    path = tmp_path / "od.pkl"
    path.write_bytes(b"\x80\x02ccollections\nOrderedDict\n)R}(X\x03\x00\x00\x00getK\x01X\x05\x00\x00\x00itemsK\x02ub.")
    for loader in (load_network_pkl, load_generator):
        with pytest.raises(NetworkLoadError, match="set attributes on an OrderedDict"):
            loader(path)


def test_the_storage_budget_covers_every_storage(tmp_path, t32_pickle):
    with pytest.raises(NetworkLoadError, match=r"refusing to load: a storage of .* takes the tensors past 1\.0 MiB"):
        load_network_pkl(t32_pickle, max_bytes=1 << 20)
    assert load_generator(t32_pickle, max_bytes=64 << 20) is not None
