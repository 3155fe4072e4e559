"""Progress of long work on stderr: a live tqdm bar on a terminal, one summary line elsewhere.

Every command and trainer reports through `Progress`, so they all follow one rule: with
``quiet`` nothing is printed; otherwise a bar that moves (steps, rate, ETA) is drawn only when
stderr is a terminal, and `Progress.close` prints one summary line whether or not it is (a log
file gets the summary, not thousands of redrawn bars). Nothing here writes to stdout, which
carries the commands' results.

`ExplainProgress` turns `Explainer.explain_many`'s ``on_stage`` / ``on_progress`` callbacks into
such a bar: inversion steps, then attack steps with the share of items finished::

    bar = Progress("explain", quiet=quiet)
    steps = ExplainProgress(bar, attack_steps=500)
    explainer.explain_many(images, targets, on_stage=steps.on_stage, on_progress=steps.on_progress)
    bar.close(f"explain: 1 image in {bar.elapsed:.1f} s ({steps.describe()})")
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any

__all__ = ["ExplainProgress", "Progress", "live_on"]

_FORMAT = ("{desc:<24.40} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} {unit} "
           "[{elapsed}<{remaining}, {rate_fmt}]{postfix}")
_FORMAT_NO_TOTAL = "{desc:<24.40} [{elapsed}]{postfix}"  # a stage of unknown length: its time only


def live_on(stream: IO[str] | None = None, quiet: bool = False) -> bool:
    """Whether a live bar belongs on ``stream`` (default stderr): not quiet, and a terminal."""
    stream = sys.stderr if stream is None else stream
    if quiet:
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a closed or unusual stream
        return False


class Progress:
    """One progress bar on stderr; see the module docstring for when it shows.

    Args:
        desc: what is being done (the bar's label).
        total: units of work, or None when unknown.
        unit: the unit's name (``"step"``, ``"img"``, ``"item"``).
        quiet: print nothing at all, not even the summary.
        position, leave: tqdm's (a second bar under a first one: ``position=1``).
        initial: units already done (a resumed job).
        stream: where to write (default stderr).
        mininterval: least seconds between redraws.
    """

    def __init__(self, desc: str, total: int | None = None, unit: str = "it", *, quiet: bool = False,
                 position: int | None = None, leave: bool = False, initial: int = 0,
                 stream: IO[str] | None = None, mininterval: float = 0.2) -> None:
        from tqdm import tqdm

        self.stream = sys.stderr if stream is None else stream
        self.quiet = quiet
        self.live = live_on(self.stream, quiet)
        self.n = initial
        self.total = total
        self.started = time.perf_counter()
        self._bar = tqdm(total=total, initial=initial, unit=unit, desc=desc, disable=not self.live, leave=leave,
                         position=position, file=self.stream, dynamic_ncols=True, smoothing=0.1,
                         bar_format=_FORMAT if total else _FORMAT_NO_TOTAL, mininterval=mininterval)
        self._closed = False

    @property
    def elapsed(self) -> float:
        """Seconds since the bar was made."""
        return time.perf_counter() - self.started

    def stage(self, desc: str, total: int | None = None, unit: str | None = None) -> None:
        """Start a new stage on the same line: new label, total and unit; count, rate and ETA restart."""
        self.n = 0
        self.total = total
        if not self.live:
            return
        self._bar.set_description_str(desc, refresh=False)
        if unit is not None:
            self._bar.unit = unit
        self._bar.bar_format = _FORMAT if total else _FORMAT_NO_TOTAL
        self._bar.set_postfix_str("", refresh=False)
        self._bar.reset(total=total)

    def update(self, count: int = 1) -> None:
        """``count`` more units done."""
        self.update_to(self.n + count)

    def update_to(self, n: int) -> None:
        """``n`` units done in all (the bar never moves backwards)."""
        if n <= self.n:
            return
        if self.live:
            self._bar.update(n - self.n)
        self.n = n

    def note(self, text: str, refresh: bool = False) -> None:
        """Text after the bar, e.g. ``"3/8 items done"``; shown at the next redraw unless ``refresh``."""
        if self.live:
            self._bar.set_postfix_str(text, refresh=refresh)

    def write(self, line: str) -> None:
        """A line above the bar, live only (a log gets the summary instead)."""
        if self.live:
            self._bar.write(line, file=self.stream)

    def echo(self, line: str) -> None:
        """Print ``line`` on stdout (a result, shown whatever the mode), lifting a live bar out of its way."""
        if not self.live:
            print(line, flush=True)
            return
        with self._bar.external_write_mode(file=self.stream):
            print(line, flush=True)

    def rate_line(self, what: str, done: int, unit: str, extra: str = "") -> str:
        """``"train gan: 1024 img in 60.2 s (17.0 img/s); <extra>"``: a summary for `close`."""
        seconds = self.elapsed
        line = f"{what}: {done} {unit} in {seconds:.1f} s ({done / max(seconds, 1e-9):.2f} {unit}/s)"
        return f"{line}; {extra}" if extra else line

    def close(self, summary: str | None = None) -> None:
        """Remove (or leave) the bar and print ``summary`` on its own line unless quiet."""
        if self._closed:
            return
        self._closed = True
        self._bar.close()
        if summary and not self.quiet:
            print(summary, file=self.stream, flush=True)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()  # an error: no summary, the error line says what happened


class ExplainProgress:
    """Feeds `Progress` from `Explainer.explain_many`'s callbacks and keeps each stage's time and steps.

    ``on_stage(name)`` starts a stage ("classify", "invert", "attack", "attribute", or the
    caller's own such as "load bundle"); ``on_progress("invert", done, total)`` counts inversion
    steps; ``on_progress("attack", done, total)`` comes after every attack step with the items
    finished so far (and once more when all have), so the bar counts attack steps (up to
    ``attack_steps``) and shows the items done beside them. A ``step`` given by the caller
    replaces that count.

    Args:
        bar: the bar to drive.
        attack_steps: the attack's step limit (the attack bar's total; items usually stop sooner).
        prefix: put before each stage's label, e.g. ``"batch 2/5: "``.
    """

    def __init__(self, bar: Progress, attack_steps: int, prefix: str = "") -> None:
        self.bar = bar
        self.attack_steps = attack_steps
        self.prefix = prefix
        self.seconds: dict[str, float] = {}
        self.steps: dict[str, int] = {}
        self._stage: str | None = None
        self._began = time.perf_counter()

    def _end_stage(self) -> None:
        if self._stage is not None:
            self.seconds[self._stage] = self.seconds.get(self._stage, 0.0) + time.perf_counter() - self._began

    def on_stage(self, name: str) -> None:
        """A stage begins (the previous one ends)."""
        self._end_stage()
        self._stage, self._began = name, time.perf_counter()
        total, unit = {"attack": (self.attack_steps, "steps")}.get(name, (None, ""))
        self.bar.stage(self.prefix + name, total=total, unit=unit)

    def on_progress(self, stage: str, done: int, total: int, step: int | None = None) -> None:
        """``done`` of ``total`` finished in ``stage``: inversion steps, or attack items after a step."""
        if stage != self._stage:
            self.on_stage(stage)
        if stage == "attack":
            if step is None:  # one call after each step, and a last one once every item has finished
                step = self.bar.n + (1 if done < total else 0)
            self.bar.note(f"{done}/{total} items done")
        else:
            if self.bar.total != total:
                self.bar.stage(self.prefix + stage, total=total, unit="steps")
            step = done
        self.steps[stage] = max(step, self.steps.get(stage, 0))
        self.bar.update_to(step)

    def finish(self) -> None:
        """End the current stage's timing (call once the work is done)."""
        self._end_stage()
        self._stage = None

    def describe(self) -> str:
        """``"invert 100 steps 2.0 s, attack 13 steps 0.4 s, attribute 0.1 s"`` for the summary line."""
        parts = []
        for name, seconds in self.seconds.items():
            steps = self.steps.get(name)
            parts.append(f"{name}{f' {steps} steps' if steps is not None else ''} {seconds:.1f} s")
        return ", ".join(parts)
