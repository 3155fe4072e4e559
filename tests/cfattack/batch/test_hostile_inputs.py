"""Hostile batch inputs fail alone: FIFOs, devices, link loops, undecodable and over-long names.

The job over a folder of 40 good images and 5 hostile entries must record 40 results and
5 failures and exit 0; nothing may hang, abort the job or break a UTF-8 journal.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cfattack.batch.manifest import MAX_NAME_BYTES, collect_items, read_manifest
from cfattack.batch.store import FailureRecord, ResultRecord, read_jsonl
from cfattack.bundle import bundle_spec_path, read_bundle_spec
from cfattack.errors import InvalidInputError
from cfattack.images import load_image
from tests.cfattack.batch.conftest import EXAMPLES, run_batch
from tests.cfattack.cli.test_cli import assert_one_line_failure

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.skipif(os.name != "posix", reason="FIFOs and devices as POSIX has them")]

TARGET = "bag"
UNDECODABLE = os.fsdecode(b"bad-\xff\xfe-name.png")  # a name whose bytes are not UTF-8
LONG = "x" * 236 + ".png"  # 240 characters: a valid file name, over MAX_NAME_BYTES
# The fastest explanation that is still a real one: encoder-only inversion, 3 attack steps.
QUICK = ("--inversion-steps", "0", "--steps", "3", "--lr", "0.05", "--quiet")


def add_hostile_entries(folder: Path) -> dict[str, str]:
    """The issue's five hostile entries; returns {name as recorded: words its failure message holds}."""
    good = (EXAMPLES / "coat-1.png").read_bytes()  # real image bytes: only the name is wrong
    os.mkfifo(folder / "fifo.png")
    (folder / "zero.png").symlink_to("/dev/zero")
    (folder / "loop.png").symlink_to("loop.png")
    (folder / UNDECODABLE).write_bytes(good)
    (folder / LONG).write_bytes(good)
    return {"fifo.png": "FIFO", "zero.png": "character device", "loop.png": "loop of symbolic links",
            "bad-\\xff\\xfe-name.png": "not valid UTF-8", LONG: f"over the limit of {MAX_NAME_BYTES}"}


@pytest.fixture(scope="module")
def spec():
    return read_bundle_spec(bundle_spec_path("default"))


@pytest.fixture(scope="module")
def hostile_folder(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """40 good images (examples, mirrored, shifted) the classifier does not call a bag, plus 5 hostile entries."""
    from cfattack.bundle.loader import load_bundle

    folder = tmp_path_factory.mktemp("hostile") / "in"
    folder.mkdir()
    bundle = load_bundle("default")
    written = 0
    for path in sorted(EXAMPLES.glob("*.png")):
        pixels = np.asarray(Image.open(path).convert("L"))
        for suffix, variant in (("", pixels), ("-mirrored", pixels[:, ::-1]), ("-shifted", np.roll(pixels, 1, 1))):
            if written == 40:
                break
            name = folder / f"{path.stem}{suffix}.png"
            Image.fromarray(np.ascontiguousarray(variant)).save(name)
            with torch.no_grad():  # the batch job's own reading and labelling
                label = bundle.class_names[int(bundle.classifier()(load_image(name, 1, 32)[None]).argmax(1))]
            if label == TARGET:  # would fail as "already the target": not a good image for this job
                name.unlink()
            else:
                written += 1
    assert written == 40
    return folder, add_hostile_entries(folder)


def test_listing_a_hostile_folder_refuses_each_entry_alone_and_at_once(hostile_folder, spec):
    folder, expected = hostile_folder
    began = time.perf_counter()
    items = collect_items(folder, spec, config_hash="c", target=TARGET).items
    assert time.perf_counter() - began < 10
    assert len(items) == 45
    refused = {Path(i.image).name: i for i in items if i.refusal is not None}
    assert set(refused) == set(expected)
    for name, words in expected.items():
        item = refused[name]
        assert words in item.refusal and name in item.refusal, item.refusal
        item.image.encode("utf-8")  # the printable form
        assert item.image_sha256 is None and len(item.key) == 16
    assert len({i.key for i in items}) == 45
    assert all(len(i.folder.encode()) <= 255 for i in items)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_batch_job_over_40_good_images_and_5_hostile_entries(hostile_folder, tmp_path):
    folder, expected = hostile_folder
    out = tmp_path / "job"
    began = time.perf_counter()
    result = run_batch(folder, "--target", TARGET, "--out", out, "--batch-size", "16", *QUICK)
    seconds = time.perf_counter() - began
    assert result.exit_code == 0, result.stderr
    assert "40 explained" in result.stdout and "5 failed" in result.stdout, result.stdout
    assert "40 results" in result.stdout and "5 failures" in result.stdout
    for name in ("results.jsonl", "failures.jsonl"):
        (out / name).read_bytes().decode("utf-8")  # strict UTF-8, no surrogates
    results = read_jsonl(out / "results.jsonl", ResultRecord)
    failures = read_jsonl(out / "failures.jsonl", FailureRecord)
    assert len(results) == 40 and len(failures) == 5
    by_name = {Path(f.image).name: f for f in failures}
    assert set(by_name) == set(expected)
    for name, words in expected.items():
        failure = by_name[name]
        assert (failure.stage, failure.error) == ("load", "InvalidInputError")
        assert words in failure.message, failure.message
    assert json.loads((out / "global.json").read_text())["explanations"] == 40
    assert seconds < 60, seconds

    again = run_batch(folder, "--target", TARGET, "--out", out, "--batch-size", "16", *QUICK)
    assert again.exit_code == 0, again.stderr
    assert "0 explained (0 reached), 0 failed, 45 skipped" in again.stdout


def test_manifest_rows_naming_hostile_files_fail_alone(tmp_path, spec):
    os.mkfifo(tmp_path / "fifo.png")
    (tmp_path / "good.png").write_bytes((EXAMPLES / "coat-1.png").read_bytes())
    rows = [{"image": "good.png"}, {"image": "fifo.png"}, {"image": "/dev/zero"},
            {"image": "lone-\udc80.png", "target": "coat"}, {"image": "x.png", "target": "\ud800bag"}]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")  # JSON escapes the surrogates
    items = collect_items(tmp_path / "m.jsonl", spec, config_hash="c", target=TARGET).items
    assert [i.refusal is None for i in items] == [True, False, False, False, False]
    assert "FIFO" in items[1].refusal and "character device" in items[2].refusal
    assert "not valid UTF-8" in items[3].refusal and items[3].image.endswith("lone-\\x80.png")
    assert items[4].target == "\\ud800bag" and items[4].target_index is None  # an unknown target, printable
    for item in items:
        item.image.encode("utf-8")


def test_a_manifest_or_input_that_is_a_fifo_is_refused_in_one_line(tmp_path):
    os.mkfifo(tmp_path / "m.csv")
    with pytest.raises(InvalidInputError, match="FIFO"):
        read_manifest(tmp_path / "m.csv")
    result = run_batch(tmp_path / "m.csv", "--out", tmp_path / "o", *QUICK)
    assert_one_line_failure(result, "FIFO")
    assert result.exit_code == 1
    result = run_batch(tmp_path, "--targets-from", tmp_path / "m.csv", "--out", tmp_path / "o", *QUICK)
    assert_one_line_failure(result, "FIFO")
