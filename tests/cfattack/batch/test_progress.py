"""``cfattack batch`` progress moves inside a device batch: stages, inversion and attack steps, items done."""

from __future__ import annotations

import io
import sys

import pytest

from cfattack.batch.runner import BatchJob
from cfattack.config import AttackConfig, InversionConfig
from cfattack.pipeline.explanation import ExplainConfig
from tests.cfattack.batch.conftest import EXAMPLES

pytestmark = pytest.mark.usefixtures("one_thread")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _job(out, progress: bool, limit: int = 1) -> BatchJob:
    # No class step: it alone would reach these targets, and the bar is to show attack steps.
    config = ExplainConfig(attack=AttackConfig(steps=25, lr=0.05, class_search_steps=0), inversion=InversionConfig(steps=2))
    return BatchJob(EXAMPLES, out, target="pullover", limit=limit, batch_size=2, config=config, progress=progress)


def test_a_terminal_sees_the_steps_of_each_device_batch(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    stream = Terminal()
    monkeypatch.setattr(sys, "stderr", stream)
    summary = _job(tmp_path / "job", progress=True, limit=3).run()
    assert summary.explained == 3
    frames = stream.getvalue().replace("\r", "\n")
    # The inner bar: the stages of batch 1 of 2 and batch 2 of 2, attack steps out of 25 with items done.
    assert "batch 1/2: load bundle" in frames and "batch 2/2: classify" in frames
    assert "batch 1/2: attack" in frames and "/25 steps" in frames and "items done" in frames
    # The outer bar counts items; the last line is the summary.
    assert "/3 items" in frames
    assert frames.rstrip().splitlines()[-1].startswith("batch: 3 items in ")


def test_a_log_gets_one_summary_line_and_quiet_nothing(tmp_path, capsys):
    _job(tmp_path / "b", progress=True).run()
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("batch: 1 items in ") and err[0].endswith("0 finished before")
    again = _job(tmp_path / "b", progress=True).run()  # everything finished before
    assert again.skipped == 1 and capsys.readouterr().err.startswith("batch: 0 items in ")
    _job(tmp_path / "c", progress=False).run()
    assert capsys.readouterr().err == ""
