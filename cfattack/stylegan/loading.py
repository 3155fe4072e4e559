"""`load_generator`: our Generator from either file format, recognised by content.

Picks between our checkpoint (`cfattack.stylegan.checkpoint`, a zip archive) and an official
StyleGAN3 pickle (`cfattack.stylegan.official_pickle`, its ``G_ema``) from the first bytes,
never from the file name.

Example::

    from cfattack.stylegan.loading import load_generator
    G = load_generator("net.pkl")                               # either format, G_ema only
"""

from __future__ import annotations

import os

import torch

from cfattack.errors import NetworkLoadError
from cfattack.stylegan.checkpoint import load_generator_checkpoint
from cfattack.stylegan.file_access import (
    _ZIP_MAGIC,
    _is_pickle_header,
    _may_be_old_pickle,
    read_head,
)
from cfattack.stylegan.generator import Generator
from cfattack.stylegan.official_pickle import load_network_pkl

__all__ = ["load_generator"]


def load_generator(
    path: str | os.PathLike, device: str | torch.device = "cpu", *, max_bytes: int | None = None
) -> Generator:
    """Our Generator from either a cfattack checkpoint or an official pickle (its ``G_ema``).

    The format is recognised by content (zip archive vs pickle), not by file name. ``max_bytes``
    limits the bytes of the file's tensors (default `cfattack.bounded_pickle.MAX_NETWORK_BYTES`,
    4 GiB, or ``$CFATTACK_MAX_NETWORK_BYTES``). A pickle of protocol 0 or 1 goes to the pickle
    reader too, so that one naming an unsafe global (``posix.system``) is refused as such.

    Raises:
        UnsafePickleError: the file references a global outside the allow-list (nothing ran).
        NetworkLoadError: anything else wrong with the file, in one line.
    """
    source, head = read_head(path)
    if head == _ZIP_MAGIC:
        return load_generator_checkpoint(path, device, max_bytes=max_bytes)
    if _is_pickle_header(head) or _may_be_old_pickle(head):
        return load_network_pkl(path, device=device, load=("G_ema",), max_bytes=max_bytes)["G_ema"]
    raise NetworkLoadError(
        f"{source}: not a generator file (expected a cfattack checkpoint or an official StyleGAN3 network pickle)"
    )
