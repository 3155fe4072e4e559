"""Helpers of the batch tests: the command in process and as a subprocess, and a fast config."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cfattack.cli.root import cli
from cfattack.cli.batch import batch
from tests.cfattack.cli.test_cli import run_cli

REPO_ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = REPO_ROOT / "examples"
# Tiny settings: encoder-only inversion, short attacks with a larger step so some items reach; the
# CPU even where a GPU is present (--device auto), so every run here computes the same numbers.
FAST = ("--inversion-steps", "0", "--steps", "20", "--lr", "0.05", "--quiet", "--device", "cpu")
# One thread in every subprocess: the same numbers as the tests' process, and no oversubscription.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# The job shared by the resume and torchrun tests: 16 items (2 fail: pullovers toward pullover), 4 batches.
SHARED_JOB = (str(EXAMPLES), "--target", "pullover", "--limit", "16", "--batch-size", "4", *FAST)


def run_batch(*args):
    """``cfattack batch ARGS`` in this process (CliRunner)."""
    if "batch" not in cli.commands:  # until cli.py registers it
        cli.add_command(batch)
    return run_cli("batch", *args)


def batch_command(*args) -> list[str]:
    return [sys.executable, "-m", "cfattack.cli.batch", *map(str, args)]


def run_batch_process(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(batch_command(*args), env=ENV, cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def reference_job(tmp_path_factory) -> Path:
    """SHARED_JOB run once, uninterrupted, by one process."""
    out = tmp_path_factory.mktemp("reference") / "job"
    done = run_batch_process(*SHARED_JOB, "--out", out)
    assert done.returncode == 0, done.stderr
    return out
