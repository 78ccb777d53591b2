#!/usr/bin/env bash
# NLVR2 line, stage 3: fine-tuning (CE), batch 64, lr 2e-5, 10 epochs; then dev and test1 predictions CSVs.
# Env: DATA, INIT, OUT, GPUS.
source "$(dirname "$0")/_common.sh"
OUT="${OUT:-$ROOT/runs/nlvr2}"
launch "$ROOT/NLVR2/run_nlvr2.py" --data_dir "$DATA/nlvr2" --features "$DATA/detectron_fix_144" \
  --model_name_or_path "${INIT:-$ROOT/runs/nlvr2_pre/final}" --output_dir "$OUT" \
  --batch_size "$(per_proc_batch 64)" --learning_rate 2e-5 --num_train_epochs 10 --warmup 0.1 "$@"
for split in dev test1; do
  "$PY" "$ROOT/NLVR2/run_predict.py" --model_dir "$OUT/best" --data_dir "$DATA/nlvr2" \
    --features "$DATA/detectron_fix_144" --split "$split" --output_dir "$OUT/$split"
done
