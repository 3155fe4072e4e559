"""The ``cfattack`` command line: thin click commands over the library.

Every command parses its options, calls the library and prints. Errors a user can cause
(`cfattack.errors.CfattackError`, a bad option, a file system refusal) end the program with
ONE line on stderr and a non-zero exit code; anything unexpected does too, and
``--debug`` (or ``CFATTACK_DEBUG=1``) shows its traceback instead.

Importing this module imports click only; torch and the networks load inside the commands,
so ``cfattack --version`` and ``--help`` answer at once.

Examples::

    cfattack --version
    cfattack doctor
    cfattack generate --network net.pkl --seeds 0-7 --out out/
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import click

from cfattack import __version__
from cfattack.cli_batch import batch
from cfattack.cli_compare import compare
from cfattack.cli_explain import explain
from cfattack.cli_train import bundle_group, metrics, train
from cfattack.errors import CfattackError, InvalidInputError
from cfattack.int_ranges import parse_int_ranges

__all__ = ["cli", "main", "parse_seeds", "parse_vec2"]

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


class _ParsedType(click.ParamType):
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


SEEDS = _ParsedType("seeds", parse_seeds)
VEC2 = _ParsedType("x,y", parse_vec2)


# ---------------------------------------------------------------------------------------------
# Error handling: one line on stderr, never a traceback unless asked for.


def _one_line(text: str) -> str:
    return " ".join(str(text).split()) or "(no message)"


def _describe_os_error(e: OSError) -> str:
    if e.strerror and e.filename:
        target = f" -> {e.filename2}" if e.filename2 else ""
        return f"{e.strerror}: {e.filename}{target}"
    return str(e)


def _debug_requested(argv: list[str]) -> bool:
    return "--debug" in argv or os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _run_guarded(run: Callable[[], Any], argv: list[str]) -> int:
    """Run the click app and turn every failure into one stderr line and an exit code."""
    debug = _debug_requested(argv)

    def fail(message: str, code: int = 1) -> int:
        click.echo(f"cfattack: error: {_one_line(message)}", err=True)
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
        return fail(_describe_os_error(e))
    except Exception as e:  # the last line of defence: still no traceback unless asked for
        if debug:
            raise
        return fail(
            f"unexpected {type(e).__name__}: {e} (to see the traceback, run again as "
            f"'cfattack --debug ...' or with {DEBUG_ENV}=1)"
        )
    return result if isinstance(result, int) else 0


class _GuardedGroup(click.Group):
    """A click group whose `main` applies `_run_guarded`, also under click's CliRunner."""

    def main(  # type: ignore[override]
        self,
        args: list[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        code = _run_guarded(
            lambda: super(_GuardedGroup, self).main(
                argv, prog_name or "cfattack", complete_var, standalone_mode=False, **extra
            ),
            argv,
        )
        if standalone_mode:
            sys.exit(code)
        return code


# ---------------------------------------------------------------------------------------------
# The commands.


@click.group(cls=_GuardedGroup, context_settings={"help_option_names": ["-h", "--help"]}, no_args_is_help=True)
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


@cli.command()
@click.option(
    "--build",
    "build_ops",
    is_flag=True,
    help="Compile (or load from the cache) the CUDA ops now and report the outcome, time and build log.",
)
def doctor(build_ops: bool) -> None:
    """Report versions, CUDA and the backend each StyleGAN3 op will use, and why.

    Exits 0 when cfattack can run here (with or without a GPU), 1 when something it needs
    is broken (torch missing, an invalid CFATTACK_OPS value) or, with --build, when the
    CUDA ops cannot be built. See docs/ops-troubleshooting.md.

    \b
    Examples:
      cfattack doctor
      cfattack doctor --build
      CFATTACK_OPS=ref cfattack doctor
    """
    ok = True
    rows: list[tuple[str, str]] = [
        ("cfattack", f"{__version__} ({Path(__file__).resolve().parent})"),
        ("python", f"{platform.python_version()} ({sys.executable})"),
        ("platform", platform.platform()),
    ]
    try:
        import numpy

        rows.append(("numpy", numpy.__version__))
    except ImportError as e:
        rows.append(("numpy", f"NOT IMPORTABLE: {e}"))
        ok = False
    try:
        import torch
    except ImportError as e:
        torch = None  # type: ignore[assignment]
        rows.append(("torch", f"NOT IMPORTABLE: {e}"))
        ok = False
    if torch is not None:
        rows += _torch_rows(torch)
    rows.append(("nvcc", _nvcc_version()))
    rows.append(("ninja", _tool_version("ninja", "--version")))
    rows.append(("CUDA_HOME", os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH") or "unset"))
    ops_value = os.environ.get("CFATTACK_OPS")
    rows.append(("CFATTACK_OPS", "unset (means auto)" if not ops_value else repr(ops_value)))
    status = None
    if torch is not None:
        try:
            from stylegan3_ops import _build
        except ImportError as e:
            rows.append(("ops build", f"unknown: stylegan3_ops is not importable: {e}"))
        else:
            rows.append(("ops cache", str(_build.cache_root())))
            if build_ops:
                click.echo("building the CUDA ops (a first build takes a few minutes)...", err=True)
            status = _build.build_status(build=build_ops)
            label = "ok: " if status.ok else "" if status.reason.startswith("not built yet") else "FAILED: "
            rows.append(("ops build", label + status.reason))
            if status.seconds is not None:
                rows.append(("ops build time", f"{status.seconds:.1f} s"))
            if status.log_path is not None:
                rows.append(("ops build log", str(status.log_path)))
            if build_ops and not status.ok:
                ok = False
    width = max(len(k) for k, _ in rows) + 2
    for key, value in rows:
        click.echo(f"{key:<{width}}{value}")

    click.echo("\nop backends (choose with CFATTACK_OPS=auto|cuda|ref):")
    if torch is None:
        click.echo("  unknown: torch is not importable")
    else:
        ok = _print_backend_report(cuda_present=torch.cuda.is_available()) and ok
    if build_ops and status is not None and not status.ok:
        click.echo("\nthe CUDA ops could not be built; see docs/ops-troubleshooting.md (CFATTACK_OPS=ref skips them)")
    if not ok:
        raise click.exceptions.Exit(1)


def _torch_rows(torch: Any) -> list[tuple[str, str]]:
    cuda_build = torch.version.cuda
    rows = [("torch", f"{torch.__version__} ({f'CUDA {cuda_build} build' if cuda_build else 'CPU-only build'})")]
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        rows.append(("cuda available", f"yes, {count} device(s)"))
        for i in range(count):
            props = torch.cuda.get_device_properties(i)
            rows.append(
                (f"cuda:{i}", f"{props.name} (compute {props.major}.{props.minor}, {props.total_memory / 2**30:.1f} GiB)")
            )
    else:
        why = "torch has no CUDA support" if not cuda_build else "no CUDA driver or device found"
        rows.append(("cuda available", f"no ({why})"))
    return rows


def _print_backend_report(cuda_present: bool) -> bool:
    """Print the policy's choice per device and op; False when a present device cannot run an op."""
    try:
        from stylegan3_ops._policy import backend_report
    except ImportError as e:
        click.echo(f"  unknown: stylegan3_ops is not importable: {e}")
        return False
    table: list[tuple[str, str, str, str, str]] = []
    for device in ("cpu", "cuda"):
        try:
            report = backend_report(device=device)
        except ValueError as e:  # an invalid CFATTACK_OPS value
            click.echo(f"  invalid setting: {_one_line(str(e))}")
            return False
        for row in report:
            table.append((device, row["op"], row["requested"], row["backend"], row["reason"]))
    header = ("device", "op", "requested", "backend", "reason")
    widths = [max(len(str(r[i])) for r in [header, *table]) for i in range(4)]
    for r in [header, *table]:
        click.echo("  " + "  ".join(f"{str(v):<{w}}" for v, w in zip(r[:4], widths)) + "  " + str(r[4]))
    if not cuda_present:
        click.echo("  (no CUDA device here: the cuda rows say what would happen on one)")
    return all(r[3] != "unavailable" for r in table if r[0] == "cpu" or cuda_present)


def _tool_version(name: str, flag: str) -> str:
    path = shutil.which(name)
    if path is None:
        return "not found on PATH"
    try:
        out = subprocess.run([path, flag], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{path} (cannot run it: {e})"
    first = (out.stdout or out.stderr).strip().splitlines()
    return f"{path} ({first[0] if first else 'no version output'})"


def _nvcc_version() -> str:
    path = shutil.which("nvcc")
    if path is None:
        return "not found on PATH (needed only to build the CUDA ops)"
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{path} (cannot run it: {e})"
    lines = [line.strip() for line in (out.stdout + out.stderr).splitlines() if "release" in line]
    return f"{path} ({lines[-1] if lines else 'no version output'})"


def _generator_file(network: str) -> Path:
    """A generator file from --network: a file, 'default', or a bundle folder (its generator)."""
    path = Path(network)
    if network == "default" or (path.is_dir() and (path / "bundle.json").is_file()):
        from cfattack.bundle import bundle_spec_path, read_bundle_spec

        spec_path = bundle_spec_path(network)
        return spec_path.parent / read_bundle_spec(spec_path).generator.file
    if path.is_dir():
        raise InvalidInputError(f"--network {network}: a folder must be a bundle (with bundle.json)")
    return path


@cli.command()
@click.option("--network", "network", required=True, metavar="PKL_CKPT_OR_BUNDLE",
              help="Official StyleGAN3 pickle (read safely, never executed), a cfattack checkpoint, "
                   "'default' (the shipped bundle's generator) or a bundle folder.")
@click.option("--seeds", required=True, type=SEEDS, help="Seeds to draw z from, e.g. 0-7 or 1,3,5-6.")
@click.option("--out", "outdir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory for seedNNNN.png (created if missing).")
@click.option("--trunc", "truncation_psi", type=float, default=1.0, show_default=True,
              help="Truncation psi: 1 = none, smaller = closer to the average image.")
@click.option("--trunc-cutoff", "truncation_cutoff", type=click.IntRange(min=0), default=None,
              help="Truncate only the first N ws (default: all).")
@click.option("--class", "class_idx", type=click.IntRange(min=0), default=None,
              help="Class index for conditional networks (default: seed mod number of classes); "
                   "refused for unconditional ones.")
@click.option("--noise-mode", type=click.Choice(["const", "random", "none"]), default="const", show_default=True,
              help="Noise mode passed to synthesis.")
@click.option("--translate", type=VEC2, default="0,0", show_default=True,
              help="Translate the image by x,y (in units of the image width/height).")
@click.option("--rotate", type=float, default=0.0, show_default=True, help="Rotate the image by this many degrees.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
              help="Device to run the generator on.")
def generate(
    network: str,
    seeds: list[int],
    outdir: Path,
    truncation_psi: float,
    truncation_cutoff: int | None,
    class_idx: int | None,
    noise_mode: str,
    translate: tuple[float, float],
    rotate: float,
    device: str,
) -> None:
    """Generate images from a StyleGAN3 network, one PNG per seed (like NVIDIA's gen_images.py).

    z for seed s is np.random.RandomState(s).randn(1, z_dim), so a seed gives the same image
    as NVIDIA's tool on the same network. A conditional network draws seed s as class
    s mod (number of classes) unless --class is given. Output files are OUT/seed0000.png, ...

    \b
    Examples:
      cfattack generate --network stylegan3-t-afhqv2-512x512.pkl --seeds 0-3 --out out/
      cfattack generate --network net.pkl --seeds 1,3,5-6 --trunc 0.7 --out out/
      cfattack generate --network cond.pkl --seeds 0-7 --class 2 --rotate 10 --out out/
    """
    import numpy as np
    import torch

    from cfattack.generator import make_transform
    from cfattack.images import save_image
    from cfattack.legacy import load_generator

    if device == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError("--device cuda was given but CUDA is not available here; use --device cpu")
    G = load_generator(_generator_file(network), device=device).eval().requires_grad_(False)

    # Class label: conditional networks take --class, or class (seed mod classes) without it,
    # so a seed range shows every class; unconditional networks take none.
    if G.c_dim > 0:
        if class_idx is not None and class_idx >= G.c_dim:
            raise InvalidInputError(f"--class {class_idx} is out of range: the network has classes 0..{G.c_dim - 1}")
    elif class_idx is not None:
        raise InvalidInputError("--class was given but the network is unconditional (c_dim = 0); leave --class out")

    def label_of(seed: int) -> torch.Tensor:
        c = torch.zeros([1, G.c_dim], device=device)
        if G.c_dim > 0:
            c[:, seed % G.c_dim if class_idx is None else class_idx] = 1
        return c

    # Translation/rotation: synthesis.input.transform holds the inverse of the image transform.
    input_layer = getattr(getattr(G, "synthesis", None), "input", None)
    if input_layer is not None and hasattr(input_layer, "transform"):
        m = np.linalg.inv(make_transform(translate, rotate))
        input_layer.transform.copy_(torch.from_numpy(m))
    elif translate != (0.0, 0.0) or rotate != 0.0:
        raise InvalidInputError("--translate/--rotate need a generator with synthesis.input.transform")

    outdir.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        for i, seed in enumerate(seeds):
            z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).to(device, torch.float32)
            ws = G.mapping(z, label_of(seed), truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
            img = G.synthesis(ws, noise_mode=noise_mode, force_fp32=True)
            path = save_image(img[0], outdir / f"seed{seed:04d}.png")
            click.echo(f"[{i + 1}/{len(seeds)}] {path}")


cli.add_command(explain)
cli.add_command(batch)
cli.add_command(compare)
cli.add_command(train)
cli.add_command(metrics)
cli.add_command(bundle_group)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``cfattack`` console script; returns the exit code.

    Args:
        argv: arguments without the program name; None reads ``sys.argv[1:]``.
    """
    return cli.main(args=argv, prog_name="cfattack", standalone_mode=False)
