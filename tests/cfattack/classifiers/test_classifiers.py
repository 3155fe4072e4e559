"""Classifiers: shapes, the OffsetL2 head against a direct computation, the MLP backbone, checkpoints and their errors."""

from __future__ import annotations

import os

import pytest
import torch

from cfattack.classifiers import (
    CLASSIFIER_FORMAT,
    FACTORY_NAME,
    Backbone,
    Classifier,
    LinearHead,
    MLPBackbone,
    OffsetL2Head,
    build_classifier,
    load_classifier_checkpoint,
    read_classifier_checkpoint,
    save_classifier_checkpoint,
)
from cfattack.errors import InvalidInputError, NetworkLoadError

pytestmark = pytest.mark.usefixtures("one_thread")


META = {"class_names": ["a", "b", "c"], "metrics": {"test_accuracy": 0.5}, "notes": None, "shape": (1, 32, 32)}


def _images(n: int = 6, channels: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, channels, 32, 32, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _trained_looking(model: Classifier) -> Classifier:
    """Give batchnorm non-trivial running statistics, as a trained model has."""
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(_images(16, model.backbone.in_channels, seed=5))
    return model.eval()


# -- shapes and construction ------------------------------------------------------------------------


@pytest.mark.parametrize("head", ["linear", "offset_l2"])
@pytest.mark.parametrize("channels", [1, 3])
def test_shapes(head: str, channels: int) -> None:
    model = build_classifier(7, in_channels=channels, embedding_dim=24, head=head, width=8).eval()
    x = _images(5, channels)
    logits, embedding = model.forward_with_embedding(x)
    assert logits.shape == (5, 7) and embedding.shape == (5, 24)
    assert torch.equal(model(x), logits) and torch.equal(model.embed(x), embedding)
    assert (embedding >= 0).all()  # ReLU embedding
    assert model.num_classes == 7 and model.embedding_dim == 24
    assert isinstance(model.backbone, Backbone)
    assert isinstance(model.head, LinearHead if head == "linear" else OffsetL2Head)
    if head == "offset_l2":
        assert (logits <= 0).all()


def test_gradient_reaches_the_input() -> None:
    model = build_classifier(3, width=8).eval().requires_grad_(False)
    x = _images(2).requires_grad_(True)
    model(x)[:, 1].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("kwargs", [
    dict(num_classes=1), dict(num_classes=10, head="cosine"), dict(num_classes=10, width=0),
    dict(num_classes=10, embedding_dim=2.5), dict(num_classes=10, dropout=1.0), dict(num_classes=True),
])
def test_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        build_classifier(**kwargs)


def test_default_size_is_small() -> None:
    model = build_classifier(10)
    n = sum(p.numel() for p in model.parameters())
    assert 300_000 < n < 1_000_000  # a float16 file stays under 2 MB


# -- OffsetL2 -----------------------------------------------------------------------------------------


def test_offset_l2_matches_direct_computation() -> None:
    torch.manual_seed(0)
    head = OffsetL2Head(5, 4)
    with torch.no_grad():
        head.alpha.copy_(torch.rand(4, 5) * 2 - 0.5)  # includes negative weights
    x = torch.randn(3, 5)
    alpha, mu = head.alpha.detach().tolist(), head.mu.detach().tolist()
    expected = torch.empty(3, 4)
    for i in range(3):
        for k in range(4):
            diff = [alpha[k][d] * (float(x[i, d]) - mu[k][d]) for d in range(5)]
            expected[i, k] = sum(v * v for v in diff) ** 0.5
    assert torch.allclose(head.distances(x), expected, atol=1e-6)
    assert torch.allclose(head(x), -expected, atol=1e-6)


def test_offset_l2_known_answers_and_init() -> None:
    head = OffsetL2Head(2, 2)
    assert torch.equal(head.alpha, torch.ones(2, 2))
    with torch.no_grad():
        head.mu.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
        head.alpha.copy_(torch.tensor([[1.0, 1.0], [2.0, 0.0]]))
    y = head.distances(torch.tensor([[3.0, 4.0], [1.0, 1.0]]))
    # sample 0: ||(3, 4)|| = 5; ||(2*2, 0*3)|| = 4. sample 1: sqrt(2); at the prototype: 0.
    assert torch.allclose(y, torch.tensor([[5.0, 4.0], [2 ** 0.5, 0.0]]), atol=1e-5)
    # Prototypes start at N(0, 0.1^2).
    big = OffsetL2Head(256, 64)
    mu = big.mu.detach()
    assert abs(float(mu.std()) - 0.1) < 0.01 and abs(float(mu.mean())) < 0.01


def test_offset_l2_gradient_is_finite_at_the_prototype() -> None:
    head = OffsetL2Head(3, 2)
    x = head.mu[:1].detach().clone().requires_grad_(True)
    head(x).sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(head.mu.grad).all()


def test_offset_l2_learns_a_toy_problem() -> None:
    torch.manual_seed(0)
    x = torch.cat([torch.randn(50, 2) + 3, torch.randn(50, 2) - 3])
    y = torch.cat([torch.zeros(50), torch.ones(50)]).long()
    head = OffsetL2Head(2, 2)
    opt = torch.optim.Adam(head.parameters(), lr=0.1)
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(head(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert (head(x).argmax(1) == y).float().mean() > 0.95


# -- checkpoints ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("head", ["linear", "offset_l2"])
def test_round_trip_gives_identical_logits(tmp_path, head: str) -> None:
    torch.manual_seed(1)
    model = _trained_looking(build_classifier(3, embedding_dim=16, head=head, width=8))
    path = save_classifier_checkpoint(model, tmp_path / "clf.pt", metadata=META)
    loaded, metadata = load_classifier_checkpoint(path)
    x = _images(4)
    assert torch.equal(loaded(x), model(x))
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    assert metadata == {**META, "shape": [1, 32, 32]}  # stored as plain builtins
    assert loaded.factory_kwargs == model.factory_kwargs
    assert os.listdir(tmp_path) == ["clf.pt"]  # no temporary file left behind


def test_file_layout(tmp_path) -> None:
    model = build_classifier(3, width=8, embedding_dim=8)
    save_classifier_checkpoint(model, tmp_path / "clf.pt", metadata={"x": 1})
    raw = torch.load(tmp_path / "clf.pt", weights_only=True)
    assert raw["format"] == CLASSIFIER_FORMAT == "cfattack.classifier/1"
    assert raw["factory"] == FACTORY_NAME == "cfattack.classifiers:build_classifier"
    assert raw["kwargs"] == dict(num_classes=3, in_channels=1, embedding_dim=8, head="linear", width=8, dropout=0.3)
    assert raw["storage_dtype"] == "float32" and raw["metadata"] == {"x": 1}
    assert read_classifier_checkpoint(tmp_path / "clf.pt")["kwargs"] == raw["kwargs"]


def test_float16_storage(tmp_path) -> None:
    torch.manual_seed(2)
    model = _trained_looking(build_classifier(10, width=16, embedding_dim=64))
    full = save_classifier_checkpoint(model, tmp_path / "full.pt", metadata={})
    half = save_classifier_checkpoint(model, tmp_path / "half.pt", metadata={}, half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    raw = read_classifier_checkpoint(half)
    assert raw["storage_dtype"] == "float16"
    floats = [v for v in raw["state_dict"].values() if v.is_floating_point()]
    assert floats and all(v.dtype == torch.float16 for v in floats)
    assert raw["state_dict"]["backbone.project.3.num_batches_tracked"].dtype == torch.int64
    loaded, _ = load_classifier_checkpoint(half)
    assert all(p.dtype == torch.float32 for p in loaded.state_dict().values() if p.is_floating_point())
    x = _images(8)
    ref, out = torch.softmax(model(x), 1), torch.softmax(loaded(x), 1)
    assert (ref - out).abs().max() < 2e-2
    assert torch.equal(ref.argmax(1), out.argmax(1))


def test_missing_file(tmp_path) -> None:
    with pytest.raises(NetworkLoadError, match="no such classifier file"):
        load_classifier_checkpoint(tmp_path / "nope.pt")


def _assert_one_line(exc: pytest.ExceptionInfo) -> None:
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("content", [b"", b"garbage, not a zip", "truncated"])
def test_corrupt_files(tmp_path, content) -> None:
    path = tmp_path / "bad.pt"
    if content == "truncated":
        save_classifier_checkpoint(build_classifier(3, width=8), tmp_path / "good.pt", metadata={})
        path.write_bytes((tmp_path / "good.pt").read_bytes()[:5000])
    else:
        path.write_bytes(content)
    with pytest.raises(NetworkLoadError, match="not a readable classifier checkpoint") as exc:
        load_classifier_checkpoint(path)
    _assert_one_line(exc)


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


@pytest.mark.parametrize("payload, match", [
    ({"format": "cfattack.generator/1"}, "not a cfattack classifier checkpoint"),
    ([1, 2, 3], "not a cfattack classifier checkpoint"),
    ({"format": CLASSIFIER_FORMAT}, "lacks"),
    ({"format": CLASSIFIER_FORMAT, "factory": "os:system", "kwargs": {}, "storage_dtype": "float32",
      "state_dict": {}, "metadata": {}}, "unknown classifier factory"),
    ({"format": CLASSIFIER_FORMAT, "factory": FACTORY_NAME, "kwargs": {"num_classes": 3, "colour": 1},
      "storage_dtype": "float32", "state_dict": {}, "metadata": {}}, "bad classifier arguments"),
    ({"format": CLASSIFIER_FORMAT, "factory": FACTORY_NAME, "kwargs": {"num_classes": 3},
      "storage_dtype": "int8", "state_dict": {}, "metadata": {}}, "unknown storage dtype"),
    ({"format": CLASSIFIER_FORMAT, "factory": FACTORY_NAME, "kwargs": {"num_classes": 3},
      "storage_dtype": "float32", "state_dict": {"w": 1}, "metadata": {}}, "not tensors"),
])
def test_wrong_content(tmp_path, payload, match) -> None:
    path = tmp_path / "bad.pt"
    torch.save(payload, path)
    with pytest.raises(NetworkLoadError, match=match) as exc:
        load_classifier_checkpoint(path)
    _assert_one_line(exc)


def test_code_in_a_file_never_runs(tmp_path, capsys) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"format": CLASSIFIER_FORMAT, "metadata": _Evil()}, path)
    with pytest.raises(NetworkLoadError):
        load_classifier_checkpoint(path)
    assert "must never run" not in capsys.readouterr().out


def test_weights_that_do_not_fit(tmp_path) -> None:
    save_classifier_checkpoint(build_classifier(3, width=8), tmp_path / "clf.pt", metadata={})
    raw = torch.load(tmp_path / "clf.pt", weights_only=True)
    raw["kwargs"]["width"] = 16
    torch.save(raw, tmp_path / "other.pt")
    with pytest.raises(NetworkLoadError, match="do not fit") as exc:
        load_classifier_checkpoint(tmp_path / "other.pt")
    _assert_one_line(exc)


def test_save_rejects_bad_input(tmp_path) -> None:
    model = build_classifier(3, width=8)
    with pytest.raises(InvalidInputError, match="metadata"):
        save_classifier_checkpoint(model, tmp_path / "a.pt", metadata={"t": torch.zeros(1)})
    with pytest.raises(InvalidInputError, match="non-string key"):
        save_classifier_checkpoint(model, tmp_path / "a.pt", metadata={1: "x"})
    with pytest.raises(InvalidInputError, match="finite"):
        save_classifier_checkpoint(model, tmp_path / "a.pt", metadata={"x": float("nan")})
    with pytest.raises(InvalidInputError, match="does not exist"):
        save_classifier_checkpoint(model, tmp_path / "no" / "a.pt", metadata={})
    bare = Classifier(Backbone(width=8, embedding_dim=8), LinearHead(8, 3))
    with pytest.raises(InvalidInputError, match="build_classifier"):
        save_classifier_checkpoint(bare, tmp_path / "a.pt", metadata={})
    assert list(tmp_path.iterdir()) == []


# -- the MLP backbone (Oursland's one-hidden-layer model) ------------------------------------------------


@pytest.mark.parametrize("activation", ["relu", "abs"])
@pytest.mark.parametrize("head", ["linear", "offset_l2"])
def test_mlp_backbone(tmp_path, activation: str, head: str) -> None:
    torch.manual_seed(3)
    model = build_classifier(10, embedding_dim=16, head=head, backbone="mlp", activation=activation).eval()
    assert isinstance(model.backbone, MLPBackbone)
    x = _images(5)
    logits, embedding = model.forward_with_embedding(x)
    assert logits.shape == (5, 10) and embedding.shape == (5, 16)
    linear = model.backbone.project[1]
    pre = x.flatten(1) @ linear.weight.T + linear.bias
    expected = pre.relu() if activation == "relu" else pre.abs()
    assert torch.allclose(embedding, expected, atol=1e-5)
    assert (pre < 0).any()  # so relu and abs really differ here
    assert sum(p.numel() for p in model.backbone.parameters()) == 1024 * 16 + 16
    path = save_classifier_checkpoint(model, tmp_path / "mlp.pt", metadata={})
    assert read_classifier_checkpoint(path)["kwargs"] == dict(
        num_classes=10, in_channels=1, embedding_dim=16, head=head, width=32, dropout=0.3,
        backbone="mlp", activation=activation, image_size=32)
    loaded, _ = load_classifier_checkpoint(path)
    assert torch.equal(loaded(x), model(x))


@pytest.mark.parametrize("kwargs", [
    dict(backbone="resnet"), dict(backbone="mlp", activation="tanh"), dict(activation="abs"),
    dict(backbone="mlp", image_size=0),
])
def test_mlp_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        build_classifier(10, **kwargs)
