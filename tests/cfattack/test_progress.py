"""Progress on stderr: a moving bar on a terminal, one summary line elsewhere, nothing when quiet."""

from __future__ import annotations

import io

import pytest

from cfattack.progress import ExplainProgress, Progress, live_on


class Terminal(io.StringIO):
    """A stream that says it is a terminal (tqdm then draws; its width is fixed below)."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _wide(monkeypatch):
    monkeypatch.setenv("COLUMNS", "160")  # tqdm's dynamic width: a pseudo-terminal without a size draws nothing


def _explain_like(bar: Progress, steps: ExplainProgress, attack_steps: int, items: int = 2) -> None:
    """The calls `Explainer.explain_many` makes for one batch: stages, 4 inversion steps, an attack."""
    steps.on_stage("classify")
    steps.on_stage("invert")
    for step in range(1, 5):
        steps.on_progress("invert", step, 4)
    steps.on_stage("attack")
    for step in range(1, attack_steps + 1):  # after each step: items finished so far
        steps.on_progress("attack", min(items - 1, step // 3), items)
    steps.on_progress("attack", items, items)  # the last call, once every item has finished
    steps.on_stage("attribute")
    steps.finish()


def test_a_terminal_gets_a_bar_that_moves_and_a_summary():
    stream = Terminal()
    bar = Progress("explain", quiet=False, stream=stream, mininterval=0)
    assert bar.live
    steps = ExplainProgress(bar, attack_steps=500)
    _explain_like(bar, steps, attack_steps=7)
    bar.close(f"explain: 2 images ({steps.describe()})")
    text = stream.getvalue()
    assert "invert" in text and "/4 steps" in text
    assert "attack" in text and "/500 steps" in text and "1/2 items done" in text
    assert steps.steps == {"invert": 4, "attack": 7}
    assert text.rstrip().splitlines()[-1].startswith("explain: 2 images (classify ")
    assert "invert 4 steps" in steps.describe() and "attack 7 steps" in steps.describe()


def test_elsewhere_only_the_summary_line():
    stream = io.StringIO()
    bar = Progress("explain", stream=stream)
    assert not bar.live
    steps = ExplainProgress(bar, attack_steps=500)
    _explain_like(bar, steps, attack_steps=3)
    bar.echo("a result")  # stdout, not the progress stream
    bar.close(bar.rate_line("explain", 2, "images", steps.describe()))
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("explain: 2 images in ") and "attack 3 steps" in lines[0]
    assert steps.steps["attack"] == 3  # counted even without a bar


def test_quiet_prints_nothing_and_an_error_no_summary():
    stream = Terminal()
    with Progress("x", total=3, quiet=True, stream=stream) as bar:
        bar.update(3)
        bar.close("summary")
    assert stream.getvalue() == "" and not live_on(stream, quiet=True)
    stream = io.StringIO()
    with pytest.raises(RuntimeError):
        with Progress("x", total=3, stream=stream) as bar:
            raise RuntimeError
    assert stream.getvalue() == ""


def test_the_count_never_goes_back_and_stages_restart_it():
    bar = Progress("x", total=10, stream=io.StringIO())
    bar.update_to(5)
    bar.update_to(3)
    assert bar.n == 5
    bar.stage("next", total=4, unit="steps")
    assert (bar.n, bar.total) == (0, 4)
    bar.update()
    assert bar.n == 1


def test_an_explicit_attack_step_wins_over_the_count():
    bar = Progress("x", stream=io.StringIO())
    steps = ExplainProgress(bar, attack_steps=50)
    steps.on_progress("attack", 0, 1, step=20)  # a stage announced by its first progress call
    assert steps.steps == {"attack": 20} and bar.n == 20
