"""The StyleGAN3 generator and everything that reads or writes it.

``generator`` holds the network (configs T and R, NVIDIA's parameter names); the official
pickle reader never executes the code such files embed; ``checkpoint`` is our own weights-only
format; ``translation`` finds the ws changes that move an image by whole pixels.

The official pickle reader is ``safe_unpickler`` (the restricted unpickler) over
``pickle_records`` (the inert values it rebuilds) and ``file_access`` (bounded, sniffing reads),
with ``official_pickle`` turning records into networks; ``generator_build`` checks the kwargs on
paper (ranges, layer plan, weights described vs present) and builds a Generator
from either format's kwargs and weights, and ``loading`` picks the format by content.
"""

from cfattack.stylegan.checkpoint import (
    CHECKPOINT_FORMAT,
    load_generator_checkpoint,
    read_generator_checkpoint,
    save_generator_checkpoint,
)
from cfattack.stylegan.generator import Generator
from cfattack.stylegan.loading import load_generator
from cfattack.stylegan.official_pickle import NETWORK_KEYS, load_network_pkl
from cfattack.stylegan.pickle_records import PersistentRecord

__all__ = [
    "CHECKPOINT_FORMAT",
    "NETWORK_KEYS",
    "Generator",
    "PersistentRecord",
    "load_generator",
    "load_generator_checkpoint",
    "load_network_pkl",
    "read_generator_checkpoint",
    "save_generator_checkpoint",
]
