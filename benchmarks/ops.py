"""StyleGAN3 ops on a CUDA GPU: the compiled kernels vs the reference vs torch.compile'd reference.

For each op at the layer shapes of the official 512px StyleGAN3-T and -R generators
(batch 1, 8 and 32) it times the forward pass and forward+backward (CUDA events, warm-up,
median of repeats) of three implementations, in one run:

- ``cuda``: stylegan3_ops' compiled kernels (impl="cuda");
- ``ref``: the pure-PyTorch reference (impl="ref");
- ``compiled``: ``torch.compile`` of the reference, only for a representative subset
  (COMPILED_SUBSET: one T and one R filtered_lrelu layer, upfirdn2d, bias_act) at one batch
  (8), each compiled from scratch with its compile wall time recorded, each under a
  per-case limit and all under a compile budget; cases past the budget are skipped and
  listed as such (compiling one case took > 120 s with dynamic shapes on the first H200 run).

and prints the times and the ratios ref/cuda and compiled/cuda (> 1: the kernels win).
Then the whole synthesis network (random weights, real 512px T and R architectures):
images/s with the CUDA ops vs the reference, in the generator's mixed precision (fp16 in
the high-resolution layers) and in float32. The eager cases run first (batch 8 first),
then the compiled subset, then the generator; ``--time-budget-s`` stops starting new work
once spent, and the JSON file is rewritten after every case::

    python benchmarks/ops.py                       # table
    python benchmarks/ops.py --json ops.json       # plus machine-readable results
    python benchmarks/ops.py --batches 1 8 --no-compile --skip-generator
    python benchmarks/ops.py --time-budget-s 90 --compile-budget-s 40 --json ops.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import platform
import signal
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from stylegan3_ops import bias_act, filtered_lrelu, upfirdn2d  # noqa: E402


@dataclass(frozen=True)
class Layer:
    """One filtered_lrelu call of a synthesis layer: input [C, size, size] and its parameters."""

    name: str
    channels: int
    size: int
    up: int
    fu_taps: int
    fd_2d: bool
    padding: tuple[int, int, int, int]
    fp16: bool


# From cfattack.stylegan.generator at img_resolution=512 (T: channel_base 32768, channel_max 512;
# R: 65536, 1024, conv_kernel 1, radial filters): a low-, a mid- and the highest-resolution layer.
LAYERS = {
    "T": [
        Layer("T/L2_52_512", 512, 38, 4, 24, False, (-6, -9, -6, -9), False),
        Layer("T/L8_276_323", 323, 150, 4, 24, False, (-6, -9, -6, -9), True),
        Layer("T/L12_532_64", 64, 534, 2, 12, False, (9, 8, 9, 8), True),
    ],
    "R": [
        Layer("R/L0_36_1024", 1024, 36, 2, 12, True, (11, 10, 11, 10), False),
        Layer("R/L8_276_645", 645, 148, 4, 24, True, (-2, -5, -2, -5), True),
        Layer("R/L13_512_128", 128, 532, 2, 12, False, (-9, -10, -9, -10), True),
    ],
}


@dataclass
class Row:
    op: str
    case: str
    batch: int
    dtype: str
    ms: dict = field(default_factory=dict)  # "<impl>/<fwd|fwdbwd>" -> milliseconds, or a str reason
    compile_s: dict = field(default_factory=dict)  # torch.compile wall time of the first call: "fwd", "fwdbwd"

    def ratio(self, slow: str, fast: str = "cuda", kind: str = "fwdbwd") -> float | None:
        a, b = self.ms.get(f"{slow}/{kind}"), self.ms.get(f"{fast}/{kind}")
        return a / b if isinstance(a, float) and isinstance(b, float) and b > 0 else None


@dataclass(frozen=True)
class Case:
    """One op at one shape: ``make(impl)`` gives ``fn(x, b)``; inputs ``[N, *shape]`` and ``[C]``."""

    op: str
    name: str
    shape: tuple[int, int, int]
    dtype: torch.dtype
    make: Callable[[str], Callable]
    needs_grad: tuple[bool, bool]
    ref_gb: Callable[[int], float] = lambda batch: 0.0  # reference's rough peak memory at a batch


def lowpass(taps: int, cutoff: float = 0.25) -> np.ndarray:
    """A Kaiser-windowed sinc low-pass (like the generator's filters; no scipy needed)."""
    n = np.arange(taps) - (taps - 1) / 2
    f = np.sinc(2 * cutoff * n) * np.kaiser(taps, 6.0)
    return (f / f.sum()).astype(np.float32)


def cuda_time(fn, min_reps: int = 3, max_reps: int = 15, target_s: float = 0.1) -> float:
    """Median milliseconds of ``fn()`` over CUDA-event-timed repeats, after one warm-up call."""
    fn()
    torch.cuda.synchronize()
    times: list[float] = []
    spent = 0.0
    while len(times) < max_reps and (len(times) < min_reps or spent < target_s):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
        spent += times[-1] / 1000
    return statistics.median(times)


class CaseTimeout(Exception):
    """A compiled case ran past its wall-time limit."""


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise CaseTimeout in the main thread after ``seconds`` (SIGALRM; no limit where unavailable)."""
    if seconds == float("inf") or not hasattr(signal, "setitimer"):
        yield
        return

    def handler(signum, frame):
        raise CaseTimeout(f"over {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _fwd_bwd(fn, leaves):
    def run():
        out = fn(*leaves)
        return torch.autograd.grad(out, [t for t in leaves if t.requires_grad], torch.ones_like(out))

    return run


def measure(row: Row, impl: str, fn, inputs, needs_grad) -> None:
    """Fill ``row.ms`` for one impl: forward and forward+backward (and compile times for "compiled")."""
    try:
        leaves = [t.detach().requires_grad_(g) for t, g in zip(inputs, needs_grad)]
        fwd_bwd = _fwd_bwd(fn, leaves)
        if impl == "compiled":  # time the first calls separately: they compile
            for kind, first in (("fwd", lambda: fn(*inputs)), ("fwdbwd", fwd_bwd)):
                tic = time.monotonic()
                with torch.no_grad() if kind == "fwd" else contextlib.nullcontext():
                    first()
                torch.cuda.synchronize()
                row.compile_s[kind] = round(time.monotonic() - tic, 2)
        with torch.no_grad():
            row.ms[f"{impl}/fwd"] = cuda_time(lambda: fn(*inputs))
        row.ms[f"{impl}/fwdbwd"] = cuda_time(fwd_bwd)
    except torch.cuda.OutOfMemoryError:
        row.ms[f"{impl}/fwd"] = row.ms.get(f"{impl}/fwd", "out of memory")
        row.ms[f"{impl}/fwdbwd"] = "out of memory"
        torch.cuda.empty_cache()


class Budget:
    """A wall-time budget: ``left()`` seconds until it is spent (inf: unlimited)."""

    def __init__(self, seconds: float | None) -> None:
        self.deadline = time.monotonic() + seconds if seconds else float("inf")

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def spent(self) -> bool:
        return self.left() <= 0

    def end(self) -> None:
        self.deadline = time.monotonic()


def ref_bytes(layer: Layer, batch: int) -> float:
    """Rough peak memory of the reference's forward+backward (a few upsampled intermediates)."""
    mid = (layer.size * layer.up) ** 2 * layer.channels * batch
    return 4 * mid * (2 if layer.fp16 else 4)


def filtered_lrelu_case(layer: Layer) -> Case:
    dtype = torch.float16 if layer.fp16 else torch.float32
    fu = torch.from_numpy(lowpass(layer.fu_taps, 0.5 / layer.up)).cuda()
    fd1 = torch.from_numpy(lowpass(12, 0.25)).cuda()
    fd = torch.outer(fd1, fd1).contiguous() if layer.fd_2d else fd1  # R: a non-separable 2-D filter
    kwargs = dict(up=layer.up, down=2, padding=list(layer.padding), gain=math.sqrt(2), slope=0.2, clamp=256)

    def make(impl):
        return lambda x, b: filtered_lrelu(x, fu, fd, b, impl=impl, **kwargs)

    name = layer.name + (" fd2d" if layer.fd_2d else "")
    return Case("filtered_lrelu", name, (layer.channels, layer.size, layer.size), dtype, make, (True, True),
                lambda batch: ref_bytes(layer, batch) / 2**30)  # fmt: skip


def all_cases() -> list[Case]:
    """Mid-resolution layers first, then the others; then upfirdn2d and bias_act at T/L8's shape."""
    order = [LAYERS["T"][1], LAYERS["R"][1], LAYERS["T"][0], LAYERS["R"][0], LAYERS["T"][2], LAYERS["R"][2]]
    cases = [filtered_lrelu_case(layer) for layer in order]
    f = torch.from_numpy(lowpass(12, 0.25)).cuda()
    shape = (323, 150, 150)
    cases.append(Case("upfirdn2d", "T/L8 [323, 150, 150]", shape, torch.float16,
                      lambda impl: (lambda x, b: upfirdn2d(x, f, up=2, padding=[9, 8, 9, 8], gain=4, impl=impl)),
                      (True, False)))  # fmt: skip
    cases.append(Case("bias_act", "T/L8 [323, 150, 150]", shape, torch.float16,
                      lambda impl: (lambda x, b: bias_act(x, b, act="lrelu", clamp=256, impl=impl)), (True, True)))  # fmt: skip
    return cases


# torch.compile'd reference: only these (op, case) at one batch; compiling each takes tens of seconds.
# Cheapest compile first, so that a spent budget loses the costly ones.
COMPILED_SUBSET = (("bias_act", "T/L8 [323, 150, 150]"), ("upfirdn2d", "T/L8 [323, 150, 150]"),
                   ("filtered_lrelu", "T/L8_276_323"), ("filtered_lrelu", "R/L8_276_645 fd2d"))  # fmt: skip


def _inputs(case: Case, batch: int):
    x = torch.randn(batch, *case.shape, device="cuda", dtype=case.dtype)
    b = torch.randn(case.shape[0], device="cuda", dtype=case.dtype)
    return x, b


def eager_rows(cases, batches, max_ref_gb, budget: Budget, emit) -> list[Row]:
    """cuda and ref for every case and batch (batch 8 first), until the time budget is spent."""
    rows = []
    order = sorted(batches, key=lambda n: (n != 8, batches.index(n)))
    for batch in order:
        for case in cases:
            row = Row(case.op, case.name, batch, str(case.dtype).split(".")[-1])
            rows.append(row)
            if budget.spent():
                row.ms["cuda/fwdbwd"] = row.ms["ref/fwdbwd"] = "skipped (time budget spent)"
                print(f"{case.op:<15}{case.name:<24}{batch:>4}  skipped (time budget spent)", flush=True)
                emit(row)
                continue
            x, b = _inputs(case, batch)
            measure(row, "cuda", case.make("cuda"), (x, b), case.needs_grad)
            if case.ref_gb(batch) <= max_ref_gb:
                measure(row, "ref", case.make("ref"), (x, b), case.needs_grad)
            else:
                row.ms["ref/fwdbwd"] = f"skipped (> {max_ref_gb:.0f} GB)"
            print(format_row(row), flush=True)
            emit(row)
            del x, b
            torch.cuda.empty_cache()
    return rows


def compiled_rows(cases, rows, batch, compile_budget: Budget, budget: Budget, emit, case_limit_s: float) -> None:
    """torch.compile'd reference for COMPILED_SUBSET at ``batch``, into the existing rows; each case
    stops at ``case_limit_s`` (or what is left of either budget), and once a budget is spent
    the remaining cases are skipped, each saying so."""
    by_key = {(r.op, r.case, r.batch): r for r in rows}
    by_name = {(c.op, c.name): c for c in cases}
    for key in COMPILED_SUBSET:
        case = by_name[key]
        row = by_key.get((case.op, case.name, batch))
        if row is None:
            row = Row(case.op, case.name, batch, str(case.dtype).split(".")[-1])
            rows.append(row)
        limit = min(case_limit_s, compile_budget.left(), budget.left())
        if limit <= 0:
            why = "compile budget" if compile_budget.spent() else "time budget"
            row.ms["compiled/fwd"] = row.ms["compiled/fwdbwd"] = f"skipped ({why} spent)"
            print(f"compiled {case.op} {case.name} N={batch}: SKIPPED ({why} spent)", flush=True)
            emit(row)
            continue
        tic = time.monotonic()
        try:
            torch._dynamo.reset()  # each case compiles from scratch: comparable compile times
            fn = torch.compile(case.make("ref"), dynamic=False)
            x, b = _inputs(case, batch)
            with time_limit(limit):
                measure(row, "compiled", fn, (x, b), case.needs_grad)
            del x, b
        except CaseTimeout as e:
            row.ms["compiled/fwd"] = row.ms.get("compiled/fwd", f"timed out ({e})")
            row.ms["compiled/fwdbwd"] = f"timed out ({e})"
            compile_budget.end()  # a case that hit its limit: do not start another compile
        except Exception as e:  # torch.compile can fail on a given setup; report it, keep going
            row.ms["compiled/fwd"] = row.ms["compiled/fwdbwd"] = f"failed: {type(e).__name__}: {str(e)[:200]}"
            compile_budget.end()
        row.compile_s["wall"] = round(time.monotonic() - tic, 1)
        print(format_row(row) + f"  [compiled: {row.compile_s}]", flush=True)
        emit(row)
        torch.cuda.empty_cache()


def generator_rows(batch: int, budget: "Budget | None" = None) -> list[dict]:
    """Synthesis images/s of the 512px T and R architectures (random weights), CUDA ops vs reference."""
    import os

    from cfattack.stylegan.generator import Generator

    results = []
    configs = {
        "T": dict(channel_base=32768, channel_max=512),
        "R": dict(channel_base=65536, channel_max=1024, conv_kernel=1, use_radial_filters=True),
    }
    for name, kwargs in configs.items():
        if budget is not None and budget.spent():
            results.append({"config": name, "skipped": "time budget spent"})
            print(f"generator {name}: skipped (time budget spent)", flush=True)
            continue
        try:
            torch.manual_seed(0)
            G = Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=512, img_channels=3, **kwargs).cuda()
        except ImportError as e:  # radial filters need scipy
            results.append({"config": name, "skipped": str(e)})
            print(f"generator {name}: skipped ({e})")
            continue
        G.eval()
        ws = G.mapping(torch.randn(batch, 512, device="cuda"), None)
        for precision, force_fp32 in (("mixed fp16", False), ("fp32", True)):
            entry = {"config": name, "batch": batch, "precision": precision}
            for impl in ("cuda", "ref"):
                previous = os.environ.get("CFATTACK_OPS")
                os.environ["CFATTACK_OPS"] = impl  # benchmark script only: the library never edits it
                try:
                    with torch.no_grad():
                        ms = cuda_time(lambda: G.synthesis(ws, noise_mode="const", force_fp32=force_fp32), max_reps=8)
                    entry[f"{impl}_images_per_s"] = batch / (ms / 1000)
                except torch.cuda.OutOfMemoryError:
                    entry[f"{impl}_images_per_s"] = None
                    torch.cuda.empty_cache()
                finally:
                    if previous is None:
                        os.environ.pop("CFATTACK_OPS", None)
                    else:
                        os.environ["CFATTACK_OPS"] = previous
            c, r = entry.get("cuda_images_per_s"), entry.get("ref_images_per_s")
            entry["speedup"] = c / r if c and r else None
            results.append(entry)
            print(
                f"generator {name} batch {batch} {precision:<10}  cuda {_num(c)} img/s   ref {_num(r)} img/s   "
                f"speedup {_num(entry['speedup'])}x",
                flush=True,
            )
        del G
        torch.cuda.empty_cache()
    return results


