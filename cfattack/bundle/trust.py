"""What a bundle may make cfattack do: which classifiers are code, the trust gate, the time limit.

A bundle is often downloaded, so its files are untrusted input. Weights-only formats (our
checkpoints, state dicts, official pickles through the restricted reader) are data: cfattack
reads them without running anything from them. Two classifier kinds are code: a ``factory``
imports a module and calls it, and a ``torchscript`` file is a program (its ``forward`` and
``__setstate__`` run inside torch). `check_trust` refuses both unless the caller passed
``trust_code=True`` (CLI ``--trust-code``), the ``trust_remote_code`` contract of Hugging Face,
before any network is read. Trusted code then runs through `run_with_time_limit`, so a
program that loops forever fails the load instead of hanging it.

Why a thread and not a subprocess: the loaded network must live in this process (a TorchScript
module or a factory's object cannot be handed back from a child without running it again here),
and a child would import torch again for every load. The price: a thread that overruns cannot
be stopped. It is a daemon, but a TorchScript program still running when Python exits makes
torch abort the exit (SIGABRT, losing the exit code), so a process that saw the timeout must end
with `os._exit`: `exit_if_code_still_runs` does that, and the CLI calls it after printing the
error line, so ``cfattack`` still exits 1 with one line.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Callable
from typing import TypeVar

from cfattack.bundle.spec import BundleSpec, ClassifierSpec
from cfattack.errors import NetworkLoadError, UntrustedCodeError

__all__ = [
    "CODE_KINDS",
    "TRUSTED_CODE_TIME_LIMIT_S",
    "check_trust",
    "describe_code",
    "exit_if_code_still_runs",
    "run_with_time_limit",
    "runaway_threads",
]

CODE_KINDS = ("factory", "torchscript", "export")  # torch.export.load unpickles: code too
"""Classifier kinds whose file or reference is code, loaded only with ``trust_code=True``."""

TRUSTED_CODE_TIME_LIMIT_S = 60.0
"""Default seconds one trusted classifier may take to import, build, load and run a dummy batch."""

_KWARGS_SHOWN = 80  # characters of a factory's kwargs quoted in the refusal

T = TypeVar("T")

_overran: list[threading.Thread] = []  # threads whose code outlived its time limit (they cannot be stopped)


def describe_code(classifier: ClassifierSpec) -> str:
    """What loading ``classifier`` would run, e.g. ``the factory 'os:system' with {"command": "..."}``."""
    if classifier.kind == "torchscript":
        return f"the TorchScript program {classifier.file}"
    if classifier.kind == "export":
        return f"the torch.export program {classifier.file}"
    text = f"the factory {classifier.factory!r}"
    if classifier.kwargs:
        kwargs = json.dumps(classifier.kwargs, ensure_ascii=True)
        if len(kwargs) > _KWARGS_SHOWN:
            kwargs = kwargs[: _KWARGS_SHOWN - 3] + "..."
        text += f" with {kwargs}"
    return text


def check_trust(spec: BundleSpec, trust_code: bool) -> None:
    """Refuse a bundle with code classifiers unless ``trust_code``; lists every one in one line.

    Raises:
        UntrustedCodeError: some classifier is a factory or TorchScript and trust was not given.
    """
    if trust_code:
        return
    code = [f"classifier {name!r} would run {describe_code(c)}" for name, c in spec.classifiers.items()
            if c.kind in CODE_KINDS]
    if code:
        raise UntrustedCodeError(
            f"bundle {spec.name!r} holds code, so nothing was loaded: {'; '.join(code)}; load it only if you "
            "trust its author, with --trust-code (CLI) or trust_code=True (Python)"
        )


def run_with_time_limit(work: Callable[[], T], seconds: float, where: str) -> T:
    """``work()`` in a daemon thread; its result, its exception, or an error after ``seconds``.

    Torch releases the GIL while a TorchScript program runs and Python switches threads while
    Python code runs, so the wait ends on time either way. Grad mode is per thread: ``work``
    sets what it needs itself.

    Raises:
        NetworkLoadError: ``work`` did not finish within ``seconds`` (its thread keeps running
            until the process exits: it cannot be stopped).
        Exception: whatever ``work`` raised.
    """
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:  # handed to the caller's thread and raised there
            outcome["error"] = exc

    thread = threading.Thread(target=run, name=f"cfattack trusted code: {where}", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        _overran.append(thread)
        raise NetworkLoadError(
            f"{where}: its code did not finish within {seconds:g} s (it may loop forever); the thread running "
            "it cannot be stopped and keeps a CPU busy until this process ends, so end it (os._exit)"
        )
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]


def runaway_threads() -> int:
    """How many threads of trusted code that overran their time limit are still running."""
    return sum(thread.is_alive() for thread in _overran)


def exit_if_code_still_runs(code: int) -> None:
    """End the process now with ``code`` (streams flushed) if overrunning trusted code still runs.

    A normal exit would tear torch down under the running program and abort; `os._exit` skips
    that teardown. Does nothing when no such thread is alive.
    """
    if runaway_threads():
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # closed or broken stream: nothing more to say
                pass
        os._exit(code)
