"""Bundles: bundle.json validation, loading real tiny networks of every kind, and every error path."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from cfattack.bundle import loader as bundle_module  # reads DEFAULT_BUNDLE_DIR
from cfattack.bundle.classifier import BundleClassifier, resolve_factory
from cfattack.bundle.loader import Bundle, load_bundle
from cfattack.bundle.spec import (
    BUNDLE_FORMAT,
    BundleError,
    BundleSpec,
    ClassifierSpec,
    GeneratorSpec,
    ImageSpec,
    InputNormalization,
    Provenance,
    read_bundle_spec,
    write_bundle_spec,
)
from cfattack.classifiers.checkpoint import save_classifier_checkpoint
from cfattack.classifiers import build_classifier
from cfattack.inversion.encoder import Encoder, save_encoder_checkpoint
from cfattack.errors import CfattackError, InvalidInputError, NetworkLoadError
from cfattack.stylegan.generator import Generator
from cfattack.stylegan.checkpoint import save_generator_checkpoint
from cfattack.training.data import FASHION_MNIST_ALIASES, FASHION_MNIST_CLASSES
from tests.cfattack.bundle_factories import TinyNet
from tests.tools.make_official_pickle import write_official_pickle

REPO_ROOT = Path(__file__).resolve().parents[3]
RES, CH, K = 16, 1, 10
FACTORIES = "tests.cfattack.bundle_factories"


def _tiny_generator(resolution: int = RES, channels: int = CH, w_dim: int = 8, num_layers: int = 3) -> Generator:
    torch.manual_seed(0)
    return Generator(z_dim=8, c_dim=0, w_dim=w_dim, img_resolution=resolution, img_channels=channels,
                     channel_base=256, channel_max=8, num_layers=num_layers, num_critical=1, margin_size=2,
                     mapping_kwargs={"num_layers": 1})


def _tiny_encoder(num_ws: int, w_dim: int = 8, resolution: int = RES) -> Encoder:
    torch.manual_seed(1)
    return Encoder(img_resolution=resolution, img_channels=CH, num_ws=num_ws, w_dim=w_dim, channels=8, channel_max=16)


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> Path:
    """Every network file the tests combine into bundles, written once."""
    root = tmp_path_factory.mktemp("assets")
    G = _tiny_generator()
    save_generator_checkpoint(G, root / "generator.pt", extra={"note": "tiny, random"})
    write_official_pickle(root / "generator.pkl", G)
    save_generator_checkpoint(_tiny_generator(resolution=32), root / "generator32.pt")
    save_generator_checkpoint(_tiny_generator(channels=3), root / "generator_rgb.pt")
    save_encoder_checkpoint(_tiny_encoder(G.num_ws), root / "encoder.pt")
    save_encoder_checkpoint(_tiny_encoder(G.num_ws + 1), root / "encoder_num_ws.pt")
    save_encoder_checkpoint(_tiny_encoder(G.num_ws, w_dim=4), root / "encoder_w_dim.pt")
    save_encoder_checkpoint(_tiny_encoder(G.num_ws, resolution=32), root / "encoder32.pt")

    (root / "classifiers").mkdir()
    torch.manual_seed(2)
    net = TinyNet(CH, RES, K).eval()
    torch.save(net.state_dict(), root / "classifiers" / "tiny_state.pt")
    torch.save({"state_dict": net.state_dict(), "epoch": 3}, root / "classifiers" / "tiny_wrapped.pt")
    torch.save(TinyNet(CH, RES, 7).state_dict(), root / "classifiers" / "tiny7_state.pt")
    torch.save({"fc.weight": torch.zeros(K, 5)}, root / "classifiers" / "bad_shape_state.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch >= 2.9 deprecates TorchScript; users still ship it
        torch.jit.trace(net, torch.zeros(2, CH, RES, RES)).save(str(root / "classifiers" / "tiny.ts"))
        torch.jit.trace(TinyNet(CH, RES, 7).eval(), torch.zeros(2, CH, RES, RES)).save(
            str(root / "classifiers" / "tiny7.ts"))
    (root / "classifiers" / "garbage.ts").write_bytes(b"this is not torchscript" * 10)

    torch.manual_seed(3)
    clf = build_classifier(K, in_channels=CH, embedding_dim=8, width=4)
    save_classifier_checkpoint(clf, root / "classifiers" / "baseline.pt",
                               metadata={"class_names": list(FASHION_MNIST_CLASSES)})
    save_classifier_checkpoint(clf, root / "classifiers" / "aliased.pt",
                               metadata={"class_names": list(FASHION_MNIST_ALIASES)})
    save_classifier_checkpoint(clf, root / "classifiers" / "other_classes.pt",
                               metadata={"class_names": [f"c{i}" for i in range(K)]})
    (root / "descriptors.pt").write_bytes(b"filled in by the explainer issue")
    return root


def _spec(**overrides) -> dict:
    """A valid bundle.json as a dict: cfattack generator + encoder + three kinds of classifier."""
    spec = {
        "format_version": BUNDLE_FORMAT,
        "name": "tiny",
        "description": "random tiny networks for tests",
        "image": {"resolution": RES, "channels": CH},
        "class_names": list(FASHION_MNIST_CLASSES),
        "class_aliases": dict(FASHION_MNIST_ALIASES),
        "generator": {"file": "generator.pt", "kind": "cfattack"},
        "encoder": "encoder.pt",
        "classifiers": {
            "baseline": {"kind": "cfattack", "file": "classifiers/baseline.pt", "description": "ours",
                         "metrics": {"test_accuracy": 0.1}},
            "scripted": {"kind": "torchscript", "file": "classifiers/tiny.ts"},
            "factory": {"kind": "factory", "file": "classifiers/tiny_state.pt", "factory": f"{FACTORIES}:make_net",
                        "kwargs": {"in_channels": CH, "resolution": RES, "num_classes": K}},
        },
        "default_classifier": "baseline",
        "descriptor_model": "descriptors.pt",
        "latent_space": "w+",
        "truncation_psi": 0.7,
        "provenance": {"commands": ["cfattack train gan --tiny"], "data": "none (random init)",
                       "metrics": {"fd": 1.5, "per_class": [0.1] * K}, "created": "2025-11-23"},
    }
    spec.update(overrides)
    return spec


def _bundle_dir(tmp_path: Path, assets: Path, spec: dict, name: str = "bundle") -> Path:
    directory = tmp_path / name
    shutil.copytree(assets, directory)
    (directory / "bundle.json").write_text(json.dumps(spec), encoding="utf-8")
    return directory


def _classifier(**fields) -> dict:
    return {"kind": "factory", "file": "classifiers/tiny_state.pt", "factory": f"{FACTORIES}:make_net", **fields}


def _one_line_error(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message, message
    return message


# ---------------------------------------------------------------------------------------------
# Loading.


def test_load_bundle_with_every_kind_of_network(tmp_path, assets):
    directory = _bundle_dir(tmp_path, assets, _spec())
    b = load_bundle(directory, trust_code=True)

    assert isinstance(b, Bundle) and b.root == directory.resolve()
    assert isinstance(b.generator, Generator) and (b.generator.img_resolution, b.generator.img_channels) == (RES, CH)
    assert isinstance(b.encoder, Encoder) and b.encoder.num_ws == b.generator.num_ws
    assert b.class_names == FASHION_MNIST_CLASSES and b.num_classes == K
    assert b.default_classifier == "baseline" and set(b.classifiers) == {"baseline", "scripted", "factory"}
    assert b.spec.truncation_psi == 0.7 and b.spec.provenance.metrics["fd"] == 1.5
    assert b.descriptor_model_path == directory.resolve() / "descriptors.pt"

    images = torch.rand(3, CH, RES, RES) * 2 - 1
    for name, clf in b.classifiers.items():
        assert isinstance(clf, BundleClassifier) and clf.name == name and not clf.training
        assert not any(p.requires_grad for p in clf.parameters())
        assert clf(images).shape == (3, K)
    for net in (b.generator, b.encoder):
        assert not net.training and not any(p.requires_grad for p in net.parameters())

    # The factory classifier holds exactly the saved weights.
    reference = TinyNet(CH, RES, K)
    reference.load_state_dict(torch.load(assets / "classifiers" / "tiny_state.pt", weights_only=True))
    assert torch.allclose(b.classifier("factory")(images), reference(images))
    assert torch.allclose(b.classifier("scripted")(images), reference(images))

    assert b.classifier() is b.classifiers["baseline"]
    assert b.classifier("Scripted") is b.classifiers["scripted"]
    assert b.classifier("baseline").has_embedding and b.classifier("baseline").embed(images).shape == (3, 8)
    assert not b.classifier("factory").has_embedding
    with pytest.raises(InvalidInputError, match="no embed"):
        b.classifier("factory").embed(images)
    with pytest.raises(InvalidInputError) as info:
        b.classifier("basline")
    assert "did you mean 'baseline'" in _one_line_error(info)

    assert b.class_index("Ankle boot") == 9
    assert b.class_index("T-shirt/top") == 0
    assert b.class_index(7) == 7 and b.class_name("SNEAKER") == "sneaker" and b.class_name(0) == "t-shirt"
    with pytest.raises(InvalidInputError, match="did you mean 'trouser'"):
        b.class_index("trousers")
    assert "tiny" in repr(b) and b.to("cpu") is b and b.path("encoder.pt") == directory.resolve() / "encoder.pt"
    with pytest.raises(InvalidInputError, match="outside the bundle"):
        b.path("../elsewhere.pt")


def test_classifiers_pass_gradients_to_images(tmp_path, assets):
    b = load_bundle(_bundle_dir(tmp_path, assets, _spec()), trust_code=True)
    images = torch.zeros(2, CH, RES, RES, requires_grad=True)
    b.classifier("factory")(images)[:, 3].sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


def test_official_pickle_generator_and_minimal_spec(tmp_path, assets):
    spec = _spec(generator={"file": "generator.pkl", "kind": "stylegan3-pkl"}, encoder=None, descriptor_model=None,
                 classifiers={"only": {"kind": "torchscript", "file": "classifiers/tiny.ts"}},
                 default_classifier="only", class_aliases={})
    for key in ("description", "provenance", "latent_space", "truncation_psi", "format_version"):
        del spec[key]
    b = load_bundle(_bundle_dir(tmp_path, assets, spec) / "bundle.json", trust_code=True)  # the file itself works too
    reference = load_bundle(_bundle_dir(tmp_path, assets, _spec(), "reference"), trust_code=True)
    assert b.encoder is None and b.descriptor_model_path is None and b.spec.latent_space == "w+"
    ws = torch.randn(1, b.generator.num_ws, b.generator.w_dim)
    assert torch.allclose(b.generator.synthesis(ws), reference.generator.synthesis(ws), atol=1e-5)


def test_factory_variants(tmp_path, assets):
    classifiers = {
        "wrapped": _classifier(file="classifiers/tiny_wrapped.pt"),  # {"state_dict": ..., "epoch": ...}
        "dotted": _classifier(factory=f"{FACTORIES}:Builders.tiny"),
    }
    directory = _bundle_dir(tmp_path, assets, _spec(classifiers=classifiers, default_classifier="dotted"))
    b = load_bundle(directory, trust_code=True)
    images = torch.rand(2, CH, RES, RES)
    assert torch.allclose(b.classifier("wrapped")(images), b.classifier("dotted")(images))


def test_cfattack_classifier_accepts_class_names_given_as_aliases(tmp_path, assets):
    classifiers = {"baseline": {"kind": "cfattack", "file": "classifiers/aliased.pt"}}
    b = load_bundle(_bundle_dir(tmp_path, assets, _spec(classifiers=classifiers)))
    assert b.classifier()(torch.zeros(1, CH, RES, RES)).shape == (1, K)


def test_input_normalization_is_applied(tmp_path, assets):
    norm = {"value_range": [0, 1], "mean": [0.5], "std": [0.25]}
    classifiers = {"rec": {"kind": "factory", "file": "recorder_state.pt", "factory": f"{FACTORIES}:make_recorder",
                           "input_normalization": norm}}
    directory = _bundle_dir(tmp_path, assets, _spec(classifiers=classifiers, default_classifier="rec"))
    torch.save({"weight": torch.ones(K)}, directory / "recorder_state.pt")
    b = load_bundle(directory, trust_code=True)
    images = torch.linspace(-1, 1, RES * RES).view(1, CH, RES, RES)
    b.classifier()(images)
    # [-1, 1] -> [0, 1] -> (x - 0.5) / 0.25 = 2x
    assert torch.allclose(b.classifier().net.last_input, 2 * images, atol=1e-6)


def test_input_normalization_per_channel_imagenet():
    imagenet = InputNormalization(value_range=(0, 1), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    clf = BundleClassifier(torch.nn.Flatten(), name="n", num_classes=3, img_channels=3, img_resolution=1,
                           normalization=imagenet)
    images = torch.tensor([-1.0, 0.0, 1.0]).view(1, 3, 1, 1)
    expected = (torch.tensor([0.0, 0.5, 1.0]) - torch.tensor(imagenet.mean)) / torch.tensor(imagenet.std)
    assert torch.allclose(clf(images)[0], expected, atol=1e-6)
    scaled = BundleClassifier(torch.nn.Flatten(), name="n", num_classes=3, img_channels=3, img_resolution=1,
                              normalization=InputNormalization(value_range=(0, 255)))
    assert torch.allclose(scaled(images)[0], torch.tensor([0.0, 127.5, 255.0]))
    plain = BundleClassifier(torch.nn.Flatten(), name="n", num_classes=3, img_channels=3, img_resolution=1)
    assert torch.equal(plain(images)[0], images.flatten())


def test_classifier_wrapper_checks_inputs_and_outputs():
    clf = BundleClassifier(TinyNet(CH, RES, K), name="tiny", num_classes=K, img_channels=CH, img_resolution=RES)
    for bad in (torch.zeros(2, 3, RES, RES), torch.zeros(CH, RES, RES), torch.zeros(2, CH, 8, 8), "image"):
        with pytest.raises(InvalidInputError, match=r"takes images \[N, 1, 16, 16\]"):
            clf(bad)
    with pytest.raises(InvalidInputError, match="float images"):
        clf(torch.zeros(2, CH, RES, RES, dtype=torch.uint8))
    wrong = BundleClassifier(TinyNet(CH, RES, 7), name="seven", num_classes=K, img_channels=CH, img_resolution=RES)
    with pytest.raises(BundleError, match=r"expected float logits of shape \[2, 10\].*7 outputs per image"):
        wrong(torch.zeros(2, CH, RES, RES))


# ---------------------------------------------------------------------------------------------
# The spec.


def test_spec_round_trip(tmp_path):
    spec = BundleSpec.model_validate(_spec())
    path = spec.save(tmp_path / "new" / "dir")
    assert path == tmp_path / "new" / "dir" / "bundle.json"
    assert sorted(p.name for p in path.parent.iterdir()) == ["bundle.json"]  # no temporary file left
    assert BundleSpec.load(path.parent) == spec == read_bundle_spec(path)
    assert json.loads(path.read_text())["format_version"] == BUNDLE_FORMAT
    assert spec.files() == {"generator": "generator.pt", "encoder": "encoder.pt",
                            "classifier 'baseline'": "classifiers/baseline.pt",
                            "classifier 'scripted'": "classifiers/tiny.ts",
                            "classifier 'factory'": "classifiers/tiny_state.pt", "descriptor model": "descriptors.pt"}
    write_bundle_spec(spec.model_copy(update={"name": "renamed"}), path.parent)  # overwrites
    assert read_bundle_spec(path).name == "renamed"
    with pytest.raises(InvalidInputError):
        write_bundle_spec(_spec(), tmp_path)
    with pytest.raises(Exception):  # frozen
        spec.name = "other"  # type: ignore[misc]


def test_every_spec_field_is_described():
    def walk(model: type) -> None:
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name}"
    for model in (BundleSpec, ImageSpec, GeneratorSpec, ClassifierSpec, InputNormalization, Provenance):
        walk(model)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"default_classifier": "nope"}, "default_classifier 'nope' is not one of the classifiers"),
        ({"class_names": ["Coat", "coat"], "class_aliases": {}}, "same after normalisation"),
        ({"class_names": ["only"], "class_aliases": {}}, "class_names"),
        ({"class_aliases": {"Jacket": "parka"}}, "not a class name"),
        ({"generator": {"file": "../generator.pt"}}, "leads outside the bundle directory"),
        ({"generator": {"file": "nets/../../generator.pt"}}, "leads outside the bundle directory"),
        ({"generator": {"file": "/abs/generator.pt"}}, "is absolute"),
        ({"encoder": "C:/nets/encoder.pt"}, "is absolute"),
        ({"encoder": "nets\\encoder.pt"}, "forward slashes"),
        ({"descriptor_model": "."}, "bundle directory itself"),
        ({"generator": {"file": "g.pt", "kind": "onnx"}}, "generator.kind"),
        ({"image": {"resolution": RES, "channels": CH, "value_range": [0, 1]}}, "must be \\[-1, 1\\]"),
        ({"latent_space": "z"}, "latent_space"),
        ({"truncation_psi": -0.5}, "truncation_psi"),
        ({"surprise": 1}, "surprise: Extra inputs are not permitted"),
        ({"classifiers": {}, "default_classifier": "x"}, "classifiers"),
        ({"classifiers": {"bad name!": _classifier()}, "default_classifier": "bad name!"},
         "classifier name 'bad name!'"),
        ({"classifiers": {"c": {"kind": "factory", "file": "c.pt"}}, "default_classifier": "c"}, "needs factory"),
        ({"classifiers": {"c": _classifier(factory="import os; os.system('x')")}, "default_classifier": "c"},
         "must look like 'package.module:callable'"),
        ({"classifiers": {"c": {"kind": "torchscript", "file": "c.ts", "factory": "m:f"}}, "default_classifier": "c"},
         "apply only to kind 'factory'"),
        ({"classifiers": {"c": _classifier(input_normalization={"mean": [0.5]})}, "default_classifier": "c"},
         "both mean and std"),
        ({"classifiers": {"c": _classifier(input_normalization={"mean": [0.5], "std": [0.0]})},
          "default_classifier": "c"}, "std must be positive"),
        ({"classifiers": {"c": _classifier(input_normalization={"value_range": [1, 1]})}, "default_classifier": "c"},
         "span an interval"),
        ({"classifiers": {"c": _classifier(input_normalization={"mean": [0.4, 0.5, 0.6], "std": [0.2, 0.2, 0.2]})},
          "default_classifier": "c"}, "3 mean/std values but the images have 1 channel"),
        ({"provenance": {"created": "yesterday"}}, "provenance.created"),
    ],
)
def test_invalid_specs_give_one_line_errors(tmp_path, overrides, match):
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(_spec(**overrides)), encoding="utf-8")
    with pytest.raises(BundleError, match=match) as info:
        read_bundle_spec(path)
    assert str(path) in _one_line_error(info)
    assert isinstance(info.value, CfattackError) and isinstance(info.value, InvalidInputError)


def test_many_spec_errors_are_condensed(tmp_path):
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps({"name": ""}), encoding="utf-8")
    with pytest.raises(BundleError, match=r"invalid bundle spec: name: .*; .*\(\+\d+ more\)") as info:
        read_bundle_spec(path)
    _one_line_error(info)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('{"name": "x",', "not valid JSON .*line 1"),
        ("[1, 2]", "expected a JSON object, found list"),
        ('{"format_version": "cfattack.bundle/2"}', "bundle format 'cfattack.bundle/2' is not supported"),
    ],
)
def test_unreadable_bundle_json(tmp_path, text, match):
    (tmp_path / "bundle.json").write_text(text, encoding="utf-8")
    with pytest.raises(BundleError, match=match) as info:
        load_bundle(tmp_path)
    _one_line_error(info)


# ---------------------------------------------------------------------------------------------
# Finding the bundle.


def test_missing_default_bundle_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(bundle_module, "DEFAULT_BUNDLE_DIR", tmp_path / "assets" / "default")
    with pytest.raises(BundleError, match="the default bundle is not installed") as info:
        load_bundle("default")
    _one_line_error(info)


def test_default_bundle_is_looked_up_in_the_package(tmp_path, assets, monkeypatch):
    directory = _bundle_dir(tmp_path, assets, _spec(name="shipped"))
    monkeypatch.setattr(bundle_module, "DEFAULT_BUNDLE_DIR", directory)
    assert load_bundle(trust_code=True).name == "shipped"


def test_bundle_paths_that_are_not_bundles(tmp_path, assets):
    with pytest.raises(BundleError, match="not found: pass 'default' or a directory"):
        load_bundle(tmp_path / "nowhere")
    with pytest.raises(BundleError, match="has no bundle.json"):
        load_bundle(tmp_path)
    with pytest.raises(BundleError, match="is a file, not a bundle"):
        load_bundle(assets / "generator.pkl")
    with pytest.raises(InvalidInputError, match="a bundle is 'default' or a path"):
        load_bundle(42)  # type: ignore[arg-type]


def test_invalid_device(tmp_path, assets):
    directory = _bundle_dir(tmp_path, assets, _spec())
    with pytest.raises(InvalidInputError, match="invalid device"):
        load_bundle(directory, device="toaster")
    if not torch.cuda.is_available():
        with pytest.raises(InvalidInputError, match="CUDA is not available"):
            load_bundle(directory, device="cuda")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_bundle_on_cuda(tmp_path, assets):
    norm = {"value_range": [0, 1], "mean": [0.5], "std": [0.25]}
    spec = _spec()
    spec["classifiers"]["factory"]["input_normalization"] = norm
    b = load_bundle(_bundle_dir(tmp_path, assets, spec), device="cuda", trust_code=True)
    images = torch.rand(2, CH, RES, RES, device="cuda") * 2 - 1
    for clf in b.classifiers.values():
        assert clf(images).device.type == "cuda"
    assert b.encoder(images).device.type == "cuda"
    assert b.to("cpu").classifier("factory")(images.cpu()).device.type == "cpu"


# ---------------------------------------------------------------------------------------------
# Networks that are missing or do not fit.


def test_missing_files_are_listed_together(tmp_path, assets):
    directory = _bundle_dir(tmp_path, assets, _spec())
    (directory / "encoder.pt").unlink()
    (directory / "classifiers" / "tiny.ts").unlink()
    with pytest.raises(BundleError) as info:
        load_bundle(directory, trust_code=True)
    message = _one_line_error(info)
    assert "missing file(s): encoder (encoder.pt), classifier 'scripted' (classifiers/tiny.ts)" in message


@pytest.mark.parametrize(
    ("overrides", "error", "match"),
    [
        ({"generator": {"file": "generator32.pt"}}, BundleError,
         "generator makes 32x32 images with 1 channel.* bundle.json says 16x16 with 1"),
        ({"generator": {"file": "generator_rgb.pt"}}, BundleError, "with 3 channel"),
        ({"generator": {"file": "generator.pkl", "kind": "cfattack"}}, BundleError,
         "is a pickle; set generator.kind to 'stylegan3-pkl'"),
        ({"generator": {"file": "generator.pt", "kind": "stylegan3-pkl"}}, BundleError,
         "is a zip checkpoint; set generator.kind to 'cfattack'"),
        ({"generator": {"file": "descriptors.pt"}}, NetworkLoadError, "bundle 'tiny': generator: .*descriptors.pt"),
        ({"encoder": "encoder_num_ws.pt"}, BundleError, "the encoder has num_ws 6 but the generator has 5"),
        ({"encoder": "encoder_w_dim.pt"}, BundleError, "the encoder has w_dim 4 but the generator has 8"),
        ({"encoder": "encoder32.pt"}, BundleError, "the encoder has image resolution 32 but bundle.json has 16"),
        ({"encoder": "generator.pt"}, NetworkLoadError, "bundle 'tiny': encoder: .*not a cfattack encoder"),
    ],
)
def test_generator_and_encoder_that_do_not_fit(tmp_path, assets, overrides, error, match):
    with pytest.raises(error, match=match) as info:
        load_bundle(_bundle_dir(tmp_path, assets, _spec(**overrides)), trust_code=True)
    _one_line_error(info)


@pytest.mark.parametrize(
    ("classifier", "error", "match"),
    [
        (_classifier(file="classifiers/tiny7_state.pt", kwargs={"num_classes": 7}), BundleError,
         r"classifier 'c'.*7 outputs per image for 10 classes"),
        ({"kind": "torchscript", "file": "classifiers/tiny7.ts"}, BundleError, "7 outputs per image for 10 classes"),
        (_classifier(factory=f"{FACTORIES}:make_tuple_net"), BundleError, "returned a tuple"),
        (_classifier(kwargs={"in_channels": 3}), NetworkLoadError, r"does not fit .*size mismatch for fc.weight"),
        (_classifier(file="classifiers/bad_shape_state.pt"), NetworkLoadError,
         "does not fit the network .*missing fc.bias"),
        (_classifier(file="generator.pt"), NetworkLoadError, "does not fit the network .*unexpected "),
        (_classifier(file="classifiers/tiny.ts"), NetworkLoadError, "tiny.ts is a TorchScript file, not a state dict"),
        (_classifier(file="descriptors.pt"), NetworkLoadError, "descriptors.pt: not a readable state dict"),
        ({"kind": "torchscript", "file": "classifiers/garbage.ts"}, NetworkLoadError,
         "garbage.ts is not a loadable TorchScript file"),
        ({"kind": "torchscript", "file": "classifiers/tiny_state.pt"}, NetworkLoadError,
         "not a loadable TorchScript file .*kind 'factory'"),
        (_classifier(factory="tests.cfattack.no_such_module:make_net"), BundleError,
         "cannot import module 'tests.cfattack.no_such_module'"),
        (_classifier(factory=f"{FACTORIES}:no_such_callable"), BundleError, "has no attribute 'no_such_callable'"),
        (_classifier(factory=f"{FACTORIES}:NOT_CALLABLE"), BundleError, "is not callable \\(it is of type int\\)"),
        (_classifier(factory=f"{FACTORIES}:make_not_a_module", kwargs={}), BundleError,
         "returned a str, not a torch.nn.Module"),
        (_classifier(factory=f"{FACTORIES}:make_failing"), NetworkLoadError,
         "raised RuntimeError: this factory always fails"),
        (_classifier(kwargs={"depth": 3}), NetworkLoadError, "raised TypeError"),
        ({"kind": "cfattack", "file": "classifiers/other_classes.pt"}, BundleError,
         r"trained on classes \[c0, c1"),
        ({"kind": "cfattack", "file": "classifiers/tiny_state.pt"}, NetworkLoadError,
         "classifier 'c': .*not a cfattack classifier checkpoint"),
    ],
)
def test_classifiers_that_do_not_fit(tmp_path, assets, classifier, error, match):
    spec = _spec(classifiers={"ok": {"kind": "torchscript", "file": "classifiers/tiny.ts"}, "c": classifier},
                 default_classifier="ok")
    with pytest.raises(error, match=match) as info:
        load_bundle(_bundle_dir(tmp_path, assets, spec), trust_code=True)
    assert _one_line_error(info).startswith("bundle 'tiny': classifier 'c'")


def test_classifier_failing_on_the_probe_batch(tmp_path, assets):
    # A network for 3-channel images in a 1-channel bundle: its weights load, its forward fails.
    spec = _spec(classifiers={"c": _classifier(file="rgb_state.pt", kwargs={"in_channels": 3})}, default_classifier="c")
    directory = _bundle_dir(tmp_path, assets, spec)
    torch.save(TinyNet(3, RES, K).state_dict(), directory / "rgb_state.pt")
    expected = r"classifier 'c' fails on a dummy batch of shape \[2, 1, 16, 16\]"
    with pytest.raises(NetworkLoadError, match=expected) as info:
        load_bundle(directory, trust_code=True)
    _one_line_error(info)


def test_resolve_factory_imports_only_named_modules():
    assert resolve_factory(f"{FACTORIES}:make_net") is sys.modules[FACTORIES].make_net
    for bad in ("os.system('rm -rf /')", "tests.cfattack.bundle_factories", ":make_net", "a:b:c"):
        with pytest.raises(BundleError, match="must look like"):
            resolve_factory(bad)


def test_importing_bundle_loads_no_networks():
    code = ("import sys, cfattack.bundle, cfattack.classes; "
            "print(sorted(m for m in ('cfattack.stylegan.official_pickle', 'cfattack.stylegan.checkpoint', "
            "'cfattack.stylegan.generator', 'cfattack.inversion.encoder', 'cfattack.classifiers') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=120, check=True)
    assert result.stdout.strip() == "[]"