def _num(v) -> str:
    return f"{v:8.2f}" if isinstance(v, float) else f"{str(v):>8}"


def format_row(row: Row) -> str:
    cells = []
    for impl in ("cuda", "ref", "compiled"):
        for kind in ("fwd", "fwdbwd"):
            v = row.ms.get(f"{impl}/{kind}")
            cells.append(f"{v:9.3f}" if isinstance(v, float) else f"{'-':>9}")
    ratios = [row.ratio("ref", kind="fwd"), row.ratio("ref"), row.ratio("compiled", kind="fwd"), row.ratio("compiled")]
    rtxt = " ".join(f"{r:6.2f}x" if r is not None else f"{'-':>7}" for r in ratios)
    return f"{row.op:<15}{row.case:<24}{row.batch:>4} {row.dtype:<8}" + "".join(cells) + "  " + rtxt


HEADER = (
    f"{'op':<15}{'case':<24}{'N':>4} {'dtype':<8}"
    + "".join(f"{h:>9}" for h in ("cuda f", "cuda fb", "ref f", "ref fb", "comp f", "comp fb"))
    + "   ref/cuda f,fb  comp/cuda f,fb   (ms; f: forward, fb: forward+backward)"
)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, help="Also write the results to this JSON file (after every case).")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--no-compile", action="store_true", help="Skip the torch.compile'd reference.")
    parser.add_argument("--compile-batch", type=int, default=8, help="Batch of the torch.compile'd cases.")
    parser.add_argument("--compile-budget-s", type=float, default=45.0, help="Wall time allowed for torch.compile cases.")
    parser.add_argument("--compile-case-limit-s", type=float, default=30.0, help="Wall-time limit of one compiled case.")
    parser.add_argument("--time-budget-s", type=float, default=0.0,
                        help="Stop starting new cases after this many seconds (0: no limit); skipped cases are listed.")  # fmt: skip
    parser.add_argument("--max-ref-gb", type=float, default=60.0, help="Skip reference runs needing more memory.")
    parser.add_argument("--skip-generator", action="store_true")
    parser.add_argument("--generator-batch", type=int, default=8)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("benchmarks/ops.py needs a CUDA GPU (torch.cuda.is_available() is False)", file=sys.stderr)
        return 2

    from stylegan3_ops._build import build_extension, build_status

    budget = Budget(args.time_budget_s)
    tic = time.monotonic()
    build_extension(verbose=True)
    status = build_status()
    print(f"extension: {status.reason} ({time.monotonic() - tic:.1f} s)")
    torch.backends.cudnn.benchmark = False
    start = time.monotonic()
    results = {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "build": {"reason": status.reason, "seconds": status.seconds, "log": str(status.log_path)},
        "ops": [],
        "generator": [],
    }
    rows: list[Row] = []

    def save(row: Row | None = None) -> None:  # after every case, so a time limit still leaves the results so far
        if args.json:
            results["ops"] = [asdict(r) for r in rows]
            results["seconds"] = time.monotonic() - start
            args.json.write_text(json.dumps(results, indent=1))

    print(HEADER)
    cases = all_cases()
    eager_budget = Budget(0)
    eager_budget.deadline = budget.deadline - (0 if args.no_compile else args.compile_budget_s)  # keep time to compile
    rows += eager_rows(cases, args.batches, args.max_ref_gb, eager_budget, save)
    save()
    if not args.no_compile:
        print(f"\ntorch.compile'd reference (batch {args.compile_batch}, budget {args.compile_budget_s:.0f} s, "
              f"{args.compile_case_limit_s:.0f} s a case): {', '.join(c for _, c in COMPILED_SUBSET)}")  # fmt: skip
        compiled_rows(cases, rows, args.compile_batch, Budget(args.compile_budget_s), budget, save,
                      args.compile_case_limit_s)  # fmt: skip
        save()
    if not args.skip_generator:
        if budget.spent():
            print("generator: skipped (time budget spent)")
            results["generator"] = [{"skipped": "time budget spent"}]
        else:
            results["generator"] = generator_rows(args.generator_batch, budget)
    save()
    total = time.monotonic() - start

    fl = [r for r in rows if r.op == "filtered_lrelu"]
    speedups = [r.ratio("ref") for r in fl if r.ratio("ref") is not None]
    compiled = [r.ratio("compiled") for r in rows if r.ratio("compiled") is not None]
    print(f"\nfiltered_lrelu forward+backward: ref/cuda min {min(speedups, default=float('nan')):.2f}x, "
          f"median {statistics.median(speedups) if speedups else float('nan'):.2f}x over {len(speedups)} cases")  # fmt: skip
    for op in ("upfirdn2d", "bias_act"):
        r = [x.ratio("ref") for x in rows if x.op == op and x.ratio("ref") is not None]
        f = [x.ratio("ref", kind="fwd") for x in rows if x.op == op and x.ratio("ref", kind="fwd") is not None]
        print(f"{op}: ref/cuda forward min {min(f, default=float('nan')):.2f}x, "
              f"forward+backward min {min(r, default=float('nan')):.2f}x over {len(r)} cases")  # fmt: skip
    print(f"compiled/cuda forward+backward: {', '.join(f'{x:.2f}x' for x in compiled) or 'none'} over {len(compiled)} cases")
    skipped = [(f"{r.op} {r.case} N={r.batch} [{impl}]", r.ms[f"{impl}/fwdbwd"]) for r in rows
               for impl in ("cuda", "ref", "compiled") if isinstance(r.ms.get(f"{impl}/fwdbwd"), str)]  # fmt: skip
    if skipped:
        print(f"not measured ({len(skipped)}):")
        for what, why in skipped:
            print(f"  {what}: {why}")
    print(f"benchmark time {total:.1f} s")
    if args.json:
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
