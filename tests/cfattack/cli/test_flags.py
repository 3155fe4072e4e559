"""Flags are validated at the edge: NaN, infinity and out-of-range numbers, bad devices and bad paths.

Each case ends in ONE line on stderr and the documented exit code (2: a value an option refuses;
1: bad input such as a folder or FIFO given as an image, or an undecodable file name), before
any network is loaded. The configs refuse the same values from Python with pydantic's
``ValidationError`` (a ``ValueError``).
"""

from __future__ import annotations

import json
import os

import pytest
from pydantic import ValidationError

from cfattack.cli.common import run_guarded
from cfattack.config import AttackConfig, ClassifierTrainingConfig, EncoderTrainingConfig, GanTrainingConfig, InversionConfig
from tests.cfattack.cli.test_cli import REPO_ROOT, assert_one_line_failure, run_cli

IMAGE = str(REPO_ROOT / "examples" / "coat-1.png")


@pytest.mark.parametrize("flag, value, words", [
    ("--lr", "nan", "not a finite number"),
    ("--lr", "inf", "not a finite number"),
    ("--lr", "1e9", "not in the range 0<x<=10"),
    ("--lr", "0", "not in the range"),
    ("--threshold", "nan", "not a finite number"),
    ("--threshold", "1", "not in the range"),
    ("--proximity", "inf", "not a finite number"),
    ("--proximity", "-1", "not in the range"),
    ("--shift-lr", "nan", "not a finite number"),
    ("--shift-lr", "11", "not in the range 0<x<=10"),
    ("--seed", "1e23", "not a valid integer"),
    ("--seed", "99999999999999999999999", "not in the range"),
    ("--seed", "-1", "not in the range"),
])
def test_explain_and_batch_numeric_flags(tmp_path, flag, value, words):
    for command in (["explain", IMAGE, "--target", "bag"], ["batch", str(REPO_ROOT / "examples"), "--target", "bag"]):
        result = run_cli(*command, "--out", tmp_path / "o", flag, value)
        assert_one_line_failure(result, flag, words)
        assert result.exit_code == 2
        assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("args, words", [
    (["generate", "--network", "default", "--seeds", "0", "--rotate", "inf"], ["--rotate", "not a finite number"]),
    (["generate", "--network", "default", "--seeds", "0", "--rotate", "400"], ["--rotate", "not in the range"]),
    (["generate", "--network", "default", "--seeds", "0", "--trunc", "nan"], ["--trunc", "not a finite number"]),
    (["train", "gan", "--max-minutes", "nan"], ["--max-minutes", "not a finite number"]),
    (["train", "gan", "--device", "bogus"], ["--device", "'bogus' is not a device"]),
    (["train", "gan", "--kimg", "inf"], ["--kimg", "not a finite number"]),
    (["train", "gan", "--kimg", "-1"], ["--kimg", "greater than 0"]),
    (["train", "gan", "--batch", "1"], ["--batch", "greater than or equal to 2"]),
    (["train", "gan", "--channel-max", "100000"], ["--channel-max", "less than or equal to 4096"]),
    (["train", "gan", "--seed", "1e23"], ["--seed", "not a valid integer"]),
    (["train", "classifier", "--lr", "nan"], ["--lr", "not a finite number"]),
    (["train", "classifier", "--width", "100000"], ["--width", "less than or equal to 4096"]),
    (["train", "encoder", "--generator", "g.pt", "--snapshot-kimg", "nan"], ["--snapshot-kimg", "finite"]),
    (["train", "descriptors", "--bundle", "default", "--device", "gpu7"], ["--device", "not a device"]),
    (["train", "descriptors", "--bundle", "default", "--anchor-jitter", "inf"], ["--anchor-jitter", "finite"]),
    (["metrics", "fd", "--network", "default", "--classifier", "c.pt", "--trunc", "inf"], ["--trunc", "finite"]),
    (["metrics", "fd", "--network", "default", "--classifier", "c.pt", "--seed", "1e23"], ["--seed", "integer"]),
])
def test_other_commands_numeric_and_device_flags(tmp_path, args, words):
    result = run_cli(*args, "--out", tmp_path / "o") if args[0] != "metrics" else run_cli(*args)
    assert_one_line_failure(result, *words)
    assert result.exit_code == 2
    assert not (tmp_path / "o").exists()


