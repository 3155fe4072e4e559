"""The resume key covers the networks' content: new weights of the same size are a new config; hashes are cached."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import time
from pathlib import Path

import pytest
import torch

import cfattack.batch.file_hashes as file_hashes
from cfattack.batch.file_hashes import CACHE_NAME, FileHashCache, bundle_file_hashes
from cfattack.batch.manifest import config_hash
from cfattack.batch.store import ResultRecord, read_jsonl
from cfattack.bundle import bundle_spec_path, read_bundle_spec
from cfattack.pipeline.explanation import ExplainConfig
from tests.cfattack.batch.conftest import EXAMPLES, FAST, run_batch
from tests.cfattack.cli.test_cli import assert_one_line_failure

pytestmark = pytest.mark.usefixtures("one_thread")

DEFAULT = bundle_spec_path("default").parent


def rewrite_same_size(path: Path, change: bytes) -> None:
    """Overwrite the first bytes of ``path`` in place (same inode, same size), keeping its mtime."""
    info = path.stat()
    with open(path, "r+b") as fh:
        fh.write(change)
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))
    assert path.stat().st_size == info.st_size and path.stat().st_mtime_ns == info.st_mtime_ns


def test_cache_reuses_a_hash_while_the_stamp_holds_and_sees_same_size_edits(tmp_path, monkeypatch):
    path = tmp_path / "net.pt"
    path.write_bytes(b"A" * 5000)
    cache = FileHashCache(tmp_path / CACHE_NAME)
    assert cache.sha256(path) == hashlib.sha256(b"A" * 5000).hexdigest()
    cache.save()

    def no_reading(*args, **kwargs):
        raise AssertionError("the cached hash should have been used")

    with monkeypatch.context() as patch:
        patch.setattr(file_hashes, "sha256_regular_file", no_reading)
        assert FileHashCache(tmp_path / CACHE_NAME).sha256(path) == hashlib.sha256(b"A" * 5000).hexdigest()

    time.sleep(0.05)  # past the file system's time-stamp granularity
    rewrite_same_size(path, b"B")  # size and mtime as before; the ctime moves
    assert FileHashCache(tmp_path / CACHE_NAME).sha256(path) == hashlib.sha256(b"B" + b"A" * 4999).hexdigest()
    assert FileHashCache().sha256(tmp_path / "missing.pt") is None
    (tmp_path / CACHE_NAME).write_text("{not json")
    assert FileHashCache(tmp_path / CACHE_NAME).sha256(path) is not None  # a broken cache is an empty one


def test_config_hash_follows_the_explained_networks_content_not_their_size(tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(DEFAULT, bundle)
    spec = read_bundle_spec(bundle / "bundle.json")
    config = ExplainConfig().model_dump_json()

    def key(classifier: str = "baseline") -> str:
        return config_hash(config, spec, bundle / "bundle.json", classifier,
                           bundle_file_hashes(spec, bundle / "bundle.json", classifier))

    base = key()
    assert base == config_hash(config, read_bundle_spec(bundle_spec_path("default")),
                               bundle_spec_path("default"), "baseline")  # a copy is the same bundle
    rewrite_same_size(bundle / "classifiers" / "lcc.pt", b"X")
    assert key() == base  # another classifier's weights cannot change baseline's explanations
    assert key("lcc") != config_hash(config, spec, DEFAULT / "bundle.json", "lcc")
    rewrite_same_size(bundle / "generator.pt", b"Y")
    assert key() != base


@pytest.mark.timeout(120)
def test_weights_changed_in_place_make_a_resumed_job_refuse(tmp_path, monkeypatch):
    bundle = tmp_path / "bundle"
    shutil.copytree(DEFAULT, bundle)
    out = tmp_path / "job"
    job = (str(EXAMPLES), "--target", "pullover", "--limit", "2", "--bundle", bundle, "--out", out, *FAST)
    first = run_batch(*job)
    assert first.exit_code == 0, first.stderr
    results = (out / "results.jsonl").read_text()
    assert len(read_jsonl(out / "results.jsonl", ResultRecord)) == 2

    # An unchanged resume reads no network file: every hash comes from the folder's cache.
    with monkeypatch.context() as patch:
        patch.setattr(file_hashes, "sha256_regular_file", lambda *a, **k: pytest.fail("re-hashed a network"))
        again = run_batch(*job)
    assert again.exit_code == 0, again.stderr
    assert "2 skipped" in again.stdout

    # New weights, same size, same file: a real, loadable classifier that computes other numbers.
    weights = bundle / "classifiers" / "baseline.pt"
    size = weights.stat().st_size
    payload = torch.load(weights, map_location="cpu", weights_only=True)
    name = next(k for k, v in payload["state_dict"].items() if v.is_floating_point() and v.numel() > 1)
    payload["state_dict"][name] = payload["state_dict"][name] * 1.5
    buffer = io.BytesIO()
    torch.save(payload, buffer)  # to a file object, as cfattack writes checkpoints
    assert len(buffer.getvalue()) == size
    time.sleep(0.05)
    with open(weights, "r+b") as fh:  # in place: same inode, same size
        fh.write(buffer.getvalue())
    assert weights.stat().st_size == size

    refused = run_batch(*job)
    line = assert_one_line_failure(refused, "was run with a different config", "classifier 'baseline'",
                                   "--restart")
    assert refused.exit_code == 1, line
    assert (out / "results.jsonl").read_text() == results
