"""What every ``cfattack`` command shares: one-line error handling, option types and parsers.

Errors a user can cause (`cfattack.errors.CfattackError`, a bad option, a file system refusal)
end the program with ONE line on stderr and a non-zero exit code; anything unexpected does
too, and ``--debug`` (or ``CFATTACK_DEBUG=1``) shows its traceback instead. Exit codes: 2 for
a usage error (an unknown option, a value an option type refuses: malformed, NaN, infinite or
out of range), 1 for everything else (bad input files, failures), 130 for an interrupt.
The command modules and the root group import from here; nothing here imports a command.

Numeric options use the validated types below (`FiniteFloat`, `SEED`, `DEVICE`), so a value such
as ``nan``, ``inf`` or ``1e23`` is refused while parsing, in one line naming the option. Every
command that runs networks takes the same ``--device`` (default ``auto``), ``--threads`` and
``--quiet`` (`runtime_options`, applied by `start_command`), and every command that writes a
folder defaults ``--out`` to one named after it in the current directory (`default_out`).
"""

from __future__ import annotations

import math
import os
import re
import sys
from pathlib import Path
from typing import Any, Callable

import click

from cfattack.errors import CfattackError, InvalidInputError
from cfattack.int_ranges import parse_int_ranges
from cfattack.regular_files import open_regular_file, printable_path

