"""cfattack.stylegan.official_pickle: official StyleGAN3 pickles become our Generator, faithfully."""

from __future__ import annotations

import hashlib
import io

import pytest

import cfattack.errors
from cfattack.errors import InvalidInputError, NetworkLoadError
from cfattack.stylegan import official_pickle
from cfattack.stylegan.generator import Generator
from cfattack.stylegan.official_pickle import load_network_pkl
from tests.cfattack.stylegan.conftest import IMAGE_ATOL, assert_state_equal, golden_image_error
from tests.golden import SHIPPED_GENERATOR_CASES, build_golden_generator
from tests.tools.make_official_pickle import (
    PLACEHOLDER_SRC_D,
    EasyDict,
    official_pickle_bytes,
    write_official_pickle,
)


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


def test_unsafe_pickle_error_is_reexported():
    assert official_pickle.UnsafePickleError is cfattack.errors.UnsafePickleError
    assert issubclass(official_pickle.UnsafePickleError, NetworkLoadError)


def test_old_import_path_still_works():
    import cfattack.legacy

    assert cfattack.legacy.load_network_pkl is load_network_pkl
    assert cfattack.legacy.UnsafePickleError is cfattack.errors.UnsafePickleError
    assert all(hasattr(cfattack.legacy, name) for name in cfattack.legacy.__all__)


# ---------------------------------------------------------------------------------------------
# Records that are not a usable StyleGAN3 generator.


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
        (lambda kw: {k: v for k, v in kw.items() if k != "z_dim"}, "refusing to build G_ema: init_kwargs: missing z_dim"),
        (lambda kw: {**kw, "channel_max": 10**9}, r"channel_max=1000000000 is not an int"),
        (lambda kw: {**kw, "mapping_kwargs": {"num_layers": "2"}}, r"mapping_kwargs\.num_layers='2'"),
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
