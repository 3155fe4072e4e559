"""``cfattack generate``: images from a generator's seeds (NVIDIA's ``gen_images.py`` workflow).

Example::

    cfattack generate --network default --seeds 0-15 --out out/
"""

from __future__ import annotations

from pathlib import Path

import click

from cfattack.cli.common import SEEDS, VEC2, FiniteFloat, generator_file, out_option, runtime_options, start_command
from cfattack.errors import InvalidInputError

__all__ = ["generate"]


@click.command()
@click.option("--network", "network", required=True, metavar="PKL_CKPT_OR_BUNDLE",
              help="Official StyleGAN3 pickle (read safely, never executed), a cfattack checkpoint, "
                   "'default' (the shipped bundle's generator) or a bundle folder.")
@click.option("--seeds", required=True, type=SEEDS, help="Seeds to draw z from, e.g. 0-7 or 1,3,5-6.")
@out_option("generate", "Directory for seedNNNN.png (created if missing).")
@click.option("--trunc", "truncation_psi", type=FiniteFloat(-100, 100), default=1.0, show_default=True,
              help="Truncation psi: 1 = none, smaller = closer to the average image.")
@click.option("--trunc-cutoff", "truncation_cutoff", type=click.IntRange(min=0), default=None,
              help="Truncate only the first N ws (default: all).")
@click.option("--class", "class_idx", type=click.IntRange(min=0), default=None,
              help="Class index for conditional networks (default: seed mod number of classes); "
                   "refused for unconditional ones.")
@click.option("--noise-mode", type=click.Choice(["const", "random", "none"]), default="const", show_default=True,
              help="Noise mode passed to synthesis.")
@click.option("--translate", type=VEC2, default="0,0", show_default=True,
              help="Translate the image by x,y (in units of the image width/height).")
@click.option("--rotate", type=FiniteFloat(-360, 360), default=0.0, show_default=True,
              help="Rotate the image by this many degrees.")
@runtime_options
def generate(
    network: str,
    seeds: list[int],
    out: Path,
    truncation_psi: float,
    truncation_cutoff: int | None,
    class_idx: int | None,
    noise_mode: str,
    translate: tuple[float, float],
    rotate: float,
    device: str,
    threads: int | None,
    quiet: bool,
) -> None:
    """Generate images from a StyleGAN3 network, one PNG per seed (like NVIDIA's gen_images.py).

    z for seed s is np.random.RandomState(s).randn(1, z_dim), so a seed gives the same image
    as NVIDIA's tool on the same network. A conditional network draws seed s as class
    s mod (number of classes) unless --class is given. Output files are OUT/seed0000.png, ...

    \b
    Examples:
      cfattack generate --network stylegan3-t-afhqv2-512x512.pkl --seeds 0-3 --out out/
      cfattack generate --network net.pkl --seeds 1,3,5-6 --trunc 0.7 --out out/
      cfattack generate --network cond.pkl --seeds 0-7 --class 2 --rotate 10 --out out/
    """
    device = start_command(threads, device)  # before torch loads (OpenMP reads its settings then)
    import numpy as np
    import torch

    from cfattack.images import save_image
    from cfattack.progress import Progress
    from cfattack.stylegan.generator import make_transform
    from cfattack.stylegan.loading import load_generator

    G = load_generator(generator_file(network), device=device).eval().requires_grad_(False)

    # Class label: conditional networks take --class, or class (seed mod classes) without it,
    # so a seed range shows every class; unconditional networks take none.
    if G.c_dim > 0:
        if class_idx is not None and class_idx >= G.c_dim:
            raise InvalidInputError(f"--class {class_idx} is out of range: the network has classes 0..{G.c_dim - 1}")
    elif class_idx is not None:
        raise InvalidInputError("--class was given but the network is unconditional (c_dim = 0); leave --class out")

    def label_of(seed: int) -> torch.Tensor:
        c = torch.zeros([1, G.c_dim], device=device)
        if G.c_dim > 0:
            c[:, seed % G.c_dim if class_idx is None else class_idx] = 1
        return c

    # Translation/rotation: synthesis.input.transform holds the inverse of the image transform.
    input_layer = getattr(getattr(G, "synthesis", None), "input", None)
    if input_layer is not None and hasattr(input_layer, "transform"):
        m = np.linalg.inv(make_transform(translate, rotate))
        input_layer.transform.copy_(torch.from_numpy(m))
    elif translate != (0.0, 0.0) or rotate != 0.0:
        raise InvalidInputError("--translate/--rotate need a generator with synthesis.input.transform")

    out.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), Progress("generate", total=len(seeds), unit="images", quiet=quiet) as bar:
        for i, seed in enumerate(seeds):
            z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).to(device, torch.float32)
            ws = G.mapping(z, label_of(seed), truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
            img = G.synthesis(ws, noise_mode=noise_mode, force_fp32=True)
            path = save_image(img[0], out / f"seed{seed:04d}.png")
            bar.echo(f"[{i + 1}/{len(seeds)}] {path}")
            bar.update()
        bar.close(bar.rate_line("generate", len(seeds), "images"))
