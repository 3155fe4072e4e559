"""Batch jobs end to end on the default bundle: bad items, resume after SIGKILL, torchrun ranks, config guard."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cfattack.batch.store import FailureRecord, ResultRecord, read_jsonl
from cfattack.bundle.loader import load_bundle
from cfattack.images import load_image
from tests.cfattack.batch.conftest import (
    ENV,
    EXAMPLES,
    FAST,
    REPO_ROOT,
    SHARED_JOB,
    batch_command,
    run_batch,
    run_batch_process,
)
from tests.cfattack.cli.test_cli import assert_one_line_failure

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]

REPORT_FILES = {"explanation.json", "counterfactual.png", "strip.png", "start.png", "path.gif", "explanation.html"}


def item_folders(out: Path) -> set[str]:
    return {p.name for p in out.iterdir() if p.is_dir()}


def assert_clean(out: Path) -> None:
    """No temporary file anywhere, no rank journal left, every item folder complete, no duplicate line."""
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert not list(out.glob("*.rank*.jsonl"))
    for folder in item_folders(out):
        assert {p.name for p in (out / folder).iterdir()} == REPORT_FILES, folder
    for name in ("results.jsonl", "failures.jsonl"):
        lines = (out / name).read_text().splitlines()
        keys = [json.loads(line)["key"] for line in lines]
        assert len(keys) == len(set(keys)), name


def assert_same_job(out: Path, reference: Path) -> None:
    """The same items with exactly the same numbers (the merged files are written in item order)."""
    for name in ("results.jsonl", "failures.jsonl", "global.json", "results.csv", "attributions.csv", "failures.csv"):
        assert (out / name).read_text() == (reference / name).read_text(), name
    assert item_folders(out) == item_folders(reference)
    for folder in item_folders(reference):
        ours, theirs = (json.loads((d / folder / "explanation.json").read_text()) for d in (out, reference))
        ours.pop("timings"), theirs.pop("timings")
        assert ours == theirs, folder


# --- 60 images, 6 of them bad --------------------------------------------------------------------


@pytest.fixture(scope="module")
def sixty(tmp_path_factory) -> Path:
    """A manifest of 60 images: 54 good ones (examples, mirrored, shifted) and 6 bad items."""
    root = tmp_path_factory.mktemp("sixty")
    images = root / "images"
    images.mkdir()
    bundle = load_bundle("default")
    rows = []
    variants = []
    for path in sorted(EXAMPLES.glob("*.png")):
        pixels = np.asarray(Image.open(path).convert("L"))
        variants += [(f"{path.stem}.png", pixels), (f"{path.stem}-mirrored.png", pixels[:, ::-1]),
                     (f"{path.stem}-shifted.png", np.roll(pixels, 1, axis=1))]
    for name, pixels in variants[:55]:
        Image.fromarray(np.ascontiguousarray(pixels)).save(images / name)
        x = load_image(images / name, channels=1, size=32)[None]
        with torch.no_grad():
            label = int(bundle.classifier()(x).argmax(1))
        rows.append((name, bundle.class_names[(label + 5) % 10]))  # far from the label: never the same
    assert rows[54][0] == "trouser-1.png"
    rows[54] = (rows[54][0], "giraffe")  # unknown target
    good = (images / variants[0][0]).read_bytes()
    (images / "corrupt.png").write_bytes(good[:60] + bytes(200) + good[260:])
    (images / "truncated.png").write_bytes(good[: len(good) // 2])
    (images / "empty.png").write_bytes(b"")
    (images / "text.png").write_text("this is not an image\n")
    rows += [(name, "bag") for name in ("corrupt.png", "truncated.png", "empty.png", "text.png", "missing.png")]
    manifest = root / "manifest.csv"
    manifest.write_text("image,target\n" + "".join(f"images/{name},{target}\n" for name, target in rows))
    assert len(rows) == 60
    return manifest


def test_sixty_images_six_bad_then_a_second_run_does_nothing(sixty, tmp_path):
    out = tmp_path / "job"
    first = run_batch(sixty, "--out", out, "--batch-size", "32", *FAST)
    assert first.exit_code == 0, first.stderr
    assert "done: 54 explained" in first.stdout and "6 failed, 0 skipped" in first.stdout
    assert "54 results" in first.stdout and "6 failures" in first.stdout
    results = read_jsonl(out / "results.jsonl", ResultRecord)
    failures = read_jsonl(out / "failures.jsonl", FailureRecord)
    assert len(results) == 54 and len(failures) == 6
    by_image = {Path(f.image).name: f for f in failures}
    assert {name: f.stage for name, f in by_image.items()} == {
        "corrupt.png": "load", "truncated.png": "load", "empty.png": "load", "text.png": "load",
        "missing.png": "load", "trouser-1.png": "target"}
    assert all(f.error == "InvalidInputError" and f.message for f in failures)
    assert "giraffe" in next(f.message for f in failures if f.stage == "target")
    assert len(item_folders(out)) == 54
    assert_clean(out)
    global_json = json.loads((out / "global.json").read_text())
    assert global_json["explanations"] == 54
    assert sum(p["attempted"] for p in global_json["pairs"]) == 54
    html = (out / "global.html").read_text()
    assert html.count('class="thumb"') == 54

    before = {p: p.read_bytes() for p in (out / "results.jsonl", out / "failures.jsonl", out / "global.json")}
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/explanation.json")}
    second = run_batch(sixty, "--out", out, "--batch-size", "32", *FAST)
    assert second.exit_code == 0, second.stderr
    assert "done: 0 explained (0 reached), 0 failed, 60 skipped" in second.stdout
    assert {p: p.read_bytes() for p in before} == before
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/explanation.json")} == stamps


# --- resume -----------------------------------------------------------------------------------------


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def test_sigkill_then_resume_gives_exactly_the_uninterrupted_results(reference_job, tmp_path):
    out = tmp_path / "job"
    proc = subprocess.Popen(batch_command(*SHARED_JOB, "--out", out), env=ENV, cwd=REPO_ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while _lines(out / "results.jsonl") == 0 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the job ended before it could be killed"
    finished = len(read_jsonl(out / "results.jsonl", ResultRecord))
    assert 0 < finished < 14

    resumed = run_batch_process(*SHARED_JOB, "--out", out)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{finished} skipped" in resumed.stdout or "skipped" in resumed.stdout
    assert_clean(out)
    assert_same_job(out, reference_job)


def test_a_partly_finished_batch_is_recomputed_whole(reference_job, tmp_path):
    out = tmp_path / "job"
    shutil.copytree(reference_job, out)
    lines = (out / "results.jsonl").read_text().splitlines(keepends=True)
    lost = json.loads(lines[5])  # the second item of the second batch of 4
    (out / "results.jsonl").write_text("".join(lines[:5] + lines[6:]))
    shutil.rmtree(out / lost["folder"])
    (out / ".global.json.0123456789abcdef.tmp").write_text("{")  # left by a kill during a write

    resumed = run_batch(*SHARED_JOB, "--out", out)
    assert resumed.exit_code == 0, resumed.stderr
    assert "done: 1 explained" in resumed.stdout and "15 skipped" in resumed.stdout
    assert_clean(out)
    assert_same_job(out, reference_job)


# --- torchrun ---------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_ranks_match_one_rank(reference_job, tmp_path):
    out = tmp_path / "job"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
               "--master-port", str(_free_port()), "-m", "cfattack.cli.batch", *SHARED_JOB, "--out", str(out)]
    done = subprocess.run(command, env=ENV, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "on 2 ranks" in done.stdout and done.stdout.count("done:") == 1  # rank 0 reports
    assert_clean(out)
    assert_same_job(out, reference_job)


# --- config guard and retries -----------------------------------------------------------------------


def test_a_changed_config_is_refused_unless_restart(reference_job, tmp_path):
    out = tmp_path / "job"
    shutil.copytree(reference_job, out)
    changed = [a if a != "20" else "21" for a in SHARED_JOB]  # --steps 21
    refused = run_batch(*changed, "--out", out)
    assert_one_line_failure(refused, "different config", "attack.steps 20 -> 21", "--restart")
    assert (out / "results.jsonl").read_text() == (reference_job / "results.jsonl").read_text()

    restarted = run_batch(*changed, "--limit", "2", "--out", out, "--restart")
    assert restarted.exit_code == 0, restarted.stderr
    assert "done: 2 explained" in restarted.stdout
    assert len(read_jsonl(out / "results.jsonl", ResultRecord)) == 2 and len(item_folders(out)) == 2
    assert json.loads((out / "job.json").read_text())["config"]["attack"]["steps"] == 21


def test_failed_batches_are_kept_until_retry_failed(tmp_path, monkeypatch):
    from cfattack.pipeline.explainer import Explainer

    out = tmp_path / "job"
    job = (str(EXAMPLES), "--target", "coat", "--limit", "3", "--out", out, *FAST)
    original = Explainer.explain_many

    def broken(self, *args, **kwargs):
        raise RuntimeError("CUDA out of memory (pretend)")

    monkeypatch.setattr(Explainer, "explain_many", broken)
    first = run_batch(*job)
    assert first.exit_code == 0, first.stderr
    failures = read_jsonl(out / "failures.jsonl", FailureRecord)
    assert [(f.stage, f.error) for f in failures] == [("explain", "RuntimeError")] * 3
    assert "out of memory" in failures[0].message

    monkeypatch.setattr(Explainer, "explain_many", original)
    again = run_batch(*job)
    assert "0 explained" in again.stdout and "3 skipped" in again.stdout
    retried = run_batch(*job, "--retry-failed")
    assert retried.exit_code == 0, retried.stderr
    assert "done: 3 explained" in retried.stdout
    assert (out / "failures.jsonl").read_text() == ""
    assert len(read_jsonl(out / "results.jsonl", ResultRecord)) == 3
