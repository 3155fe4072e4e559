"""``cfattack batch`` option errors: one line, exit 1, nothing explained."""

from __future__ import annotations

import pytest

from tests.cfattack.batch.conftest import EXAMPLES, FAST, run_batch
from tests.cfattack.cli.test_cli import assert_one_line_failure

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_target_is_required_for_a_folder(tmp_path):
    result = run_batch(EXAMPLES, "--out", tmp_path / "o", *FAST)
    assert_one_line_failure(result, "--target", "--targets-from")


def test_an_unknown_target_for_all_images_fails_before_any_work(tmp_path):
    result = run_batch(EXAMPLES, "--target", "giraffe", "--out", tmp_path / "o", *FAST)
    assert_one_line_failure(result, "giraffe")
    assert not (tmp_path / "o").exists()


def test_missing_input_and_bad_manifest(tmp_path):
    assert_one_line_failure(run_batch(tmp_path / "nope", "--target", "bag", "--out", tmp_path / "o"), "not found")
    (tmp_path / "m.csv").write_text("picture\nx.png\n")
    assert_one_line_failure(run_batch(tmp_path / "m.csv", "--out", tmp_path / "o"), "no 'image' column")


def test_target_and_targets_from_exclude_each_other(tmp_path):
    (tmp_path / "t.csv").write_text("image,target\n")
    result = run_batch(EXAMPLES, "--target", "bag", "--targets-from", tmp_path / "t.csv", "--out", tmp_path / "o")
    assert_one_line_failure(result, "not both")


def test_batched_numerics_is_recorded_and_off_by_default(tmp_path):
    import json

    for flag, invariant in (((), True), (("--batched-numerics",), False)):
        out = tmp_path / f"o{invariant}"
        result = run_batch(EXAMPLES, "--target", "bag", "--limit", "2", "--out", out, *FAST, *flag)
        assert result.exit_code == 0, result.stderr
        job = json.loads((out / "job.json").read_text())
        assert json.dumps(job).count('"batch_invariant": ' + ("true" if invariant else "false")) == 1
