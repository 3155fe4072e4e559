"""Classifier training: a tiny run trains, writes its files, and resumes exactly; schedule and augmentation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from cfattack.classifiers import load_classifier_checkpoint, read_classifier_checkpoint
from cfattack.config import ClassifierTrainingConfig
from cfattack.errors import InvalidInputError
from cfattack.training.classifier import (
    CHECKPOINT_NAME,
    CLASSIFIER_NAME,
    LOSSES,
    learning_rate,
    random_translate,
    train_classifier,
)
from cfattack.training.data import FASHION_MNIST_DIR, ImageDataset, load_fashion_mnist

TINY = dict(epochs=2, batch=32, width=4, embedding_dim=8, warmup_steps=3, lr=5e-3, seed=7, threads=1)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def splits() -> dict[str, ImageDataset]:
    """160 train / 64 val / 64 test images (the fast-loading test split, cut three ways)."""
    if FASHION_MNIST_DIR.is_dir():
        data = load_fashion_mnist("test")
    else:  # synthetic: a bright square top-left or bottom-right, so the mechanics are still tested
        gen = torch.Generator().manual_seed(0)
        labels = torch.randint(0, 2, (288,), generator=gen)
        images = torch.full((288, 1, 32, 32), -1.0)
        for i, label in enumerate(labels.tolist()):
            images[i, :, 4 + 16 * label:12 + 16 * label, 4 + 16 * label:12 + 16 * label] = 1.0
        data = ImageDataset(images, labels, ("top-left", "bottom-right"), "squares", "all")
    parts = {"train": np.arange(160), "val": np.arange(160, 224), "test": np.arange(224, 288)}
    return {name: data.subset(idx, split=name) for name, idx in parts.items()}


def _weights(path) -> dict[str, torch.Tensor]:
    return read_classifier_checkpoint(path)["state_dict"]


def _history(out) -> list[dict]:
    return json.loads((out / "metrics.json").read_text())["history"]


def test_tiny_run_trains_and_writes_its_files(tmp_path, splits) -> None:
    config = ClassifierTrainingConfig(**TINY)
    result = train_classifier(config, tmp_path, progress=False, datasets=splits)
    assert result.finished and result.epoch == 2 and result.step == 2 * (160 // 32)
    assert result.classifier_path == tmp_path / CLASSIFIER_NAME
    for name in ("config.json", "metrics.json", CHECKPOINT_NAME, CLASSIFIER_NAME):
        assert (tmp_path / name).is_file()
    assert ClassifierTrainingConfig.model_validate_json((tmp_path / "config.json").read_text()) == config

    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(result.metrics))
    assert metrics["finished"] and [h["epoch"] for h in metrics["history"]] == [1, 2]
    assert metrics["history"][1]["train_loss"] < metrics["history"][0]["train_loss"]
    assert 0 <= metrics["test"]["accuracy"] <= 1 and 0 <= metrics["test"]["macro_f1"] <= 1
    assert np.array(metrics["test"]["confusion_matrix"]).sum() == metrics["test"]["num_images"] == 64
    assert metrics["best_epoch"] in (1, 2)

    # The saved classifier is the best-val model, float16-stored, and scores as reported.
    clf, meta = load_classifier_checkpoint(result.classifier_path)
    assert read_classifier_checkpoint(result.classifier_path)["storage_dtype"] == "float16"
    assert meta["class_names"] == list(splits["train"].class_names)
    assert meta["training"] == config.model_dump(mode="json")
    with torch.no_grad():
        pred = clf(splits["test"].images).argmax(1)
    assert float((pred == splits["test"].labels).float().mean()) == pytest.approx(meta["metrics"]["test_accuracy"])
    assert meta["metrics"]["test_accuracy"] == metrics["test"]["accuracy"]


def test_resume_continues_exactly(tmp_path, splits) -> None:
    config = ClassifierTrainingConfig(**TINY)
    unbroken = train_classifier(config, tmp_path / "a", progress=False, datasets=splits)
    # Stop mid-epoch (step 3 of 5), then exactly at the epoch boundary, then finish.
    first = train_classifier(config, tmp_path / "b", progress=False, max_steps=3, datasets=splits)
    assert not first.finished and first.step == 3 and first.classifier_path is None
    second = train_classifier(config, tmp_path / "b", progress=False, max_steps=2, datasets=splits)
    assert not second.finished and second.epoch == 1 and second.step == 5
    # Thread count may change on resume (numerics may then differ in the last bits, so not here).
    same = train_classifier(config.model_copy(update={"threads": 2}), tmp_path / "b", progress=False,
                            max_steps=0, datasets=splits)
    assert same.step == 5
    resumed = train_classifier(config, tmp_path / "b", progress=False, datasets=splits)
    assert resumed.finished and resumed.step == unbroken.step
    a, b = _weights(unbroken.classifier_path), _weights(resumed.classifier_path)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert _history(tmp_path / "a") == _history(tmp_path / "b")
    # A finished run called again changes nothing.
    again = train_classifier(config, tmp_path / "b", progress=False, datasets=splits)
    assert again.step == resumed.step and again.metrics["test"] == resumed.metrics["test"]


def test_resume_refuses_a_different_config(tmp_path, splits) -> None:
    train_classifier(ClassifierTrainingConfig(**TINY), tmp_path, progress=False, max_steps=1, datasets=splits)
    with pytest.raises(InvalidInputError, match="different training config"):
        train_classifier(ClassifierTrainingConfig(**{**TINY, "lr": 1e-2}), tmp_path, progress=False,
                         max_steps=1, datasets=splits)


class _CountingLoss(nn.Module):
    """Cross-entropy plus a record of the epoch hooks, to prove a loss plugs in by name."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("epochs_started", torch.zeros((), dtype=torch.long))
        self.embedding_shapes: list[tuple[int, ...]] = []

    def on_epoch_start(self, *, model, data, epoch, rng) -> None:
        assert epoch == int(self.epochs_started) and len(data) == 160
        self.epochs_started += 1

    def forward(self, logits, embedding, labels):
        self.embedding_shapes.append(tuple(embedding.shape))
        return nn.functional.cross_entropy(logits, labels)


