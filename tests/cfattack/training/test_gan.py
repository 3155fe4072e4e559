"""GAN training: losses move, checkpoints resume exactly, outputs are usable generators."""

from __future__ import annotations

import json

import pytest
import torch

from cfattack.config import GanTrainingConfig, GeneratorLayout
from cfattack.errors import InvalidInputError
from cfattack.stylegan.loading import load_generator
from cfattack.training.data import FASHION_MNIST_DIR, ImageDataset, load_fashion_mnist
from cfattack.training.discriminator import Discriminator
from cfattack.training.gan import CHECKPOINT_NAME, GENERATOR_NAME, train_gan, translate_images

TINY = dict(
    generator=GeneratorLayout(z_dim=16, w_dim=16, channel_base=256, channel_max=8, num_layers=3,
                              num_critical=1, margin_size=2),
    d_channel_base=256, d_channel_max=8, batch=8, total_kimg=0.064, snapshot_kimg=0.032,
    r1_interval=2, seed=3, threads=1,
)


@pytest.fixture(scope="module")
def tiny_data() -> ImageDataset:
    if FASHION_MNIST_DIR.is_dir():
        return load_fashion_mnist("val").subset(torch.arange(64))
    # Fall back to a synthetic set of bright squares so the mechanics are still tested.
    gen = torch.Generator().manual_seed(0)
    images = torch.full((64, 1, 32, 32), -1.0)
    for i in range(64):
        x, y = torch.randint(2, 20, (2,), generator=gen).tolist()
        images[i, :, y:y + 10, x:x + 10] = 1.0
    return ImageDataset(images, torch.arange(64) % 2, ("a", "b"), "squares", "val")


def _params(path):
    state = torch.load(path / CHECKPOINT_NAME, weights_only=True)
    return {k: v.clone() for part in ("G", "D", "G_ema") for k, v in state[part].items()}, state


