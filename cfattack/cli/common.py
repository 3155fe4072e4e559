"""What every ``cfattack`` command shares: one-line error handling, option types and parsers.

Errors a user can cause (`cfattack.errors.CfattackError`, a bad option, a file system refusal)
end the program with ONE line on stderr and a non-zero exit code; anything unexpected does
too, and ``--debug`` (or ``CFATTACK_DEBUG=1``) shows its traceback instead. The command modules
and the root group import from here; nothing here imports a command.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable

import click

from cfattack.errors import CfattackError, InvalidInputError
from cfattack.int_ranges import parse_int_ranges

__all__ = [
    "DEBUG_ENV",
    "GuardedGroup",
    "ParsedType",
    "SEEDS",
    "VEC2",
    "describe_os_error",
    "generator_file",
    "one_line",
    "parse_seeds",
    "parse_vec2",
    "run_guarded",
]

DEBUG_ENV = "CFATTACK_DEBUG"
MAX_SEEDS = 100_000
_SEED_MAX = 2**32 - 1  # np.random.RandomState accepts seeds in [0, 2**32 - 1]
# click >= 8.2 raises this for a bare `cfattack`; older click prints the help itself.
_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


# ---------------------------------------------------------------------------------------------
# Option parsing helpers (pure, tested directly).


def parse_seeds(text: str) -> list[int]:
    """Seeds from a list of integers and inclusive ranges, e.g. ``"0-7"`` or ``"1,3,5-6"``.

    Returns the seeds in the order given, each once.

    Raises:
        InvalidInputError: malformed text, a seed outside [0, 2**32 - 1], a reversed range or
            more than `MAX_SEEDS` seeds.
    """
    return parse_int_ranges(text, noun="seed", example="0-7 or 1,3,5-6", maximum=_SEED_MAX, max_count=MAX_SEEDS)


def parse_vec2(text: str) -> tuple[float, float]:
    """Two comma-separated floats, e.g. ``"0.1,-0.2"`` -> (0.1, -0.2)."""
    parts = str(text).split(",")
    try:
        if len(parts) != 2:
            raise ValueError
        x, y = (float(p) for p in parts)
    except ValueError:
        raise InvalidInputError(f"expected two comma-separated numbers like 0.1,-0.2; got {text!r}") from None
    if not all(map(_finite, (x, y))):
        raise InvalidInputError(f"expected finite numbers; got {text!r}")
    return x, y


def _finite(v: float) -> bool:
    return v == v and v not in (float("inf"), float("-inf"))


class ParsedType(click.ParamType):
    """A click type built from one of the parsers above (their errors become usage errors)."""

    def __init__(self, name: str, parser: Callable[[str], Any]) -> None:
        self.name = name
        self._parser = parser

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return self._parser(value)
        except InvalidInputError as e:
            self.fail(str(e), param, ctx)


SEEDS = ParsedType("seeds", parse_seeds)
VEC2 = ParsedType("x,y", parse_vec2)


# ---------------------------------------------------------------------------------------------
# Error handling: one line on stderr, never a traceback unless asked for.


def one_line(text: str) -> str:
    return " ".join(str(text).split()) or "(no message)"


def describe_os_error(e: OSError) -> str:
    if e.strerror and e.filename:
        target = f" -> {e.filename2}" if e.filename2 else ""
        return f"{e.strerror}: {e.filename}{target}"
    return str(e)


def debug_requested(argv: list[str]) -> bool:
    return "--debug" in argv or os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def run_guarded(run: Callable[[], Any], argv: list[str]) -> int:
    """Run the click app and turn every failure into one stderr line and an exit code."""
    debug = debug_requested(argv)

    def fail(message: str, code: int = 1) -> int:
        click.echo(f"cfattack: error: {one_line(message)}", err=True)
        return code

    try:
        result = run()
    except _NO_ARGS_IS_HELP as e:
        click.echo(e.ctx.get_help())  # plain `cfattack`: show the help, as --help would
        return 0
    except click.UsageError as e:
        hint = f" (see '{e.ctx.command_path} --help')" if e.ctx is not None else ""
        return fail(e.format_message() + hint, e.exit_code)
    except click.ClickException as e:
        return fail(e.format_message(), e.exit_code)
    except click.Abort:
        return fail("aborted", 130)
    except KeyboardInterrupt:
        return fail("interrupted", 130)
    except CfattackError as e:
        if debug:
            raise
        return fail(str(e))
    except OSError as e:
        if debug:
            raise
        return fail(describe_os_error(e))
    except Exception as e:  # the last line of defence: still no traceback unless asked for
        if debug:
            raise
        return fail(
            f"unexpected {type(e).__name__}: {e} (to see the traceback, run again as "
            f"'cfattack --debug ...' or with {DEBUG_ENV}=1)"
        )
    return result if isinstance(result, int) else 0


class GuardedGroup(click.Group):
    """A click group whose `main` applies `run_guarded`, also under click's CliRunner."""

    def main(  # type: ignore[override]
        self,
        args: list[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        code = run_guarded(
            lambda: super(GuardedGroup, self).main(
                argv, prog_name or "cfattack", complete_var, standalone_mode=False, **extra
            ),
            argv,
        )
        if standalone_mode:
            sys.exit(code)
        return code


def generator_file(network: str) -> Path:
    """A generator file from --network: a file, 'default', or a bundle folder (its generator)."""
    path = Path(network)
    if network == "default" or (path.is_dir() and (path / "bundle.json").is_file()):
        from cfattack.bundle import bundle_spec_path, read_bundle_spec

        spec_path = bundle_spec_path(network)
        return spec_path.parent / read_bundle_spec(spec_path).generator.file
    if path.is_dir():
        raise InvalidInputError(f"--network {network}: a folder must be a bundle (with bundle.json)")
    return path
