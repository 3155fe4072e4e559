"""`cfattack train ...` through the real CLI entry point (tiny configurations)."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from cfattack.cli.root import cli
from cfattack.training.data import FASHION_MNIST_DIR
from tests.cfattack.cli.test_cli import assert_one_line_failure, run_cli

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


def test_train_gan_conditional_warm_start_from_an_unconditional_run(tmp_path):
    src = invoke("train", "gan", "--out", str(tmp_path / "gan"), *TINY_GAN[:1], "0.016", *TINY_GAN[2:])
    assert src.exit_code == 0, src.output
    cond = invoke("train", "gan", "--out", str(tmp_path / "cgan"), "--conditional", "--init-from",
                  str(tmp_path / "gan"), *TINY_GAN)
    assert cond.exit_code == 0, cond.output
    assert "finished at step 4" in cond.output  # a new run: it counts its own images
    config = json.loads((tmp_path / "cgan" / "config.json").read_text())
    assert config["conditional"] and config["init_from"] == str(tmp_path / "gan")
    gen = invoke("generate", "--network", str(tmp_path / "cgan" / "generator.pt"), "--seeds", "0-2",
                 "--out", str(tmp_path / "img"))
    assert gen.exit_code == 0 and len(list((tmp_path / "img").glob("seed*.png"))) == 3


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
        (["train", "gan", "--out", "{tmp}/x", "--batch", "1"], "invalid value for '--batch'"),
        (["train", "encoder", "--out", "{tmp}/y"], "missing setting generator"),
        (["train", "encoder", "--out", "{tmp}/z", "--generator", "{tmp}/nope.pt"], "no such file"),
        (["train", "gan", "--out", "{tmp}/w", "--init-from", "{tmp}/nope", "--kimg", "0.008", "--quiet"],
         "cannot read warm-start checkpoint"),
    ],
)
def test_bad_settings_give_one_line(tmp_path, args, message):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert_one_line_failure(run_cli(*argv), message)


def test_bundle_create_then_generate_from_it(tmp_path):
    from cfattack.bundle.loader import load_bundle
    from cfattack.classifiers import build_classifier
    from cfattack.classifiers.checkpoint import save_classifier_checkpoint
    from cfattack.inversion.encoder import Encoder, save_encoder_checkpoint
    from cfattack.stylegan.generator import Generator
    from cfattack.stylegan.checkpoint import save_generator_checkpoint
    from cfattack.training.data import FASHION_MNIST_CLASSES

    torch.manual_seed(0)
    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=32, img_channels=1, channel_base=128, channel_max=8,
                  num_layers=3, num_critical=1, margin_size=2)
    save_generator_checkpoint(G, tmp_path / "G.pt")
    save_encoder_checkpoint(Encoder(32, 1, G.num_ws, G.w_dim, channels=4, channel_max=8), tmp_path / "E.pt")
    save_classifier_checkpoint(build_classifier(10, width=8, embedding_dim=16).eval(), tmp_path / "C.pt",
                               metadata={"class_names": list(FASHION_MNIST_CLASSES)})
    out = tmp_path / "bundle"
    result = invoke("bundle", "create", str(out), "--generator", str(tmp_path / "G.pt"), "--encoder",
                    str(tmp_path / "E.pt"), "--classifier", f"baseline={tmp_path / 'C.pt'}", "--data", "fashion-mnist",
                    "--name", "tiny", "--command", "cfattack train gan --out runs/gan")
    assert result.exit_code == 0, result.output
    bundle = load_bundle(out)
    assert bundle.default_classifier == "baseline" and bundle.class_index("Ankle boot") == 9
    assert bundle.spec.provenance.commands == ("cfattack train gan --out runs/gan",)
    gen = invoke("generate", "--network", str(out), "--seeds", "0-1", "--out", str(tmp_path / "png"))
    assert gen.exit_code == 0, gen.output
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == ["seed0000.png", "seed0001.png"]
    bad = run_cli("bundle", "create", str(tmp_path / "b2"), "--generator", str(tmp_path / "G.pt"),
                  "--classifier", "no-equals-sign", "--data", "fashion-mnist", "--name", "x")
    assert_one_line_failure(bad, "NAME=FILE")


def test_train_classifier_command(tmp_path):
    cfg = tmp_path / "clf.json"
    cfg.write_text(json.dumps({"max_train_images": 128, "max_eval_images": 64, "batch": 32, "width": 4,
                               "embedding_dim": 8, "warmup_steps": 0}))
    result = invoke("train", "classifier", "--out", str(tmp_path / "clf"), "--config", str(cfg), "--epochs", "1",
                    "--quiet", "--threads", "1")
    assert result.exit_code == 0, result.output
    assert "finished after epoch 1" in result.output and "test: accuracy" in result.output
    assert (tmp_path / "clf" / "classifier.pt").is_file()
    assert_one_line_failure(run_cli("train", "classifier", "--out", str(tmp_path / "x"), "--max-minutes", "1"),
                            "--epochs")
