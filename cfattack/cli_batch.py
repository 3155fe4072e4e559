"""Old module path of the batch command for ``torchrun -m cfattack.cli_batch``.

Deprecated: kept for one release; use ``torchrun ... -m cfattack.cli.batch``.
"""

from cfattack.cli.batch import batch, main

__all__ = ["batch", "main"]

if __name__ == "__main__":
    raise SystemExit(main())