def test_a_config_file_value_is_bad_input_naming_the_setting(tmp_path):
    (tmp_path / "c.json").write_text('{"total_kimg": NaN}')  # Python's json reads NaN
    result = run_cli("train", "gan", "--out", tmp_path / "o", "--config", tmp_path / "c.json")
    assert_one_line_failure(result, "invalid setting total_kimg", "finite")
    assert result.exit_code == 1
    (tmp_path / "d.json").write_text(json.dumps({"device": "bogus"}))
    result = run_cli("train", "gan", "--out", tmp_path / "o", "--config", tmp_path / "d.json")
    assert_one_line_failure(result, "invalid setting device")
    assert result.exit_code == 1
    os.mkfifo(tmp_path / "fifo.json")
    result = run_cli("train", "gan", "--out", tmp_path / "o", "--config", tmp_path / "fifo.json")
    assert_one_line_failure(result, "FIFO")
    assert not (tmp_path / "o").exists()


def test_train_on_cuda_without_a_gpu_is_one_line(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    result = run_cli("train", "gan", "--out", tmp_path / "o", "--device", "cuda")
    assert_one_line_failure(result, "--device cuda", "no CUDA GPU")
    assert result.exit_code == 1 and not (tmp_path / "o").exists()


def test_bad_image_paths_are_bad_input_exit_1(tmp_path):
    (tmp_path / "x.png").mkdir()
    os.mkfifo(tmp_path / "fifo.png")
    for path, words in ((tmp_path / "x.png", "directory"), (tmp_path / "fifo.png", "FIFO"),
                        (tmp_path / "missing.png", "not found")):
        for command in (["explain", path, "--target", "bag", "--out", tmp_path / "o"],
                        ["compare", path, "--out", tmp_path / "o", "--no-realism"]):
            result = run_cli(*command)
            assert_one_line_failure(result, words)
            assert result.exit_code == 1, command


def test_an_undecodable_path_is_one_line_exit_1(tmp_path):
    name = os.fsdecode(b"coat-\xff.png")
    (tmp_path / name).write_bytes(open(IMAGE, "rb").read())
    for args in (["explain", tmp_path / name, "--target", "bag"],
                 ["explain", IMAGE, "--target", "bag", "--out", tmp_path / os.fsdecode(b"out-\xfe")],
                 ["batch", tmp_path, "--target", "bag", "--targets-from", tmp_path / name, "--out", tmp_path / "o"]):
        result = run_cli(*args)
        line = assert_one_line_failure(result, "not valid UTF-8", "rename")
        assert "\\xff" in line or "\\xfe" in line
        assert "unexpected" not in line and result.exit_code == 1


def test_run_guarded_turns_a_settings_error_into_one_line(capsys):
    assert run_guarded(lambda: AttackConfig(lr=float("nan")), []) == 1
    assert capsys.readouterr().err.strip() == "cfattack: error: invalid setting lr: Input should be a finite number"

    def write_undecodable():
        "x\udcff".encode("utf-8")

    assert run_guarded(write_undecodable, []) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("cfattack: error: a name is not valid UTF-8") and "\\xff" in err


@pytest.mark.parametrize("model, field, value", [
    (AttackConfig, "lr", float("nan")), (AttackConfig, "lr", 1e9), (AttackConfig, "threshold", float("nan")),
    (AttackConfig, "proximity_weight", float("inf")), (AttackConfig, "shift_lr", float("nan")),
    (AttackConfig, "shift_lr", 11.0), (AttackConfig, "seed", 10**23), (AttackConfig, "seed", -1),
    (InversionConfig, "lr", float("inf")), (InversionConfig, "flag_psnr_below", float("nan")),
    (GanTrainingConfig, "total_kimg", float("nan")), (GanTrainingConfig, "device", "bogus"),
    (GanTrainingConfig, "batch", 10**9), (ClassifierTrainingConfig, "width", 100_000),
    (ClassifierTrainingConfig, "dropout", float("nan")), (EncoderTrainingConfig, "lr", float("inf")),
])
def test_configs_refuse_the_same_values_from_python(model, field, value):
    extra = {"generator": "g.pt"} if model is EncoderTrainingConfig else {}
    with pytest.raises(ValidationError) as info:
        model(**extra, **{field: value})
    assert isinstance(info.value, ValueError)
    assert info.value.errors()[0]["loc"] == (field,)
    model(**extra)  # the defaults stay valid
    assert GanTrainingConfig(device="cuda:1").device == "cuda:1"


def test_numbers_of_thousands_of_digits_are_refused_in_one_short_line(tmp_path):
    huge = "9" * 5000  # int() of this raises a ValueError of its own (over 4300 digits)
    for args in (["generate", "--network", "default", "--seeds", huge, "--out", tmp_path / "o"],
                 ["generate", "--network", "default", "--seeds", f"0-{huge}", "--out", tmp_path / "o"],
                 ["explain", IMAGE, "--target", "bag", "--seed", huge, "--out", tmp_path / "o"]):
        result = run_cli(*args)
        line = assert_one_line_failure(result, "too large" if "--seeds" in args else "not in the range")
        assert result.exit_code == 2 and len(line) < 300
