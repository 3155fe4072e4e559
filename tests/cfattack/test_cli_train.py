"""`cfattack train ...` through the real CLI entry point (tiny configurations)."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from cfattack.cli import cli
from cfattack.training.data import FASHION_MNIST_DIR
from tests.cfattack.test_cli import assert_one_line_failure, run_cli

pytestmark = pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="apt-get install dataset-fashion-mnist")

TINY_GAN = ["--kimg", "0.032", "--batch", "8", "--channel-max", "8", "--d-channel-max", "8",
            "--snapshot-kimg", "0.016", "--quiet", "--threads", "1"]


def invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_train_gan_then_resume_then_encoder(tmp_path):
    out = tmp_path / "gan"
    first = invoke("train", "gan", "--out", str(out), *TINY_GAN[:1], "0.016", *TINY_GAN[2:])
    assert first.exit_code == 0, first.output
    assert "finished at step 2" in first.output
    again = invoke("train", "gan", "--out", str(out), *TINY_GAN)  # longer run resumes the checkpoint
    assert again.exit_code == 0 and "finished at step 4" in again.output
    config = json.loads((out / "config.json").read_text())
    assert config["generator"]["channel_max"] == 8 and config["batch"] == 8

    enc = invoke("train", "encoder", "--out", str(tmp_path / "enc"), "--generator", str(out / "generator.pt"),
                 "--kimg", "0.016", "--batch", "8", "--quiet", "--threads", "1")
    assert enc.exit_code == 0, enc.output
    assert "validation: psnr" in enc.output
    assert torch.load(tmp_path / "enc" / "encoder.pt", weights_only=True)["format"] == "cfattack.encoder/1"


def test_config_file_and_options_combine(tmp_path):
    cfg = tmp_path / "gan.json"
    cfg.write_text(json.dumps({"batch": 8, "generator": {"channel_max": 8, "num_layers": 3, "num_critical": 1},
                               "d_channel_max": 8, "total_kimg": 0.008}))
    result = invoke("train", "gan", "--out", str(tmp_path / "run"), "--config", str(cfg), "--quiet", "--threads", "1",
                    "--channel-max", "4")
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["generator"] == {**saved["generator"], "channel_max": 4, "num_layers": 3}


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "gan", "--out", "{tmp}/x", "--batch", "1"], "invalid setting batch"),
        (["train", "encoder", "--out", "{tmp}/y"], "missing setting generator"),
        (["train", "encoder", "--out", "{tmp}/z", "--generator", "{tmp}/nope.pt"], "no such file"),
    ],
)
def test_bad_settings_give_one_line(tmp_path, args, message):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert_one_line_failure(run_cli(*argv), message)
