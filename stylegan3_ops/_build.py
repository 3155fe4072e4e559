"""Lazy, cached, locked and logged build of the CUDA kernels in ``csrc/``.

Nothing here runs at import. The first CUDA call of an op (or ``cfattack doctor --build``)
calls :func:`build_extension`, which:

1. checks the prerequisites (a CUDA build of torch, nvcc, ninja) and says which is missing;
2. derives a cache directory from a hash of the sources, torch's version, its CUDA
   version, nvcc's version, the target architectures and the Python version, under
   ``$CFATTACK_CACHE/ops``, else ``$TORCH_EXTENSIONS_DIR/cfattack_ops``, else
   ``~/.cache/cfattack/ops``;
3. takes a file lock next to it, so that concurrent processes build once and the
   others wait and load the result;
4. compiles with ninja through ``torch.utils.cpp_extension.load`` in a child process,
   whose whole output goes to ``build.log`` in the cache directory (the error message
   of a failed build names it);
5. loads the module; later processes load the cached build without running ninja.

The target architectures come from ``TORCH_CUDA_ARCH_LIST`` when set (e.g. ``"9.0"``,
``"8.0;9.0+PTX"``), else from the visible GPUs, else :data:`DEFAULT_ARCH` (so that the
compile also runs, and can be tested, on machines without a GPU).

Example::

    >>> from stylegan3_ops._build import build_status
    >>> build_status().ok in (True, False)       # never builds; see build_extension()
    True
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

__all__ = [
    "DEFAULT_ARCH",
    "BuildSpec",
    "BuildStatus",
    "LockTimeout",
    "OpsBuildError",
    "build_extension",
    "build_status",
    "cache_root",
    "default_spec",
    "prerequisites",
]

CSRC_DIR = Path(__file__).resolve().parent / "csrc"
COMPILED_SOURCES = ("ops.cu", "bindings.cpp")
DEFAULT_ARCH = "9.0"  # Hopper (H100/H200)
BUILD_FLAGS_VERSION = "1"  # bump when the flags below change meaning
CXX_FLAGS = ("-O3",)
CUDA_FLAGS = ("-O3",)
LOCK_TIMEOUT_S = 30 * 60
BUILD_TIMEOUT_S = 60 * 60
TROUBLESHOOTING_DOC = "docs/ops-troubleshooting.md"
_MARKER = "build.json"
_LOG = "build.log"


class OpsBuildError(RuntimeError):
    """The CUDA extension cannot be built or loaded; the message says why and names the log."""


class LockTimeout(OpsBuildError):
    """Another process held the build lock for longer than the timeout."""


@dataclass(frozen=True)
class BuildStatus:
    """Outcome of the last build attempt in this process (or what is known without one).

    Attributes:
        ok: The extension is loaded (or, from :func:`build_status` without a build, a
            finished build is in the cache).
        reason: One line: what happened, or why it cannot work.
        seconds: Wall time of the build or load in this process; None if none ran.
        log_path: The full build log (stdout and stderr of the compiler and ninja).
        cache_dir: The directory of this source/toolchain/arch combination.
        cached: The module came from an earlier build (no compile in this process).
    """

    ok: bool
    reason: str
    seconds: float | None = None
    log_path: Path | None = None
    cache_dir: Path | None = None
    cached: bool = False


@dataclass(frozen=True)
class BuildSpec:
    """What to compile and where: the sources, flags and the cache directory they hash to."""

    name: str
    sources: tuple[Path, ...]
    include_dir: Path
    cache_dir: Path
    archs: tuple[str, ...]
    cuda_home: Path
    ninja: str
    key: str
    extra_cflags: tuple[str, ...] = CXX_FLAGS
    extra_cuda_cflags: tuple[str, ...] = field(default=CUDA_FLAGS)


_lock = threading.Lock()  # serialises builds between threads of this process
_module = None
_status: BuildStatus | None = None


# --- the toolchain ---------------------------------------------------------------------


def cache_root() -> Path:
    """Where builds are cached: ``$CFATTACK_CACHE/ops``, ``$TORCH_EXTENSIONS_DIR/cfattack_ops`` or ``~/.cache/cfattack/ops``."""
    if os.environ.get("CFATTACK_CACHE"):
        return Path(os.environ["CFATTACK_CACHE"]).expanduser() / "ops"
    if os.environ.get("TORCH_EXTENSIONS_DIR"):
        return Path(os.environ["TORCH_EXTENSIONS_DIR"]).expanduser() / "cfattack_ops"
    return Path.home() / ".cache" / "cfattack" / "ops"


def find_cuda_home() -> Path | None:
    """The CUDA toolkit: ``$CUDA_HOME``/``$CUDA_PATH``, the toolkit of ``nvcc`` on PATH, or /usr/local/cuda.

    A candidate counts only if it has ``bin/nvcc`` and ``include/cuda_runtime.h`` (an
    ``nvcc`` wrapper script in /usr/local/bin is followed to the toolkit it runs).
    """
    candidates: list[Path] = []
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            candidates.append(Path(os.environ[var]))
    nvcc = shutil.which("nvcc")
    if nvcc:
        real = Path(nvcc).resolve()
        candidates.append(real.parent.parent)
        target = _wrapper_target(real)
        if target is not None:
            candidates.append(target.parent.parent)
    candidates.append(Path("/usr/local/cuda"))
    for home in candidates:
        if (home / "bin" / "nvcc").exists() and (home / "include" / "cuda_runtime.h").exists():
            return home
    return None


def _wrapper_target(path: Path) -> Path | None:
    """The nvcc a small shell wrapper execs, if ``path`` is one."""
    try:
        if path.stat().st_size > 4096:
            return None
        text = path.read_text(errors="replace")
    except OSError:
        return None
    match = re.search(r"(/\S*/bin/nvcc)\b", text)
    return Path(match.group(1)) if match else None


def find_ninja() -> str | None:
    """``ninja`` on PATH, or next to the running Python (a virtual environment's bin)."""
    found = shutil.which("ninja")
    if found:
        return found
    local = Path(sys.executable).parent / "ninja"
    return str(local) if local.exists() else None


def nvcc_release(cuda_home: Path) -> str:
    """``"13.0"`` from ``nvcc --version``, or ``""`` when it cannot be read."""
    try:
        out = subprocess.run(
            [str(cuda_home / "bin" / "nvcc"), "--version"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    match = re.search(r"release (\d+\.\d+)", out.stdout + out.stderr)
    return match.group(1) if match else ""


def target_archs() -> tuple[str, ...]:
    """``TORCH_CUDA_ARCH_LIST`` if set, else the visible GPUs' compute capabilities, else DEFAULT_ARCH."""
    value = os.environ.get("TORCH_CUDA_ARCH_LIST", "").strip()
    if value:
        return tuple(a for a in re.split(r"[;\s,]+", value) if a)
    if torch.cuda.is_available():
        caps = {torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())}
        return tuple(f"{major}.{minor}" for major, minor in sorted(caps))
    return (DEFAULT_ARCH,)


def gencode_flags(archs: tuple[str, ...]) -> list[str]:
    """nvcc ``-gencode`` flags for archs like ``"9.0"``, ``"9.0a"``, ``"8.6+PTX"``.

    Raises:
        OpsBuildError: An entry is not of that form.
    """
    flags = []
    for arch in archs:
        match = re.fullmatch(r"(\d+)\.(\d+)([af]?)(\+PTX)?", arch)
        if not match:
            raise OpsBuildError(
                f"TORCH_CUDA_ARCH_LIST entry {arch!r} is not of the form 9.0, 9.0a or 9.0+PTX "
                f"(see {TROUBLESHOOTING_DOC})"
            )
        num = match.group(1) + match.group(2) + match.group(3)
        flags.append(f"-gencode=arch=compute_{num},code=sm_{num}")
        if match.group(4):
            flags.append(f"-gencode=arch=compute_{num},code=compute_{num}")
    return flags


def prerequisites() -> tuple[bool, str]:
    """Cheap checks (no compile): ``(True, "")`` or ``(False, what is missing and what to do)``."""
    if torch.version.cuda is None:
        return False, f"torch {torch.__version__} is a CPU-only build (torch.version.cuda is None)"
    home = find_cuda_home()
    if home is None:
        return False, "nvcc (the CUDA toolkit) was not found: install it or set CUDA_HOME"
    if find_ninja() is None:
        return False, "ninja was not found on PATH: pip install ninja"
    release = nvcc_release(home)
    if release and release.split(".")[0] != torch.version.cuda.split(".")[0]:
        return False, (
            f"nvcc {release} ({home}) does not match the CUDA {torch.version.cuda} torch was built with: "
            "install a matching toolkit and point CUDA_HOME at it"
        )
    return True, ""


def _source_files() -> tuple[Path, ...]:
    """Every file the build depends on (the CPU emulation used by tests is not compiled in)."""
    return tuple(sorted(p for p in CSRC_DIR.iterdir() if p.suffix in (".h", ".cu", ".cpp") and p.name != "emulate.cpp"))


def build_key(files: tuple[Path, ...], toolchain: dict) -> str:
    """sha256 over the sources' names and bytes and the toolchain description."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    digest.update(json.dumps(toolchain, sort_keys=True).encode())
    return digest.hexdigest()


def default_spec() -> BuildSpec:
    """The spec of the package's own extension for this toolchain and these archs.

    Raises:
        OpsBuildError: A prerequisite is missing or TORCH_CUDA_ARCH_LIST is malformed.
    """
    ok, why = prerequisites()
    if not ok:
        raise OpsBuildError(why)
    home = find_cuda_home()
    assert home is not None
    archs = target_archs()
    gencode_flags(archs)  # validate early
    toolchain = {
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "nvcc": nvcc_release(home),
        "archs": list(archs),
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        "platform": sys.platform,
        "flags": [BUILD_FLAGS_VERSION, *CXX_FLAGS, *CUDA_FLAGS],
    }
    key = build_key(_source_files(), toolchain)
    return BuildSpec(
        name=f"cfattack_sg3ops_{key[:12]}",
        sources=tuple(CSRC_DIR / s for s in COMPILED_SOURCES),
        include_dir=CSRC_DIR,
        cache_dir=cache_root() / f"sg3ops-{key[:16]}",
        archs=archs,
        cuda_home=home,
        ninja=find_ninja() or "ninja",
        key=key,
    )


# --- locking ------------------------------------------------------------------------


class FileLock:
    """An exclusive ``flock`` on ``path`` (released when the holder exits, even by a crash).

    Waits up to ``timeout`` seconds, then raises :class:`LockTimeout` naming the file and
    the process id written in it. Without ``fcntl`` (Windows) it does not lock.
    """

    def __init__(self, path: Path, timeout: float = LOCK_TIMEOUT_S, poll: float = 0.2) -> None:
        self.path, self.timeout, self.poll = Path(path), timeout, poll
        self._fd: int | None = None

    def __enter__(self) -> FileLock:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = _read_pid(self.path)
                    os.close(fd)
                    raise LockTimeout(
                        f"timed out after {self.timeout:.0f} s waiting for the build lock {self.path}"
                        f"{f' (held by process {holder})' if holder else ''}; if no build is running, "
                        f"delete the file (see {TROUBLESHOOTING_DOC})"
                    ) from None
                time.sleep(self.poll)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            import fcntl

            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _read_pid(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


# --- building and loading ------------------------------------------------------------

_CHILD = """
import json, sys
import torch.utils.cpp_extension as ce
a = json.loads(sys.argv[1])
ce.load(name=a["name"], sources=a["sources"], build_directory=a["dir"], extra_cflags=a["cflags"],
        extra_cuda_cflags=a["cuda_cflags"], extra_include_paths=a["include"], verbose=True, with_cuda=True)
print("cfattack: build finished", flush=True)
"""


def _library_path(spec: BuildSpec) -> Path:
    return spec.cache_dir / f"{spec.name}.so"


def _compile(spec: BuildSpec, log_path: Path, timeout: float = BUILD_TIMEOUT_S) -> tuple[bool, str]:
    """Run the build in a child process with all its output in ``log_path``: ``(ok, detail)``."""
    args = {
        "name": spec.name,
        "sources": [str(s) for s in spec.sources],
        "dir": str(spec.cache_dir),
        "cflags": list(spec.extra_cflags),
        "cuda_cflags": [*spec.extra_cuda_cflags, *gencode_flags(spec.archs)],
        "include": [str(spec.include_dir)],
    }
    env = dict(os.environ)  # the child's environment; ours is left alone
    env["CUDA_HOME"] = str(spec.cuda_home)
    env["PATH"] = os.pathsep.join([str(Path(spec.ninja).parent), str(spec.cuda_home / "bin"), env.get("PATH", "")])
    command = [sys.executable, "-c", _CHILD, json.dumps(args)]
    with open(log_path, "w") as log:
        log.write(
            f"# cfattack CUDA ops build, {time.strftime('%Y-%m-%d %H:%M:%S')}\n# key {spec.key}\n"
            f"# CUDA_HOME={spec.cuda_home} archs={';'.join(spec.archs)} MAX_JOBS={env.get('MAX_JOBS', '')}\n"
            f"# args {json.dumps(args)}\n"
        )
        log.flush()
        try:
            result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return False, f"the build did not finish within {timeout:.0f} s"
    if result.returncode != 0:
        return False, f"the build exited with code {result.returncode}{_first_error(log_path)}"
    if not _library_path(spec).exists():
        return False, f"the build finished but {_library_path(spec).name} is missing"
    return True, ""


def _first_error(log_path: Path) -> str:
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    for line in lines:
        if re.search(r"\berror\b", line, re.IGNORECASE) and not line.startswith("#"):
            return f" ({line.strip()[:200]})"
    return ""


def _load_module(name: str, path: Path):
    """Import the compiled module from its file (torch is already imported, so its libraries resolve)."""
    loader = importlib.machinery.ExtensionFileLoader(name, str(path))
    spec = importlib.util.spec_from_file_location(name, str(path), loader=loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def build(spec: BuildSpec, verbose: bool = False, lock_timeout: float = LOCK_TIMEOUT_S) -> tuple[BuildStatus, object]:
    """Build (or load the cached build of) ``spec`` under its lock: ``(status, module or None)``."""
    start = time.monotonic()
    spec.cache_dir.mkdir(parents=True, exist_ok=True)
    log_path = spec.cache_dir / _LOG
    marker = spec.cache_dir / _MARKER
    library = _library_path(spec)
    with FileLock(spec.cache_dir.with_name(spec.cache_dir.name + ".lock"), timeout=lock_timeout):
        cached = marker.exists() and library.exists()
        if not cached:
            if verbose:
                print(f"cfattack: building the CUDA ops in {spec.cache_dir} (log: {log_path})", flush=True)
            ok, detail = _compile(spec, log_path)
            if not ok:
                seconds = time.monotonic() - start
                reason = (
                    f"building the CUDA kernels failed after {seconds:.0f} s: {detail}; "
                    f"full log: {log_path}"
                )
                return BuildStatus(False, reason, seconds, log_path, spec.cache_dir), None
            marker.write_text(json.dumps({"key": spec.key, "seconds": time.monotonic() - start}))
    try:
        module = _load_module(spec.name, library)
    except ImportError as e:
        seconds = time.monotonic() - start
        reason = f"the CUDA kernels were built but cannot be loaded: {e}; build log: {log_path}"
        return BuildStatus(False, reason, seconds, log_path, spec.cache_dir), None
    seconds = time.monotonic() - start
    what = "loaded from the cache" if cached else f"built in {seconds:.0f} s"
    return BuildStatus(True, f"CUDA kernels {what} ({spec.cache_dir})", seconds, log_path, spec.cache_dir, cached), module


def build_extension(verbose: bool = False, force: bool = False):
    """The compiled module, building it on first use (once per process; then cached on disk).

    Args:
        verbose: Print where the build happens.
        force: Try again even if an earlier attempt in this process failed.

    Raises:
        OpsBuildError: Prerequisites missing, compile or load failure; the message says
            why and names the build log.
    """
    global _module, _status
    with _lock:
        if _module is not None:
            return _module
        if _status is not None and not _status.ok and not force:
            raise OpsBuildError(_status.reason)
        start = time.monotonic()
        try:
            spec = default_spec()
            _status, _module = build(spec, verbose=verbose)
        except LockTimeout as e:
            _status = BuildStatus(False, str(e), time.monotonic() - start)
        except OpsBuildError as e:
            _status = BuildStatus(False, f"CUDA kernels are not built: {e}", None)
        except OSError as e:  # e.g. an unwritable cache directory
            _status = BuildStatus(
                False, f"CUDA kernels are not built: cannot use the build cache ({e}); set CFATTACK_CACHE", None
            )
        if _module is None:
            raise OpsBuildError(_status.reason)
        return _module


def build_status(build: bool = False) -> BuildStatus:
    """What is known about the extension; builds (or loads) it only with ``build=True``.

    Without ``build``: the outcome of this process's attempt if there was one, else
    whether the prerequisites are met and whether a finished build is in the cache.
    """
    if build:
        try:
            build_extension(force=True)
        except OpsBuildError:
            pass
    if _status is not None:
        return _status
    try:
        spec = default_spec()
    except OpsBuildError as e:
        return BuildStatus(False, f"CUDA kernels are not built: {e}")
    log_path = spec.cache_dir / _LOG
    if (spec.cache_dir / _MARKER).exists() and _library_path(spec).exists():
        return BuildStatus(True, f"built and cached in {spec.cache_dir}", None, log_path, spec.cache_dir, True)
    return BuildStatus(
        False,
        f"not built yet; compiles on first CUDA use or with 'cfattack doctor --build' (into {spec.cache_dir})",
        None,
        log_path if log_path.exists() else None,
        spec.cache_dir,
    )
