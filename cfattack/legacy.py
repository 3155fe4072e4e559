"""Old import path of the official-pickle reader and our generator checkpoints.

Deprecated: kept for one release so that ``from cfattack.legacy import load_network_pkl``
keeps working; import from `cfattack.stylegan` (or the top-level ``cfattack``) instead.
"""

from cfattack.errors import NetworkLoadError, UnsafePickleError
from cfattack.stylegan.checkpoint import (
    CHECKPOINT_FORMAT,
    load_generator_checkpoint,
    read_generator_checkpoint,
    save_generator_checkpoint,
)
from cfattack.stylegan.loading import load_generator
from cfattack.stylegan.official_pickle import NETWORK_KEYS, load_network_pkl
from cfattack.stylegan.pickle_records import PersistentRecord

__all__ = [
    "CHECKPOINT_FORMAT",
    "NETWORK_KEYS",
    "NetworkLoadError",
    "PersistentRecord",
    "UnsafePickleError",
    "load_generator",
    "load_generator_checkpoint",
    "load_network_pkl",
    "read_generator_checkpoint",
    "save_generator_checkpoint",
]
