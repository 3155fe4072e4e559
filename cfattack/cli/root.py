"""The ``cfattack`` command group: assembles the commands, one module each, and nothing else.

Importing this module imports click only; torch and the networks load inside the commands,
so ``cfattack --version`` and ``--help`` answer at once.

Examples::

    cfattack --version
    cfattack doctor
    cfattack generate --network net.pkl --seeds 0-7 --out out/
"""

from __future__ import annotations

import click

from cfattack import __version__
from cfattack.cli.batch import batch
from cfattack.cli.bundle import bundle_group
from cfattack.cli.common import DEBUG_ENV, GuardedGroup
from cfattack.cli.compare import compare
from cfattack.cli.doctor import doctor
from cfattack.cli.evaluate import evaluate
from cfattack.cli.explain import explain
from cfattack.cli.generate import generate
from cfattack.cli.metrics import metrics
from cfattack.cli.train import train

__all__ = ["cli", "main"]


@click.group(cls=GuardedGroup, context_settings={"help_option_names": ["-h", "--help"]}, no_args_is_help=True)
@click.version_option(__version__, "-V", "--version", prog_name="cfattack", message="%(prog)s %(version)s")
@click.option("--debug", is_flag=True, help=f"Show the full traceback of an error (same as {DEBUG_ENV}=1).")
def cli(debug: bool) -> None:
    """Counterfactual explanations of image classifiers through a StyleGAN3 latent space.

    \b
    Examples:
      cfattack explain examples/trouser-1.png --target dress
      cfattack doctor
      cfattack generate --network default --seeds 0-15 --out out/
      cfattack generate --network stylegan3-t-afhqv2-512x512.pkl --seeds 0-3 --out out/
    """


for _command in (doctor, generate, explain, batch, compare, evaluate, train, metrics, bundle_group):
    cli.add_command(_command)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``cfattack`` console script; returns the exit code.

    Args:
        argv: arguments without the program name; None reads ``sys.argv[1:]``.
    """
    return cli.main(args=argv, prog_name="cfattack", standalone_mode=False)