__all__ = [
    "DEBUG_ENV",
    "DEVICE",
    "DeviceType",
    "FiniteFloat",
    "GuardedGroup",
    "ParsedType",
    "SEED",
    "SEEDS",
    "VEC2",
    "default_out",
    "describe_os_error",
    "device_option",
    "generator_file",
    "one_line",
    "parse_seeds",
    "out_option",
    "parse_vec2",
    "quiet_option",
    "require_input_file",
    "resolve_device",
    "run_guarded",
    "runtime_options",
    "start_command",
    "threads_option",
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


class FiniteFloat(click.FloatRange):
    """A float option that refuses NaN and infinity, then checks its range (bounds as click.FloatRange).

    ``FiniteFloat(0, 10, min_open=True)`` accepts 0 < x <= 10; ``--lr nan`` fails with
    "'nan' is not a finite number", ``--lr 1e9`` with click's range message.
    """

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return super().convert(number, param, ctx)


class _SeedType(click.IntRange):
    """An integer in [0, 2**32 - 1]; a value of many digits is refused without echoing all of them."""

    name = "integer"  # click says "not a valid integer range" otherwise

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and len(value.strip()) > 24:
            self.fail(f"{value.strip()[:20]}... is not in the range 0<=x<={_SEED_MAX}.", param, ctx)
        return super().convert(value, param, ctx)


SEED = _SeedType(0, _SEED_MAX)
"""A single seed: an integer in [0, 2**32 - 1] (``--seed 1e23`` or ``-1`` is a usage error)."""

_DEVICE_PATTERN = re.compile(r"auto|(cpu|cuda|mps)(:\d{1,3})?")


class DeviceType(click.ParamType):
    """A torch device: ``auto`` (CUDA when torch sees a GPU, else the CPU), ``cpu``, ``cuda``, ``cuda:N``
    or ``mps``. Only the spelling is checked here; `resolve_device` checks that the device exists."""

    name = "device"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        text = str(value).strip().lower()
        if not _DEVICE_PATTERN.fullmatch(text):
            self.fail(f"{value!r} is not a device; use auto, cpu, cuda, cuda:N or mps.", param, ctx)
        return text


DEVICE = DeviceType()


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU (one per local rank under torchrun), else ``cpu``; any
    other device is checked to exist.

    Raises:
        InvalidInputError: ``cuda[:N]`` without a CUDA GPU (or without GPU N), ``mps`` without MPS.
    """
    import torch

    if device == "auto":
        # Under torchrun each local rank takes GPU LOCAL_RANK, so CUDA only when there is one for each.
        ranks = os.environ.get("LOCAL_WORLD_SIZE", "").strip()
        needed = int(ranks) if ranks.isdigit() and int(ranks) > 0 else 1
        return "cuda" if torch.cuda.is_available() and torch.cuda.device_count() >= needed else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InvalidInputError(f"--device {device}: no CUDA GPU is visible to torch (see 'cfattack doctor')")
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise InvalidInputError(f"--device {device}: torch sees {torch.cuda.device_count()} CUDA GPU(s), "
                                    f"numbered from 0")
    if device.startswith("mps") and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise InvalidInputError(f"--device {device}: MPS is not available here")
    return device


def default_out(command: str) -> Path:
    """Where a command writes without ``--out``: a folder named after it in the current directory.

    ``default_out("batch") == Path("batch")``; ``default_out("train gan") == Path("train-gan")``.
    """
    return Path(command.replace(" ", "-"))


def out_option(command: str, what: str, file_okay: bool = False) -> Callable[[Any], Any]:
    """``--out`` of ``command``, defaulting to `default_out`; ``what`` says what goes there."""
    return click.option("--out", "out", type=click.Path(file_okay=file_okay, dir_okay=not file_okay, path_type=Path),
                        default=default_out(command), show_default=True, help=what)


device_option = click.option(
    "--device", type=DEVICE, default="auto", show_default=True,
    help="auto (CUDA when torch sees a GPU, else the CPU), cpu, cuda, cuda:N or mps.")
threads_option = click.option(
    "--threads", type=click.IntRange(1, 4096), default=None,
    help="torch CPU threads [default: $CFATTACK_THREADS, else $OMP_NUM_THREADS, else the physical cores, "
         "shared between the local ranks under torchrun].")
quiet_option = click.option(
    "--quiet", is_flag=True,
    help="Print no progress, not even the final summary on stderr (a bar is drawn only when stderr is a "
         "terminal).")


def runtime_options(command: Any) -> Any:
    """Add ``--device``, ``--threads`` and ``--quiet``, the same in every command (see `start_command`)."""
    for option in (quiet_option, threads_option, device_option):
        command = option(command)
    return command


def start_command(threads: int | None, device: str | None = None) -> str:
    """Set torch's threads (`cfattack.threads.use_threads`) and resolve ``device``; returns the device.

    Call it first in a command, before anything imports torch, so the OpenMP settings apply.
    """
    from cfattack.threads import use_threads

    use_threads(threads)
    return resolve_device(device) if device is not None else "cpu"


def require_input_file(path: str | os.PathLike, what: str = "image file") -> None:
    """Refuse, before any work, an input that is missing or not a regular file (a folder, FIFO, device...).

    Raises:
        InvalidInputError: see `cfattack.regular_files.open_regular_file` (exit code 1).
    """
    with open_regular_file(path, what=what):
        pass


def _refuse_undecodable(argv: list[str]) -> None:
    """Refuse an argument holding bytes that are not UTF-8 (always a file name) before any work."""
    for arg in argv:
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidInputError(
                f"{printable_path(arg)}: this argument is not valid UTF-8 (a file name with undecodable bytes?); "
                "cfattack writes names into UTF-8 reports, so rename the file"
            ) from None


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
        trust = sys.modules.get("cfattack.bundle.trust")  # loaded only if a bundle was
        if trust is not None:
            trust.exit_if_code_still_runs(code)  # a bundle's code overran its time limit and still runs
        return code

    try:
        _refuse_undecodable(argv)
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
    except UnicodeEncodeError as e:
        if debug:
            raise
        near = e.object[max(0, e.start - 60):e.end + 20] if isinstance(e.object, str) else ""
        return fail(f"a name is not valid UTF-8 and cannot be written into a UTF-8 file (near "
                    f"{printable_path(near)!r}); rename the file")
    except Exception as e:  # the last line of defence: still no traceback unless asked for
        if debug:
            raise
        validation = _validation_message(e)
        if validation is not None:
            return fail(validation)
        return fail(
            f"unexpected {type(e).__name__}: {e} (to see the traceback, run again as "
            f"'cfattack --debug ...' or with {DEBUG_ENV}=1)"
        )
    return result if isinstance(result, int) else 0


def _validation_message(e: Exception) -> str | None:
    """One line for a pydantic ValidationError (a setting out of range), None for anything else."""
    pydantic = sys.modules.get("pydantic")
    if pydantic is None or not isinstance(e, pydantic.ValidationError):
        return None
    first = e.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or e.title
    return f"invalid setting {where}: {first['msg']}"


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
        from cfattack.bundle import bundle_file, bundle_spec_path, read_bundle_spec

        spec_path = bundle_spec_path(network)
        return bundle_file(spec_path, read_bundle_spec(spec_path).generator.file)
    if path.is_dir():
        raise InvalidInputError(f"--network {network}: a folder must be a bundle (with bundle.json)")
    return path
