"""Thread benchmark: two README explanations at once vs one alone, as separate ``cfattack`` processes.

Each round runs the README's first command (``cfattack explain examples/ankle-boot-1.png --target
sneaker --out DIR``) once alone, then twice at the same moment. A process's slowdown is its wall
time over the median alone time; the bar is that both concurrent runs finish within 2.5x (on N
cores, two CPU-bound processes that share them fairly take about 2x). Every process chooses its
own threads by cfattack's rule (`cfattack.threads`); ``--env`` adds variables to all of them, e.g.
``--env OMP_WAIT_POLICY=ACTIVE`` to see spinning OpenMP threads fight over the cores.
``--torch-defaults`` measures what cfattack did before it chose threads: torch loads before the
command starts, so OpenMP keeps its default wait policy, with one thread per logical CPU.

Other work on the machine disturbs the numbers, so the script also measures it: the CPU time the
whole machine spent during the benchmark (/proc/stat) minus that of the benchmark's own processes,
in cores busy on average. Record the result only when that figure is small.

    python benchmarks/threads.py                              # 3 rounds
    python benchmarks/threads.py --rounds 5 --out benchmarks/results/threads-cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
COMMAND = ["explain", "examples/ankle-boot-1.png", "--target", "sneaker"]
BAR = 2.5


def _cpu_seconds() -> float:
    """Busy CPU seconds of the whole machine so far, from /proc/stat's first line."""
    fields = [float(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")  # guest time is already counted in user


def _children_cpu() -> float:
    t = os.times()
    return t.children_user + t.children_system


# torch first: cfattack then leaves OpenMP's wait policy alone (it is read when torch loads).
_TORCH_FIRST = "import sys, torch; from cfattack.cli.root import main; sys.exit(main(sys.argv[1:]))"


def _cfattack(torch_defaults: bool) -> list[str]:
    if torch_defaults:
        return [sys.executable, "-c", _TORCH_FIRST]
    found = shutil.which("cfattack", path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, "-m", "cfattack"]


def run_together(count: int, out: Path, env: dict[str, str], torch_defaults: bool = False) -> list[float]:
    """Start ``count`` explanations at once; each one's wall seconds (start to exit)."""
    started = time.perf_counter()
    command = [*_cfattack(torch_defaults), *COMMAND, "--out"]
    procs = [subprocess.Popen([*command, str(out / f"run{i}")], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(count)]
    seconds: list[float | None] = [None] * count
    while any(s is None for s in seconds):
        for i, proc in enumerate(procs):
            if seconds[i] is None and proc.poll() is not None:
                seconds[i] = time.perf_counter() - started
        time.sleep(0.01)
    for proc in procs:
        stdout, stderr = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"cfattack failed ({proc.returncode}): {stderr.strip()}")
    return [float(s) for s in seconds]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="Set a variable in every cfattack process (repeatable).")
    parser.add_argument("--torch-defaults", action="store_true",
                        help="torch's own choices instead: a thread per logical CPU, OpenMP's default wait policy.")
    parser.add_argument("--out", default=None, help="Also write the numbers to this JSON file.")
    args = parser.parse_args()

    from cfattack.threads import choose_threads, physical_cores

    env = {**os.environ}
    for item in args.env:
        key, _, value = item.partition("=")
        env[key] = value
    if args.torch_defaults:
        env.setdefault("CFATTACK_THREADS", str(os.cpu_count() or 1))
    choice = choose_threads(None, env)
    cpu_model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), platform.processor() or platform.machine())
    wait = env.get("OMP_WAIT_POLICY", "unset (OpenMP default)" if args.torch_defaults else "PASSIVE (set by cfattack)")
    machine = (f"{cpu_model}, {os.cpu_count()} logical / {physical_cores()} physical cores; each process: "
               f"{choice.count} torch threads ({choice.reason}), OMP_WAIT_POLICY={wait}")
    print(machine)

    alone: list[float] = []
    together: list[list[float]] = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        run_together(1, Path(tmp) / "warm-up", env, args.torch_defaults)  # file caches, like any second run
        busy0 = _cpu_seconds()
        children0, wall0 = _children_cpu(), time.perf_counter()
        for r in range(args.rounds):
            alone += run_together(1, Path(tmp) / f"alone{r}", env, args.torch_defaults)
            together.append(run_together(2, Path(tmp) / f"together{r}", env, args.torch_defaults))
            print(f"round {r + 1}: alone {alone[-1]:.1f} s, together {together[-1][0]:.1f} s and "
                  f"{together[-1][1]:.1f} s", flush=True)
    busy1 = _cpu_seconds()
    wall = time.perf_counter() - wall0
    ours = _children_cpu() - children0
    others = max(0.0, (busy1 - busy0) - ours) / wall

    reference = statistics.median(alone)
    ratios = [t / reference for pair in together for t in pair]
    worst = max(ratios)
    verdict = "within" if worst <= BAR else "NOT within"
    print(f"alone: median {reference:.1f} s (runs {', '.join(f'{t:.1f}' for t in alone)})")
    print(f"two at once: each {', '.join(f'{r:.2f}x' for r in ratios)} of alone; worst {worst:.2f}x, "
          f"{verdict} {BAR}x")
    print(f"other work on the machine meanwhile: {others:.2f} cores busy on average "
          f"(load average before {load_before[0]:.1f}, after {os.getloadavg()[0]:.1f})")
    if args.out:
        Path(args.out).write_text(json.dumps({
            "command": "cfattack " + " ".join(COMMAND) + " --out DIR", "machine": machine,
            "rounds": args.rounds, "env": args.env, "torch_defaults": args.torch_defaults,
            "alone_seconds": alone, "together_seconds": together,
            "median_alone_seconds": reference, "ratios": ratios, "worst_ratio": worst, "bar": BAR,
            "other_cores_busy": others, "load_average_before": load_before[0],
            "date": time.strftime("%Y-%m-%d"),
        }, indent=2) + "\n")


if __name__ == "__main__":
    main()
