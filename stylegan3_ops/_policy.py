"""Backend policy of the StyleGAN3 ops: which implementation serves a call.

Every op has a pure-PyTorch reference implementation ("ref") that runs on any
device, and a compiled CUDA twin ("cuda", built lazily by :mod:`stylegan3_ops._build`).
Which one a call uses is decided here, in one place, by a stated policy:

* ``"auto"`` (the default): the CUDA kernel when the input lives on a CUDA device
  and the kernel is usable (it is compiled on the first such call), otherwise the
  reference. Falling back on a CUDA input warns once per op and process, saying why
  and naming the build log.
* ``"cuda"``: the CUDA kernel or an :class:`OpsBackendError` saying why not.
* ``"ref"``: always the reference implementation.

The choice comes from the ``impl`` argument of each op, or, when that is ``None``,
from the environment variable ``CFATTACK_OPS``. This module only reads the
environment; it never changes it.

Without a CUDA device :func:`cuda_available` answers no without building anything;
:func:`backend_report` never builds (it reports "not built yet" instead).

Example::

    >>> from stylegan3_ops._policy import backend_report
    >>> [row["backend"] for row in backend_report("cpu")]
    ['ref', 'ref', 'ref']
"""

from __future__ import annotations

import os
import warnings

import torch

__all__ = [
    "ENV_VAR",
    "IMPLS",
    "OPS",
    "OpsBackendError",
    "backend_report",
    "cuda_available",
    "requested_impl",
    "resolve_impl",
]

OPS = ("bias_act", "upfirdn2d", "filtered_lrelu")
IMPLS = ("auto", "cuda", "ref")
ENV_VAR = "CFATTACK_OPS"
TROUBLESHOOTING_DOC = "docs/ops-troubleshooting.md"

_NO_DEVICE = "CUDA kernels are not built here: no CUDA device is visible (torch.cuda.is_available() is False)"

# Ops that already warned about an "auto" fallback in this process.
_warned_ops: set[str] = set()


class OpsBackendError(RuntimeError):
    """The CUDA implementation of an op was demanded (``impl="cuda"``) but cannot run."""


def _check_op(op: str) -> None:
    if op not in OPS:
        raise ValueError(f"op must be one of {', '.join(OPS)}; got {op!r}")


def requested_impl(impl: str | None) -> str:
    """The implementation asked for: ``impl`` itself, or ``CFATTACK_OPS`` when it is None.

    Args:
        impl: ``"auto"``, ``"cuda"``, ``"ref"`` or ``None``.

    Returns:
        One of ``"auto"``, ``"cuda"``, ``"ref"``. An unset or empty ``CFATTACK_OPS``
        means ``"auto"``; its value is read case-insensitively.

    Raises:
        ValueError: ``impl`` or ``CFATTACK_OPS`` is not one of the allowed values.
    """
    if impl is not None:
        if impl not in IMPLS:
            raise ValueError(
                f"impl must be one of {', '.join(map(repr, IMPLS))} or None "
                f"(None reads {ENV_VAR}); got {impl!r}"
            )
        return impl
    value = os.environ.get(ENV_VAR, "").strip().lower()
    if not value:
        return "auto"
    if value not in IMPLS:
        raise ValueError(
            f"environment variable {ENV_VAR} must be one of {', '.join(IMPLS)} "
            f"(or unset, meaning auto); got {os.environ[ENV_VAR]!r}"
        )
    return value


def cuda_available(op: str, build: bool = True) -> tuple[bool, str]:
    """Whether the compiled CUDA kernel of ``op`` can be used, and if not, why.

    Args:
        op: One of :data:`OPS`.
        build: Compile (or load the cached build of) the extension if needed. With
            ``False`` nothing is compiled: a missing build whose prerequisites are met
            counts as usable, with a reason saying it compiles on first use.

    Returns:
        ``(True, why)`` when usable, else ``(False, reason)``; a failed build's reason
        names its log.
    """
    _check_op(op)
    if not torch.cuda.is_available():
        return False, _NO_DEVICE
    from stylegan3_ops import _build  # lazy: importing this package builds nothing

    if _build._module is not None:
        return True, "the CUDA kernel is available"
    if not build:
        status = _build.build_status()
        if status.ok or (status.cache_dir is not None and status.reason.startswith("not built yet")):
            return True, status.reason
        return False, status.reason
    try:
        _build.build_extension()
    except _build.OpsBuildError as e:
        return False, str(e)
    return True, "the CUDA kernel is available"


def _decide(op: str, requested: str, device_type: str, build: bool = True) -> tuple[str, str]:
    """The backend (``"ref"``, ``"cuda"`` or ``"unavailable"``) and the reason for it."""
    if requested == "ref":
        return "ref", "the reference implementation was requested"
    if device_type != "cuda":
        if requested == "auto":
            return "ref", f"input is on {device_type}; the CUDA kernels need a CUDA device"
        reason = f"impl='cuda' was requested but the input is on {device_type}, not a CUDA device"
        return "unavailable", reason
    ok, why = cuda_available(op, build=build)
    if ok:
        return "cuda", why
    if requested == "auto":
        return "ref", why
    return "unavailable", f"impl='cuda' was requested but the CUDA kernel of {op} cannot be used: {why}"


def resolve_impl(op: str, impl: str | None, x: torch.Tensor) -> str:
    """The implementation, ``"ref"`` or ``"cuda"``, that ``op`` should use on input ``x``.

    Args:
        op: One of :data:`OPS`.
        impl: The op's ``impl`` argument (``None`` reads ``CFATTACK_OPS``).
        x: The op's main input tensor; only its device matters.

    Raises:
        ValueError: Unknown ``op`` or ``impl`` value.
        OpsBackendError: ``"cuda"`` was requested but cannot be served.
    """
    _check_op(op)
    requested = requested_impl(impl)
    backend, reason = _decide(op, requested, x.device.type)
    if backend == "unavailable":
        raise OpsBackendError(f"stylegan3_ops.{op}: {reason}. See {TROUBLESHOOTING_DOC}.")
    if backend == "ref" and requested == "auto" and x.device.type == "cuda" and op not in _warned_ops:
        _warned_ops.add(op)
        warnings.warn(
            f"stylegan3_ops.{op}: {reason} (set {ENV_VAR}=ref to silence this; "
            f"see {TROUBLESHOOTING_DOC}).",
            RuntimeWarning,
            stacklevel=3,
        )
    return backend


def backend_report(device: str = "cpu") -> list[dict]:
    """What each op would use now for an input on ``device`` (for ``cfattack doctor``).

    Never compiles: a CUDA build that is not made yet is reported as the backend a call
    would use, with the reason saying it compiles on first use.

    Args:
        device: A torch device string such as ``"cpu"`` or ``"cuda:0"``.

    Returns:
        One dict per op in :data:`OPS` with keys ``"op"``, ``"requested"``
        (auto/cuda/ref, from ``CFATTACK_OPS``), ``"backend"`` (``"ref"``, ``"cuda"``,
        or ``"unavailable"`` when ``"cuda"`` is requested but a call would raise
        :class:`OpsBackendError`) and ``"reason"``.

    Raises:
        ValueError: ``CFATTACK_OPS`` holds an invalid value.
    """
    device_type = torch.device(device).type
    requested = requested_impl(None)
    rows = []
    for op in OPS:
        backend, reason = _decide(op, requested, device_type, build=False)
        rows.append({"op": op, "requested": requested, "backend": backend, "reason": reason})
    return rows
