"""The ``cfattack`` command line: one module per command, assembled by `cfattack.cli.root`.

Importing this package imports click only; torch and the networks load inside the commands.
"""

from cfattack.cli.root import cli, main

__all__ = ["cli", "main"]
