#!/usr/bin/env bash
# OffsetL2 (Oursland, arXiv 2502.02103) on MNIST-5k: linear vs OffsetL2 heads on the paper's
# one-hidden-layer MLP with ReLU or Abs, and on our CNN; several seeds; mean +- std of test accuracy.
#
#   scripts/reproduce_offset_l2.sh                          # CPU, one thread
#   DEVICE=cuda SEEDS="0 1 2 3 4 5 6 7 8 9" scripts/reproduce_offset_l2.sh
#
# The paper's variants and its test accuracy (%; 20 runs, MNIST 60k, 784 -> 128 -> 10, full-batch
# SGD lr 0.001, 5,000 epochs; OffsetL2 heads 50,000 epochs):
#   mlp-relu-linear     ReLU      96.62 +- 0.17
#   mlp-abs-linear      Abs       95.87 +- 0.22
#   mlp-relu-offset_l2  ReLU-L2   97.33 +- 0.13
#   mlp-abs-offset_l2   Abs-L2    97.61 +- 0.07
# Our protocol differs, so compare the ordering, not the digits: MNIST-5k (4,000 train / 500 val /
# 500 test, split with a seeded permutation, not by row ranges: the CSV is sorted by label), 32x32
# inputs in [-1, 1] (1024 -> 128 -> 10), Adam lr 1e-3 without weight decay, batch 100, constant
# rate, no augmentation, 100 epochs, best-val epoch kept; our linear head has a bias. The CNN rows
# use the default recipe (AdamW, cosine, 2-px shifts) for 30 epochs.
set -euo pipefail

DEVICE=${DEVICE:-cpu}
THREADS=${THREADS:-1}
SEEDS=${SEEDS:-"0 1 2 3 4"}
CNN=${CNN:-1}  # CNN=0 skips the CNN rows (each takes ~13 min on one CPU thread)
OUT=${OUT:-runs/repro/offset-l2}
CFATTACK=${CFATTACK:-cfattack}
PYTHON=${PYTHON:-python3}  # the summary needs only the standard library
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$THREADS}

mlp=(--backbone mlp --embedding-dim 128 --epochs 100 --batch 100 --lr 1e-3)
mlp_config=$(mktemp)
trap 'rm -f "$mlp_config"' EXIT
echo '{"optimizer": "adam", "weight_decay": 0.0, "schedule": "constant", "warmup_steps": 0, "translate_px": 0}' > "$mlp_config"

for seed in $SEEDS; do
    common=(--data mnist-5k --seed "$seed" --threads "$THREADS" --device "$DEVICE" --quiet)
    for act in relu abs; do
        for head in linear offset_l2; do
            "$CFATTACK" train classifier --out "$OUT/mlp-$act-$head/seed$seed" "${common[@]}" "${mlp[@]}" \
                --activation "$act" --head "$head" --config "$mlp_config"
        done
    done
    if [ "$CNN" = 1 ]; then
        for head in linear offset_l2; do
            "$CFATTACK" train classifier --out "$OUT/cnn-$head/seed$seed" "${common[@]}" --epochs 30 --head "$head"
        done
    fi
done

"$PYTHON" - "$OUT" <<'EOF'
import json, statistics, sys
from pathlib import Path

out = Path(sys.argv[1])
print(f"{'variant':<22}{'runs':>5}{'test acc %':>18}{'dead units':>12}{'silhouette':>12}")
for variant in sorted(p for p in out.iterdir() if p.is_dir()):
    runs = [json.loads(m.read_text()) for m in sorted(variant.glob("seed*/metrics.json"))]
    runs = [r for r in runs if r.get("finished")]
    if not runs:
        continue
    acc = [100 * r["test"]["accuracy"] for r in runs]
    dead = [r["test"]["dead_units"] for r in runs if r["test"].get("dead_units") is not None]
    sil = [r["test"]["silhouette"] for r in runs if r["test"].get("silhouette") is not None]
    sd = statistics.stdev(acc) if len(acc) > 1 else 0.0
    print(f"{variant.name:<22}{len(runs):>5}{statistics.mean(acc):>10.2f} +- {sd:<5.2f}"
          f"{statistics.mean(dead) if dead else float('nan'):>12.1f}{statistics.mean(sil) if sil else float('nan'):>12.3f}")
EOF
