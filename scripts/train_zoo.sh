#!/usr/bin/env bash
# Train the classifier zoo on Fashion-MNIST: one run folder per member under $OUT (runs/zoo/<name>/),
# each with config.json, metrics.json (test accuracy, macro-F1, silhouette, Davies-Bouldin, kNN
# purity, dead units, mistake severity), checkpoint.pt and classifier.pt. Runs resume: a killed
# script started again continues each member from its last finished epoch, and finished members
# are skipped in seconds.
#
#   scripts/train_zoo.sh                                  # CPU, one thread (about 1 h per member)
#   DEVICE=cuda THREADS=8 scripts/train_zoo.sh            # a GPU machine
#   ONLY="lcc semantic" scripts/train_zoo.sh              # some members only
#
# Members (all: CNN backbone, 128-d embedding, 15 epochs, AdamW 2e-3, cosine, batch 128, seed 0;
# the loss settings are the ClassifierTrainingConfig defaults, written to each config.json):
#   baseline      ce + linear head            (the control; same recipe as the default bundle's)
#   offset-l2     ce + OffsetL2 head          (Oursland 2025: logits = -||alpha_i (x - mu_i)||)
#   latent-boost  latent_boost + linear       (CE + 0.5 Magnet term, warm-up 1 epoch, margin 0 -> 1)
#   lcc           lcc + linear                (CE + 1.0 LCC, reclustering 20k images/epoch from epoch 4)
#   semantic      semantic + linear           (CE + 1.0 KL to hierarchy soft targets, T = 0.5)
# Every member must reach >= 88% test accuracy; the summary at the end flags any that does not.
set -euo pipefail

DEVICE=${DEVICE:-cpu}
THREADS=${THREADS:-1}
EPOCHS=${EPOCHS:-15}
SEED=${SEED:-0}
OUT=${OUT:-runs/zoo}
ONLY=${ONLY:-}
CFATTACK=${CFATTACK:-cfattack}
PYTHON=${PYTHON:-python3}  # the summary needs only the standard library
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$THREADS}

common=(--data fashion-mnist --epochs "$EPOCHS" --seed "$SEED" --threads "$THREADS" --device "$DEVICE")

member() {
    local name=$1
    shift
    if [[ -n "$ONLY" && " $ONLY " != *" $name "* ]]; then
        return 0
    fi
    echo "== $name: $CFATTACK train classifier --out $OUT/$name ${common[*]} $*"
    "$CFATTACK" train classifier --out "$OUT/$name" "${common[@]}" "$@"
}

member baseline     --loss ce           --head linear
member offset-l2    --loss ce           --head offset_l2
member latent-boost --loss latent_boost --head linear
member lcc          --loss lcc          --head linear
member semantic     --loss semantic     --head linear

# Summary: one line per finished member; non-zero exit if one is below the 88% bar.
"$PYTHON" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path

out, low = Path(sys.argv[1]), []
print(f"{'member':<14}{'acc':>8}{'macroF1':>9}{'silh.':>8}{'DB':>7}{'kNN':>7}{'dead':>6}{'sever.':>8}{'epoch':>7}{'min':>7}")
for run in sorted(p for p in out.iterdir() if (p / "metrics.json").is_file()):
    m = json.loads((run / "metrics.json").read_text())
    if not m.get("finished"):
        print(f"{run.name:<14} not finished ({m.get('epochs_done')} epochs)")
        continue
    t = m["test"]
    fmt = lambda v, spec: format(v, spec) if isinstance(v, (int, float)) else "-"
    print(f"{run.name:<14}{t['accuracy']:>8.2%}{t['macro_f1']:>9.4f}{fmt(t.get('silhouette'), '>8.3f')}"
          f"{fmt(t.get('davies_bouldin'), '>7.2f')}{fmt(t.get('knn_purity'), '>7.3f')}{fmt(t.get('dead_units'), '>6d')}"
          f"{fmt(t.get('mistake_severity'), '>8.3f')}{m['best_epoch']:>7d}{m['seconds'] / 60:>7.1f}")
    if t["accuracy"] < 0.88:
        low.append(run.name)
if low:
    sys.exit(f"below 88% test accuracy: {', '.join(low)}")
EOF