def test_losses_plug_in_by_name(tmp_path, splits, monkeypatch) -> None:
    made: list[_CountingLoss] = []
    monkeypatch.setitem(LOSSES, "counting", lambda config, k: made.append(_CountingLoss()) or made[-1])
    config = ClassifierTrainingConfig(**{**TINY, "loss": "counting", "head": "offset_l2"})
    train_classifier(config, tmp_path, progress=False, datasets=splits)
    assert int(made[0].epochs_started) == 2
    assert made[0].embedding_shapes[0] == (32, 8)
    with pytest.raises(InvalidInputError, match="unknown loss 'nope'"):
        train_classifier(config.model_copy(update={"loss": "nope"}), tmp_path / "x", progress=False, datasets=splits)


def test_learning_rate_schedules() -> None:
    cosine = ClassifierTrainingConfig(epochs=2, lr=1.0, warmup_steps=4)
    assert learning_rate(cosine, 0, 10) == pytest.approx(0.25 * 0.5 * (1 + np.cos(0)))
    assert learning_rate(cosine, 10, 10) == pytest.approx(0.5)
    assert learning_rate(cosine, 19, 10) < 0.01
    step = ClassifierTrainingConfig(epochs=6, lr=1.0, warmup_steps=0, schedule="step", step_epochs=2, step_gamma=0.5)
    assert [learning_rate(step, s, 10) for s in (0, 19, 20, 45)] == [1.0, 1.0, 0.5, 0.25]
    constant = ClassifierTrainingConfig(lr=0.1, warmup_steps=0, schedule="constant")
    assert learning_rate(constant, 1000, 10) == 0.1


def test_random_translate_moves_without_flipping() -> None:
    x = torch.full((64, 1, 8, 8), -1.0)
    x[:, 0, 3, 2] = 1.0
    x[:, 0, 3, 3] = 0.5  # the pair fixes the orientation
    out = random_translate(x, 2, torch.Generator().manual_seed(0))
    shifts = set()
    for img in out[:, 0]:
        (r, c), = (img == 1.0).nonzero().tolist()
        assert abs(r - 3) <= 2 and abs(c - 2) <= 2 and img[r, c + 1] == 0.5
        shifts.add((r - 3, c - 2))
    assert len(shifts) > 10  # many different shifts, both ways
    assert torch.equal(random_translate(x, 0, torch.Generator()), x)
