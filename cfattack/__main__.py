"""Run the command line as ``python -m cfattack`` (same as the ``cfattack`` console script)."""

from cfattack.cli.root import main

raise SystemExit(main())
