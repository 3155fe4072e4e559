"""`train encoder --generator G.pkl --data FOLDER`: an official pickle and an RGB image folder."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from cfattack.config import EncoderTrainingConfig
from cfattack.inversion.encoder import load_encoder_checkpoint
from cfattack.stylegan.generator import Generator
from cfattack.training.encoder import ENCODER_NAME, train_encoder
from tests.tools.make_official_pickle import write_official_pickle


def test_rgb_folder_is_read_at_the_official_generators_size(tmp_path, one_thread):
    torch.manual_seed(0)
    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3, channel_base=128, channel_max=8,
                  num_layers=3, num_critical=1, margin_size=2).eval()
    pkl = write_official_pickle(tmp_path / "G.pkl", G)
    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):  # root/<class>/*.png, larger than the generator's images
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(5):
            Image.fromarray((rng.random((24, 24, 3)) * 255).astype(np.uint8)).save(tmp_path / "data" / name / f"{i}.png")
    config = EncoderTrainingConfig(generator=str(pkl), data=str(tmp_path / "data"), channels=4, channel_max=8, batch=4,
                                   total_kimg=0.004, snapshot_kimg=0.004, eval_images=2, threads=1)
    result = train_encoder(config, tmp_path / "run", progress=False)
    assert result.finished and result.step == 1
    E = load_encoder_checkpoint(tmp_path / "run" / ENCODER_NAME)
    assert (E.img_resolution, E.img_channels, E.num_ws) == (16, 3, G.num_ws)
