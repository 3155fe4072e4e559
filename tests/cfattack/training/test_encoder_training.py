"""Encoder training: loss falls, resume is exact, the shipped file reloads."""

from __future__ import annotations

import json

import pytest
import torch

from cfattack.config import EncoderTrainingConfig
from cfattack.inversion.encoder import Encoder, load_encoder_checkpoint, save_encoder_checkpoint
from cfattack.errors import NetworkLoadError
from cfattack.stylegan.generator import Generator
from cfattack.stylegan.checkpoint import save_generator_checkpoint
from cfattack.training.data import ImageDataset
from cfattack.training.encoder import ENCODER_NAME, sample_training_ws, train_encoder


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    """A small random generator on disk and 'real' images drawn from it (so they are invertible)."""
    root = tmp_path_factory.mktemp("world")
    torch.manual_seed(0)
    G = Generator(z_dim=16, c_dim=0, w_dim=16, img_resolution=32, img_channels=1, channel_base=256,
                  channel_max=8, num_layers=3, num_critical=1, margin_size=2).eval()
    path = save_generator_checkpoint(G, root / "G.pt")
    with torch.no_grad():
        images = G(torch.randn(48, 16), None).clamp(-1, 1)
    data = ImageDataset(images, torch.zeros(48, dtype=torch.long), ("x",), "tiny", "all")
    return path, data


def _config(path, **kw):
    base = dict(generator=str(path), channels=8, channel_max=16, batch=8, total_kimg=0.08, snapshot_kimg=0.04,
                eval_images=16, seed=1, threads=1, lr=3e-3)
    return EncoderTrainingConfig(**{**base, **kw})


def test_training_reduces_loss_and_split_run_is_exact(tmp_path, tiny_world):
    path, data = tiny_world
    cfg = _config(path)
    whole = train_encoder(cfg, tmp_path / "whole", progress=False, train_data=data, eval_data=data)
    train_encoder(cfg, tmp_path / "split", progress=False, train_data=data, eval_data=data, max_steps=4)
    split = train_encoder(cfg, tmp_path / "split", progress=False, train_data=data, eval_data=data)
    assert whole.finished and split.finished and whole.step == split.step == 10
    a = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=True)["E"]
    b = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)["E"]
    for k in a:
        assert torch.equal(a[k], b[k]), k
    log = [json.loads(x) for x in (tmp_path / "whole" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["loss_latent"] < log[0]["loss_latent"] or log[-1]["val_psnr"] > log[0]["val_psnr"]
    E = load_encoder_checkpoint(tmp_path / "whole" / ENCODER_NAME)
    assert E.num_ws == 5 and E(data.images[:2]).shape == (2, 5, 16)


def test_w_mode_predicts_one_latent_for_all_layers(tmp_path, tiny_world):
    path, data = tiny_world
    train_encoder(_config(path, latent="w", total_kimg=0.016), tmp_path, progress=False, train_data=data, eval_data=data)
    E = load_encoder_checkpoint(tmp_path / ENCODER_NAME)
    ws = E(data.images[:3])
    assert torch.allclose(ws, ws[:, :1].expand_as(ws))


def test_sample_training_ws_mixes_and_truncates():
    torch.manual_seed(0)
    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=1, channel_base=128, channel_max=8,
                  num_layers=3, num_critical=1, margin_size=2)
    G.mapping.w_avg.normal_()
    rng = torch.Generator().manual_seed(0)
    ws = sample_training_ws(G, 64, 0.5, 1.0, rng, torch.device("cpu"))
    assert ws.shape == (64, G.num_ws, 8)
    differs = (ws[:, :1] - ws).abs().amax(dim=2) > 1e-6
    assert differs.any(), "style mixing should make some layers differ"
    flat = sample_training_ws(G, 16, 1.0, 0.0, rng, torch.device("cpu"))
    assert torch.allclose(flat, flat[:, :1].expand_as(flat))


def test_encoder_starts_at_w_avg_and_checkpoint_errors(tmp_path):
    w_avg = torch.randn(8)
    E = Encoder(16, 1, num_ws=5, w_dim=8, channels=4, channel_max=8, w_avg=w_avg)
    ws = E(torch.randn(2, 1, 16, 16))
    assert torch.allclose(ws, w_avg.expand(2, 5, 8))
    save_encoder_checkpoint(E, tmp_path / "e.pt")
    assert torch.equal(load_encoder_checkpoint(tmp_path / "e.pt").w_avg, w_avg)
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(NetworkLoadError):
        load_encoder_checkpoint(tmp_path / "bad.pt")
    with pytest.raises(NetworkLoadError, match="does not exist"):
        load_encoder_checkpoint(tmp_path / "missing.pt")
    torch.save({"format": "something-else"}, tmp_path / "other.pt")
    with pytest.raises(NetworkLoadError, match="not a cfattack encoder"):
        load_encoder_checkpoint(tmp_path / "other.pt")
    with pytest.raises(ValueError, match="latent"):
        Encoder(16, 1, 5, 8, latent="z")