def test_split_run_continues_exactly_like_an_unbroken_run(tmp_path, tiny_data):
    cfg = GanTrainingConfig(**TINY)
    whole = train_gan(cfg, tmp_path / "whole", progress=False, data=tiny_data)
    assert whole.finished and whole.step == 8
    first = train_gan(cfg, tmp_path / "split", progress=False, data=tiny_data, max_steps=3)
    assert not first.finished and first.step == 3
    second = train_gan(cfg, tmp_path / "split", progress=False, data=tiny_data)
    assert second.finished and second.step == 8
    a, state_a = _params(tmp_path / "whole")
    b, state_b = _params(tmp_path / "split")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert torch.equal(state_a["rng"], state_b["rng"])
    # Training really changed the weights, the EMA trails G, and outputs exist.
    torch.manual_seed(TINY["seed"])
    for name in ("samples/grid_000000.png", "config.json", "log.jsonl", GENERATOR_NAME):
        assert (tmp_path / "whole" / name).exists(), name
    log = [json.loads(line) for line in (tmp_path / "whole" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 8 and all(torch.isfinite(torch.tensor(r["loss_d"])) for r in log)


def test_shipped_generator_file_loads_and_generates(tmp_path, tiny_data):
    cfg = GanTrainingConfig(**{**TINY, "total_kimg": 0.016})
    train_gan(cfg, tmp_path, progress=False, data=tiny_data)
    G = load_generator(tmp_path / GENERATOR_NAME)
    state = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)["G_ema"]
    for k, v in G.state_dict().items():
        assert torch.equal(v, state[k]), k
    img = G(torch.randn(2, G.z_dim), None, noise_mode="const")
    assert img.shape == (2, 1, 32, 32) and torch.isfinite(img).all()


def test_resume_refuses_a_different_config(tmp_path, tiny_data):
    train_gan(GanTrainingConfig(**{**TINY, "total_kimg": 0.008}), tmp_path, progress=False, data=tiny_data)
    with pytest.raises(InvalidInputError, match="different training config"):
        train_gan(GanTrainingConfig(**{**TINY, "g_lr": 0.001}), tmp_path, progress=False, data=tiny_data)
    # Extending the run (total_kimg) is allowed.
    longer = train_gan(GanTrainingConfig(**{**TINY, "total_kimg": 0.016}), tmp_path, progress=False, data=tiny_data)
    assert longer.step == 2


def test_resume_on_another_device_string_is_allowed(tmp_path, tiny_data):
    """A run started on one device may continue on another (GPU pieces, CPU pieces)."""
    train_gan(GanTrainingConfig(**{**TINY, "total_kimg": 0.008}), tmp_path, progress=False, data=tiny_data)
    more = train_gan(GanTrainingConfig(**{**TINY, "total_kimg": 0.016, "device": "cpu:0"}), tmp_path,
                     progress=False, data=tiny_data)
    assert more.step == 2


def test_conditional_training_runs(tmp_path, tiny_data):
    cfg = GanTrainingConfig(**{**TINY, "total_kimg": 0.016, "conditional": True})
    result = train_gan(cfg, tmp_path, progress=False, data=tiny_data)
    G = load_generator(tmp_path / GENERATOR_NAME)
    assert G.c_dim == tiny_data.num_classes and result.step == 2


def test_dataset_shape_mismatch_is_a_clear_error(tmp_path, tiny_data):
    with pytest.raises(InvalidInputError, match="config expects"):
        train_gan(GanTrainingConfig(**{**TINY, "resolution": 16}), tmp_path, progress=False, data=tiny_data)


def test_translate_images_shifts_whole_pixels_and_keeps_gradients():
    x = torch.arange(2 * 1 * 8 * 8, dtype=torch.float32).view(2, 1, 8, 8).requires_grad_(True)
    y = translate_images(x, 0.25, torch.Generator().manual_seed(0))
    assert y.shape == x.shape
    # Every output value is some input value of the same image (pure shifts with border repeat).
    for i in range(2):
        assert set(y[i].flatten().tolist()) <= set(x[i].flatten().tolist())
    y.sum().backward()
    assert x.grad is not None and float(x.grad.sum()) == pytest.approx(128.0)
    assert translate_images(x, 0.0, torch.Generator()) is x


@pytest.mark.parametrize("c_dim", [0, 3])
def test_discriminator_shapes_and_gradients(c_dim):
    D = Discriminator(c_dim=c_dim, img_resolution=32, img_channels=1, channel_base=256, channel_max=16)
    img = torch.randn(6, 1, 32, 32, requires_grad=True)
    c = torch.eye(3)[[0, 1, 2, 0, 1, 2]] if c_dim else None
    logits = D(img, c)
    assert logits.shape == (6, 1)
    (grad,) = torch.autograd.grad(logits.sum(), img, create_graph=True)  # R1 needs second order
    (grad.square().sum() + logits.sum()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in D.parameters())
    with pytest.raises(ValueError, match="power of two"):
        Discriminator(c_dim=0, img_resolution=24, img_channels=1)


def test_warm_start_adds_class_conditioning_on_top_of_the_source_networks(tmp_path, tiny_data):
    train_gan(GanTrainingConfig(**TINY), tmp_path / "src", progress=False, data=tiny_data)
    src = torch.load(tmp_path / "src" / CHECKPOINT_NAME, weights_only=True)
    cfg = GanTrainingConfig(**{**TINY, "conditional": True, "init_from": str(tmp_path / "src")})
    train_gan(cfg, tmp_path / "cond", progress=False, data=tiny_data, max_steps=0)
    dst = torch.load(tmp_path / "cond" / CHECKPOINT_NAME, weights_only=True)
    assert dst["step"] == 0 and dst["images_seen"] == 0  # a new run, not a resumed one

    G_src, G_dst = (load_generator(p / GENERATOR_NAME) for p in (tmp_path / "src", tmp_path / "cond"))
    assert G_src.c_dim == 0 and G_dst.c_dim == tiny_data.num_classes
    z = torch.randn(6, G_src.z_dim, generator=torch.Generator().manual_seed(1))
    reference = G_src(z, None, noise_mode="const")
    labels = [torch.nn.functional.one_hot(torch.full((6,), k), tiny_data.num_classes).float()
              for k in range(tiny_data.num_classes)]
    # The label columns start at a fresh initialisation's scale, so labels change the images ...
    fc0 = G_dst.mapping.fc0.weight
    label_columns = fc0[:, G_src.z_dim:]
    assert 0.5 < float(label_columns.std() * G_dst.mapping.fc0.weight_gain * fc0.shape[1] ** 0.5) < 2
    assert not torch.allclose(G_dst(z, labels[0], noise_mode="const"), G_dst(z, labels[1], noise_mode="const"))
    # ... and everything else is the source: with them switched off, every label gives its images.
    with torch.no_grad():
        label_columns.zero_()
    for c in labels:
        torch.testing.assert_close(G_dst(z, c, noise_mode="const"), reference, atol=1e-5, rtol=1e-5)

    D_kwargs = dict(img_resolution=32, img_channels=1, channel_base=TINY["d_channel_base"],
                    channel_max=TINY["d_channel_max"])
    D_src, D_dst = Discriminator(c_dim=0, **D_kwargs), Discriminator(c_dim=tiny_data.num_classes, **D_kwargs)
    D_src.load_state_dict(src["D"])
    D_dst.load_state_dict(dst["D"])
    x = tiny_data.images[:8]
    c = torch.nn.functional.one_hot(tiny_data.labels[:8], tiny_data.num_classes).float()
    torch.testing.assert_close(D_dst(x, c), D_src(x, None), atol=1e-5, rtol=1e-5)
    # The label embedding is reachable by gradients from the first step.
    D_dst(x, c).sum().backward()
    assert D_dst.embed.weight.grad.abs().sum() > 0

    # Training on moves away from the source, and the run resumes like any other.
    more = train_gan(cfg, tmp_path / "cond", progress=False, data=tiny_data, max_steps=2)
    assert more.step == 2


def test_warm_start_refuses_a_different_layout_or_a_non_checkpoint(tmp_path, tiny_data):
    train_gan(GanTrainingConfig(**{**TINY, "total_kimg": 0.008}), tmp_path / "src", progress=False, data=tiny_data)
    wider = {**TINY, "d_channel_max": 16, "init_from": str(tmp_path / "src")}
    with pytest.raises(InvalidInputError, match="same network layout.*d_channel_max"):
        train_gan(GanTrainingConfig(**wider), tmp_path / "a", progress=False, data=tiny_data)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InvalidInputError, match="cannot read warm-start checkpoint"):
        train_gan(GanTrainingConfig(**{**TINY, "init_from": str(tmp_path / "junk.pt")}), tmp_path / "b",
                  progress=False, data=tiny_data)
