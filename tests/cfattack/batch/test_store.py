"""Job folder files: journals that survive a kill, the merge, job.json and housekeeping."""

from __future__ import annotations

import pytest

from cfattack.batch.store import (
    AttributionRow,
    FailureRecord,
    JobSpec,
    JobStore,
    Journal,
    ResultRecord,
    read_jsonl,
    record_line,
)
from cfattack.errors import InvalidInputError
from cfattack.pipeline.explanation import ExplainConfig


def result(key: str, reached: bool = True, change: float = 0.5, folder: str | None = None) -> ResultRecord:
    return ResultRecord(
        key=key, image=f"{key}.png", image_sha256="0" * 64, folder=folder or f"{key}-to-bag-{key}",
        source_class="coat", source_index=4, source_probability=0.9, target="bag", target_index=8,
        reached=reached, reason="reached" if reached else "max_steps", steps=3, target_probability=0.6,
        counterfactual_class="bag", latent_distance=1.5, pixel_rms=0.1, inversion_psnr=25.0,
        inversion_flagged=False, attribution_source="predicted",
        attributions=[AttributionRow(name="ink_area", unit="px", before=1.0, after=1.0 + change, change=change,
                                     standardized_change=change / 0.1, reliable=True)],
    )


def failure(key: str, stage: str = "load", message: str = "bad") -> FailureRecord:
    return FailureRecord(key=key, image=f"{key}.png", target="bag", stage=stage, error="InvalidInputError",
                         message=message)


def test_record_lines_read_back_exactly():
    r = result("a", change=0.1 + 0.2)
    line = record_line(r)
    assert "\n" not in line
    assert ResultRecord.model_validate_json(line) == r


def test_a_torn_last_line_is_ignored_then_cut_off_before_appending(tmp_path):
    path = tmp_path / "results.jsonl"
    journal = Journal(path)
    journal.append([result("a"), result("b")])
    whole = path.read_bytes()
    path.write_bytes(whole + record_line(result("c")).encode()[:40])  # a kill in the middle of a write
    assert [r.key for r in read_jsonl(path, ResultRecord)] == ["a", "b"]
    Journal(path).append([result("d")])
    assert path.read_bytes() == whole + (record_line(result("d")) + "\n").encode()
    assert [r.key for r in read_jsonl(path, ResultRecord)] == ["a", "b", "d"]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_unparseable_lines_are_skipped_and_missing_files_are_empty(tmp_path):
    path = tmp_path / "f.jsonl"
    path.write_text(record_line(failure("a")) + "\nnot json\n{}\n" + record_line(failure("b")) + "\n")
    assert [f.key for f in read_jsonl(path, FailureRecord)] == ["a", "b"]
    assert read_jsonl(tmp_path / "none.jsonl", FailureRecord) == []
    Journal(path).append([])  # nothing to write: no change
    assert Journal(tmp_path / "none.jsonl").repair() is False


def test_merge_orders_by_item_dedupes_ranks_and_drops_failures_that_later_succeeded(tmp_path):
    ranks = [JobStore(tmp_path, rank=r, world_size=2) for r in (0, 1)]
    ranks[0].results.append([result("c"), result("a")])
    ranks[1].results.append([result("b"), result("x")])
    ranks[1].failures.append([failure("d"), failure("b", "explain")])
    JobStore(tmp_path).failures.append([failure("d", message="old")])  # from an earlier run
    JobStore(tmp_path).results.append([result("a")])  # a duplicate left by a merge interrupted before cleanup
    store = JobStore(tmp_path)
    assert store.read_failures()["d"].message == "bad"  # the latest record of a key wins
    results, failures = store.merge(["a", "b", "c", "d"])
    assert [r.key for r in results] == ["a", "b", "c", "x"]
    assert [f.key for f in failures] == ["d"]  # b failed once, then succeeded
    assert sorted(p.name for p in tmp_path.iterdir()) == ["failures.jsonl", "results.jsonl"]
    assert [r.key for r in read_jsonl(tmp_path / "results.jsonl", ResultRecord)] == ["a", "b", "c", "x"]


def test_job_json_guards_the_config(tmp_path):
    store = JobStore(tmp_path)
    job = JobSpec(config_hash="h1", bundle="b", classifier="c", batch_size=8, config=ExplainConfig())
    assert store.check_job(job) is None
    store.write_job(job)
    assert store.check_job(job) == job
    other = job.model_copy(update={"config_hash": "h2",
                                   "config": ExplainConfig.model_validate({"attack": {"steps": 9}})})
    with pytest.raises(InvalidInputError, match=r"different config \(attack.steps 500 -> 9\).*--restart"):
        store.check_job(other)
    (tmp_path / "job.json").write_text("{}")
    with pytest.raises(InvalidInputError, match="not a cfattack batch job file"):
        store.check_job(job)


def test_clear_and_temporaries(tmp_path):
    store = JobStore(tmp_path)
    item = tmp_path / "a-to-bag-a"
    item.mkdir()
    (item / "explanation.json").write_text("{}")
    (item / ".strip.png.0123456789abcdef.tmp").write_bytes(b"half")
    (tmp_path / ".global.json.fedcba9876543210.tmp").write_bytes(b"half")
    (tmp_path / "keep.tmp").write_text("not ours")
    assert store.remove_temporaries() == 2
    assert sorted(p.name for p in item.iterdir()) == ["explanation.json"]
    store.results.append([result("a", folder="a-to-bag-a"), result("evil", folder="../outside")])
    store.failures.append([failure("z")])
    store.write_job(JobSpec(config_hash="h", bundle="b", classifier="c", batch_size=1, config=ExplainConfig()))
    (tmp_path / "global.json").write_text("{}")
    store.clear()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.tmp"]
