"""File names and the checkpoint format of a ``cfattack train gan`` run folder.

Kept apart from the trainer so that readers of a run (the warm start, the CLI) need not import
the training loop, and the trainer and its warm start do not import each other.
"""

__all__ = ["CHECKPOINT_NAME", "GENERATOR_NAME", "GAN_CHECKPOINT_FORMAT"]

CHECKPOINT_NAME = "checkpoint.pt"
GENERATOR_NAME = "generator.pt"
GAN_CHECKPOINT_FORMAT = "cfattack.gan-training/1"
