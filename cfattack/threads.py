"""How many CPU threads torch uses, chosen on purpose rather than left to its default.

torch starts one thread per *logical* CPU it can see and, with OpenMP, lets idle threads spin
while they wait. Two such processes on a small machine then fight over the cores: on 2 cores,
two explanations at once took 4-6x as long as one alone. The rule, in order of precedence:

1. ``--threads N`` (``requested``);
2. ``CFATTACK_THREADS``;
3. ``OMP_NUM_THREADS``, when set (torch reads it too, and ``torchrun`` sets it to 1 per rank);
4. the physical cores this process may run on (hyperthreads of one core count once; the CPU
   affinity mask and a container's CPU quota are respected), shared between the ranks of one
   machine under ``torchrun`` (``LOCAL_WORLD_SIZE``): ``max(1, cores // ranks)``.

`use_threads` applies it: intra-op and inter-op threads, and, when torch is not imported yet,
``OMP_WAIT_POLICY=PASSIVE`` (unless set) so OpenMP threads sleep instead of spinning while they
wait, which is what lets two processes share the cores. Only the command line and the
benchmarks call it; importing cfattack changes nothing::

    threads = use_threads(None)        # before the first torch work of a command
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from cfattack.errors import InvalidInputError

__all__ = ["THREADS_ENV", "ThreadChoice", "choose_threads", "physical_cores", "use_threads"]

THREADS_ENV = "CFATTACK_THREADS"
MAX_THREADS = 4096
_WAIT_POLICY_ENV = "OMP_WAIT_POLICY"


@dataclass(frozen=True)
class ThreadChoice:
    """A thread count and the rule that gave it (``cfattack doctor`` prints both)."""

    count: int
    reason: str


def _allowed_cpus() -> set[int]:
    """Logical CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return set(range(os.cpu_count() or 1))


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None


def _cores_from_sysfs(cpus: set[int], root: Path) -> int | None:
    """Distinct cores among ``cpus``: each core lists the logical CPUs it runs (its hyperthreads)."""
    cores = set()
    for cpu in cpus:
        topology = root / f"cpu{cpu}" / "topology"
        siblings = _read(topology / "core_cpus_list") or _read(topology / "thread_siblings_list")
        if siblings is None:
            return None
        package = _read(topology / "physical_package_id") or "0"
        cores.add((package, siblings))
    return len(cores) or None


def _cores_from_cpuinfo(cpus: set[int], text: str) -> int | None:
    """Distinct (physical id, core id) pairs among ``cpus`` in /proc/cpuinfo's text."""
    cores = set()
    for block in text.split("\n\n"):
        fields = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in block.splitlines())}
        if "processor" not in fields or not fields["processor"].isdigit():
            continue
        if "core id" not in fields:
            return None  # no topology given (some VMs, other architectures)
        if int(fields["processor"]) in cpus:
            cores.add((fields.get("physical id", "0"), fields["core id"]))
    return len(cores) or None


def _cpu_quota(root: Path) -> float | None:
    """The container's CPU limit in CPUs (cgroup v2 ``cpu.max`` or v1 CFS quota), None when unlimited."""
    v2 = _read(root / "cpu.max")
    if v2 is not None:
        quota, _, period = v2.partition(" ")
        if quota != "max" and quota.isdigit() and period.isdigit() and int(period) > 0:
            return int(quota) / int(period)
        return None
    quota, period = _read(root / "cpu" / "cpu.cfs_quota_us"), _read(root / "cpu" / "cpu.cfs_period_us")
    if quota and period and quota.isdigit() and period.isdigit() and int(period) > 0:
        return int(quota) / int(period)  # "-1" (unlimited) is not all digits
    return None


def physical_cores(cpus: set[int] | None = None, sysfs: Path = Path("/sys/devices/system/cpu"),
                   cpuinfo: Path = Path("/proc/cpuinfo"), cgroup: Path = Path("/sys/fs/cgroup")) -> int:
    """Physical cores this process may use: hyperthreads of one core count once, capped by a CPU quota.

    Reads the affinity mask, then the core topology from sysfs or /proc/cpuinfo; where neither
    says (not Linux), psutil's physical count if psutil happens to be installed, else the
    logical count. Never less than 1.
    """
    cpus = _allowed_cpus() if cpus is None else cpus
    cores = _cores_from_sysfs(cpus, sysfs)
    if cores is None:
        text = _read(cpuinfo)
        cores = _cores_from_cpuinfo(cpus, text) if text else None
    if cores is None:
        cores = _psutil_cores(len(cpus))
    quota = _cpu_quota(cgroup)
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota)))
    return max(1, cores)


def _psutil_cores(logical: int) -> int:
    try:
        import psutil  # optional: only when already installed
    except ImportError:
        return logical
    physical, machine = psutil.cpu_count(logical=False), psutil.cpu_count(logical=True)
    if not physical or not machine:
        return logical
    return max(1, logical * physical // machine)  # the affinity mask's share of the cores


def _positive(text: str, name: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_THREADS:
        raise InvalidInputError(f"{name}={text!r}: expected a whole number of threads from 1 to {MAX_THREADS}")
    return value


def choose_threads(requested: int | None = None, env: Mapping[str, str] | None = None,
                   cores: int | None = None) -> ThreadChoice:
    """The thread count by the rule in the module docstring.

    Raises:
        InvalidInputError: ``CFATTACK_THREADS`` or ``OMP_NUM_THREADS`` is not a number from 1 to 4096.
    """
    env = os.environ if env is None else env
    if requested is not None:
        return ThreadChoice(_positive(str(requested), "--threads"), "--threads")
    if env.get(THREADS_ENV, "").strip():
        return ThreadChoice(_positive(env[THREADS_ENV], THREADS_ENV), THREADS_ENV)
    if env.get("OMP_NUM_THREADS", "").strip():
        return ThreadChoice(_positive(env["OMP_NUM_THREADS"], "OMP_NUM_THREADS"), "OMP_NUM_THREADS")
    cores = physical_cores() if cores is None else cores
    ranks = env.get("LOCAL_WORLD_SIZE", "").strip()
    if ranks.isdigit() and int(ranks) > 1:
        return ThreadChoice(max(1, cores // int(ranks)), f"{cores} physical cores shared by {ranks} local ranks")
    return ThreadChoice(cores, f"{cores} physical cores")


def use_threads(requested: int | None = None) -> ThreadChoice:
    """Choose the thread count (`choose_threads`) and apply it to torch; returns the choice.

    Before torch's first import it also sets ``OMP_WAIT_POLICY=PASSIVE`` unless the variable is
    set (OpenMP reads it once, when torch loads). The inter-op count can be set only before
    torch's first parallel work; later calls keep the one in place.
    """
    choice = choose_threads(requested)
    if "torch" not in sys.modules:
        os.environ.setdefault(_WAIT_POLICY_ENV, "PASSIVE")
    import torch

    if torch.get_num_threads() != choice.count:
        torch.set_num_threads(choice.count)
    if torch.get_num_interop_threads() != choice.count:
        try:
            torch.set_num_interop_threads(choice.count)
        except RuntimeError:  # parallel work has started (e.g. a second command in one process)
            pass
    return choice
