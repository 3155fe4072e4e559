#!/usr/bin/env bash
# GPU check of the compiled StyleGAN3 ops, in one go, within ~200 s on an H200 (CHECK_BUDGET_S):
# GPU name, build of the extension (timed; ~60 s on a fresh machine, cached after), all the
# CUDA tests (no -x: every failure is reported), the benchmark (batches 1 8 32, then the
# torch.compile'd subset, then the generator) in whatever time is left.
#
#   OUT=/path/to/results bash scripts/gpu_check_ops.sh
#   OUT=/path/to/results CHECK_BUDGET_S=300 bash scripts/gpu_check_ops.sh   # more benchmark time
#
# Run from the repository root with a CUDA build of torch, nvcc and ninja available
# (pydantic, if needed, via PYTHONPATH). Writes under $OUT: gpu.txt, build.txt, build.log
# (the full compiler log), cuda_tests.log, ops_bench.log, ops.json (rewritten after every
# benchmark case) and summary.txt. Every step has its own time limit so one hang cannot
# eat the others' time.
set -u -o pipefail

: "${OUT:?set OUT to a directory for the results}"
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export MAX_JOBS=${MAX_JOBS:-16}
# A private build cache (not under $OUT: object files need not come back).
export CFATTACK_CACHE=${CFATTACK_CACHE:-/tmp/cfattack-gpu-check-cache}
export PYTHONUNBUFFERED=1
SUMMARY="$OUT/summary.txt"
CHECK_BUDGET_S=${CHECK_BUDGET_S:-200}
SECONDS=0
: > "$SUMMARY"

step() {  # step NAME LIMIT_S LOGFILE COMMAND...
    local name=$1 limit=$2 log=$3
    shift 3
    local start=$SECONDS
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$log"
    local rc=${PIPESTATUS[0]}
    echo "$name: exit $rc after $((SECONDS - start)) s (limit $limit s)" | tee -a "$SUMMARY"
    return "$rc"
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | tee "$OUT/gpu.txt"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())" \
    2>&1 | tee -a "$OUT/gpu.txt"

# 1. Build (timed). The build log lives in the cache; copy it next to the results.
step build 150 "$OUT/build.txt" "$PY" - <<'PYEOF'
import time
from stylegan3_ops import _build
tic = time.monotonic()
status = _build.build_status(build=True)
print(f"ok={status.ok} seconds={time.monotonic() - tic:.1f} reason={status.reason}")
print(f"log={status.log_path}")
raise SystemExit(0 if status.ok else 1)
PYEOF
build_rc=$?
log_path=$(sed -n 's/^log=//p' "$OUT/build.txt" | tail -1)
[ -n "$log_path" ] && [ -f "$log_path" ] && cp "$log_path" "$OUT/build.log"

if [ "$build_rc" -eq 0 ]; then
    # 2. CUDA tests, all of them (no -x; addopts overridden: plugins like pytest-timeout may be missing).
    step cuda_tests 150 "$OUT/cuda_tests.log" "$PY" -m pytest -m cuda tests/stylegan3_ops -q \
        -p no:cacheprovider -o addopts="-ra" --durations=5 -W ignore::pytest.PytestConfigWarning
    # 3. Benchmark in the time left of CHECK_BUDGET_S (at least 45 s): the script stops starting
    #    new cases when its budget is spent and lists what it skipped; the hard limit adds 40 s.
    left=$((CHECK_BUDGET_S - SECONDS - 5))
    [ "$left" -lt 45 ] && left=45
    compile_budget=$((left / 3))
    [ "$compile_budget" -gt 40 ] && compile_budget=40
    step benchmark $((left + 40)) "$OUT/ops_bench.log" "$PY" benchmarks/ops.py --json "$OUT/ops.json" \
        --batches 1 8 32 --time-budget-s "$left" --compile-budget-s "$compile_budget" --compile-case-limit-s 25
else
    echo "build failed: skipping tests and benchmark (see $OUT/build.log)" | tee -a "$SUMMARY"
fi
cat "$SUMMARY"
