#!/usr/bin/env bash
# NLVR2 line, stage 3 (configs/nlvr2/fine-tune.json): fine-tuning (CE), best/ on dev; 144 regions, global batch
# 64, lr 2e-5, 10 epochs, warmup 0.1, BertAdam, pooler frozen, patience 3; then the dev and test1 prediction
# CSVs (first machine only).
# Env: DATA, INIT, OUT, and those of scripts/_common.sh.
source "$(dirname "$0")/_common.sh"
OUT="${OUT:-$ROOT/runs/nlvr2}"
BATCH=$(per_proc_batch 64)
launch "$ROOT/NLVR2/run_nlvr2.py" --data_dir "$DATA/nlvr2" --features "$DATA/detectron_fix_144" \
  --model_name_or_path "${INIT:-$ROOT/runs/nlvr2_pre/best}" --output_dir "$OUT" \
  --batch_size "$BATCH" --learning_rate 2e-5 --num_train_epochs 10 --warmup 0.1 --max_seq_length 128 \
  "${TRAIN_FLAGS[@]}" "$@"
if first_node; then
  for split in dev test1; do
    run "$PY" "$ROOT/NLVR2/run_predict.py" --model_dir "$OUT/best" --data_dir "$DATA/nlvr2" \
      --features "$DATA/detectron_fix_144" --split "$split" --output_dir "$OUT/$split"
  done
fi
