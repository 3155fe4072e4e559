"""Every trainer reports progress: a bar on a terminal, one summary line elsewhere, and a step callback."""

from __future__ import annotations

import io
import sys

import pytest

from cfattack.config import ClassifierTrainingConfig, GanTrainingConfig
from cfattack.training.classifier import train_classifier
from cfattack.training.encoder import train_encoder
from cfattack.training.gan import train_gan
from tests.cfattack.training.test_classifier_training import TINY as CLASSIFIER_TINY
from tests.cfattack.training.test_classifier_training import splits  # noqa: F401 (fixture)
from tests.cfattack.training.test_encoder_training import _config as encoder_config
from tests.cfattack.training.test_encoder_training import tiny_world  # noqa: F401 (fixture)
from tests.cfattack.training.test_gan import TINY as GAN_TINY
from tests.cfattack.training.test_gan import tiny_data  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _run(monkeypatch, terminal: bool, train) -> tuple[str, list[tuple[int, int]]]:
    """Run ``train(on_progress)`` with stderr a terminal or a plain stream; (what stderr got, the calls)."""
    monkeypatch.setenv("COLUMNS", "160")
    stream = Terminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    calls: list[tuple[int, int]] = []
    train(lambda done, total: calls.append((done, total)))
    return stream.getvalue(), calls


def _check(text: str, calls: list[tuple[int, int]], terminal: bool, name: str, unit: str) -> None:
    total = calls[0][1]
    assert [done for done, _ in calls] == sorted({done for done, _ in calls}) and calls[-1] == (total, total)
    lines = [line for line in text.replace("\r", "\n").splitlines() if line.strip()]
    assert lines[-1].startswith(f"{name}: {total} {unit} in "), lines[-1]
    if terminal:
        assert any(f"/{total} {unit}" in line for line in lines[:-1]), text  # the bar, drawn as it moved
    else:
        assert len(lines) == 1, text  # a log gets the summary only


@pytest.mark.parametrize("terminal", [True, False])
def test_gan(tmp_path, tiny_data, monkeypatch, terminal):  # noqa: F811
    text, calls = _run(monkeypatch, terminal, lambda cb: train_gan(
        GanTrainingConfig(**GAN_TINY), tmp_path, progress=True, data=tiny_data, on_progress=cb))
    _check(text, calls, terminal, "train gan", "img")
    assert len(calls) == 8


def test_encoder(tmp_path, tiny_world, monkeypatch):  # noqa: F811
    path, data = tiny_world
    text, calls = _run(monkeypatch, True, lambda cb: train_encoder(
        encoder_config(path), tmp_path, progress=True, train_data=data, eval_data=data, on_progress=cb))
    _check(text, calls, True, "train encoder", "img")
    # --device auto may pick another device on the next run: resuming accepts it.
    more = train_encoder(encoder_config(path, total_kimg=0.096, device="cpu:0"), tmp_path, progress=False,
                         train_data=data, eval_data=data)
    assert more.finished and more.step == 12


def test_classifier(tmp_path, splits, monkeypatch):  # noqa: F811
    text, calls = _run(monkeypatch, False, lambda cb: train_classifier(
        ClassifierTrainingConfig(**CLASSIFIER_TINY), tmp_path, progress=True, datasets=splits, on_progress=cb))
    _check(text, calls, False, "train classifier", "steps")
    assert "epoch 2 of 2, best val accuracy" in text


def test_progress_false_prints_nothing(tmp_path, tiny_data, monkeypatch):  # noqa: F811
    text, calls = _run(monkeypatch, True, lambda cb: train_gan(
        GanTrainingConfig(**{**GAN_TINY, "total_kimg": 0.016}), tmp_path, progress=False, data=tiny_data,
        on_progress=cb))
    assert text == "" and calls[-1] == (16, 16)
