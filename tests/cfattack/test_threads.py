"""The thread rule: --threads, CFATTACK_THREADS, OMP_NUM_THREADS, then physical cores shared by local ranks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cfattack.errors import InvalidInputError
from cfattack.threads import choose_threads, physical_cores, use_threads

REPO_ROOT = Path(__file__).resolve().parents[2]


def _sysfs(root: Path, siblings: dict[int, str], package: str = "0") -> Path:
    """A fake /sys/devices/system/cpu: cpuN/topology/{core_cpus_list, physical_package_id}."""
    for cpu, listing in siblings.items():
        topology = root / f"cpu{cpu}" / "topology"
        topology.mkdir(parents=True)
        (topology / "core_cpus_list").write_text(listing + "\n")
        (topology / "physical_package_id").write_text(package + "\n")
    return root


def test_hyperthreads_of_one_core_count_once(tmp_path):
    # 4 logical CPUs, 2 cores with 2 hyperthreads each (Linux numbers siblings 0,2 and 1,3).
    sysfs = _sysfs(tmp_path / "cpu", {0: "0,2", 1: "1,3", 2: "0,2", 3: "1,3"})
    no_cgroup = tmp_path / "cgroup"
    assert physical_cores({0, 1, 2, 3}, sysfs=sysfs, cgroup=no_cgroup) == 2
    assert physical_cores({0, 2}, sysfs=sysfs, cgroup=no_cgroup) == 1  # the affinity mask holds one core
    assert physical_cores({0, 1}, sysfs=sysfs, cgroup=no_cgroup) == 2


def test_cpuinfo_is_read_when_sysfs_says_nothing(tmp_path):
    blocks = [f"processor\t: {p}\nphysical id\t: 0\ncore id\t\t: {p % 2}\n" for p in range(4)]
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("\n".join(blocks))
    kwargs = dict(sysfs=tmp_path / "none", cpuinfo=cpuinfo, cgroup=tmp_path / "cgroup")
    assert physical_cores({0, 1, 2, 3}, **kwargs) == 2
    assert physical_cores({1, 3}, **kwargs) == 1
    cpuinfo.write_text("processor\t: 0\n\nprocessor\t: 1\n\nprocessor\t: 2\n")  # no topology at all
    assert physical_cores({0, 1, 2}, **kwargs) >= 1


def test_a_container_quota_caps_the_count(tmp_path):
    sysfs = _sysfs(tmp_path / "cpu", {i: str(i) for i in range(8)})
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    (cgroup / "cpu.max").write_text("150000 100000\n")  # 1.5 CPUs
    assert physical_cores(set(range(8)), sysfs=sysfs, cgroup=cgroup) == 2
    (cgroup / "cpu.max").write_text("max 100000\n")
    assert physical_cores(set(range(8)), sysfs=sysfs, cgroup=cgroup) == 8
    (cgroup / "cpu.max").unlink()
    (cgroup / "cpu").mkdir()
    (cgroup / "cpu" / "cpu.cfs_quota_us").write_text("300000\n")  # cgroup v1: 3 CPUs
    (cgroup / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert physical_cores(set(range(8)), sysfs=sysfs, cgroup=cgroup) == 3


def test_precedence_of_the_rule():
    env = {"CFATTACK_THREADS": "3", "OMP_NUM_THREADS": "5", "LOCAL_WORLD_SIZE": "4"}
    assert choose_threads(7, env, cores=16).count == 7
    assert choose_threads(None, env, cores=16).count == 3
    del env["CFATTACK_THREADS"]
    assert choose_threads(None, env, cores=16).count == 5
    del env["OMP_NUM_THREADS"]
    choice = choose_threads(None, env, cores=16)
    assert (choice.count, choice.reason) == (4, "16 physical cores shared by 4 local ranks")
    assert choose_threads(None, {"LOCAL_WORLD_SIZE": "8"}, cores=2).count == 1  # never 0
    assert choose_threads(None, {}, cores=6).count == 6


@pytest.mark.parametrize("value", ["0", "-2", "two", "1e3", "5000"])
def test_a_bad_environment_value_is_refused_naming_it(value):
    with pytest.raises(InvalidInputError, match="CFATTACK_THREADS"):
        choose_threads(None, {"CFATTACK_THREADS": value}, cores=2)
    with pytest.raises(InvalidInputError, match="OMP_NUM_THREADS"):
        choose_threads(None, {"OMP_NUM_THREADS": value}, cores=2)


def test_use_threads_sets_torch(monkeypatch):
    before = torch.get_num_threads()
    try:
        assert use_threads(1).count == 1
        assert torch.get_num_threads() == 1
        monkeypatch.setenv("CFATTACK_THREADS", "2")
        assert use_threads(None).count == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


_PROBE = """
import json, os, sys
from cfattack.cli.root import main
code = main(sys.argv[1:])
import torch
print(json.dumps({"code": code, "threads": torch.get_num_threads(), "interop": torch.get_num_interop_threads(),
                  "wait": os.environ.get("OMP_WAIT_POLICY")}))
"""


def _command_threads(tmp_path: Path, *args: str, **env: str) -> dict:
    """Run a real command in a fresh interpreter; what torch was set to afterwards."""
    clean = {k: v for k, v in os.environ.items()
             if k not in ("OMP_NUM_THREADS", "CFATTACK_THREADS", "LOCAL_WORLD_SIZE", "OMP_WAIT_POLICY")}
    proc = subprocess.run([sys.executable, "-c", _PROBE, "generate", "--network", "default", "--seeds", "0",
                           "--out", str(tmp_path / "o"), "--device", "cpu", *args],
                          env={**clean, **env}, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_command_applies_the_rule_in_a_fresh_process(tmp_path):
    cores = physical_cores()
    assert _command_threads(tmp_path) == {"code": 0, "threads": cores, "interop": cores, "wait": "PASSIVE"}
    shared = _command_threads(tmp_path, LOCAL_WORLD_SIZE="2", OMP_WAIT_POLICY="ACTIVE")
    assert shared == {"code": 0, "threads": max(1, cores // 2), "interop": max(1, cores // 2), "wait": "ACTIVE"}
