"""``cfattack doctor``: versions, CUDA, and which backend each StyleGAN3 op will use, and why."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import click

from cfattack import __version__
from cfattack.cli.common import one_line, threads_option

__all__ = ["doctor"]


@click.command()
@click.option(
    "--build",
    "build_ops",
    is_flag=True,
    help="Compile (or load from the cache) the CUDA ops now and report the outcome, time and build log.",
)
@threads_option
def doctor(build_ops: bool, threads: int | None) -> None:
    """Report versions, CUDA and the backend each StyleGAN3 op will use, and why.

    Exits 0 when cfattack can run here (with or without a GPU), 1 when something it needs
    is broken (torch missing, an invalid CFATTACK_OPS value) or, with --build, when the
    CUDA ops cannot be built. See docs/ops-troubleshooting.md. The "cpu threads" row says how
    many torch threads the commands would use here, and why (--threads shows the effect of one).

    \b
    Examples:
      cfattack doctor
      cfattack doctor --build
      CFATTACK_OPS=ref cfattack doctor
    """
    ok = True
    rows: list[tuple[str, str]] = [
        ("cfattack", f"{__version__} ({Path(__file__).resolve().parents[1]})"),
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
    rows.append(("cpu threads", _threads_row(threads)))
    ok = ok and not rows[-1][1].startswith("INVALID")
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
            click.echo(f"  invalid setting: {one_line(str(e))}")
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


def _threads_row(threads: int | None) -> str:
    from cfattack.errors import InvalidInputError
    from cfattack.threads import choose_threads, physical_cores

    try:
        choice = choose_threads(threads)
    except InvalidInputError as e:
        return f"INVALID: {e}"
    wait = os.environ.get("OMP_WAIT_POLICY")
    return (f"{choice.count} (from {choice.reason}; this machine: {physical_cores()} physical cores, "
            f"{os.cpu_count()} logical); OpenMP wait policy {wait or 'PASSIVE (set by cfattack)'}")


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
