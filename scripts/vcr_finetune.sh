#!/usr/bin/env bash
# VCR: Q->A (8 epochs) and QA->R (12 epochs), batch 32, lr 2e-5, from visualbert-vcr-pre; then Q->A, QA->R, Q->AR on val.
# (COCO / task pretraining for VCR: run_pretrain.py as in the other lines with the VCR-detector features.)
# Env: DATA (vcr/{train,val}.jsonl + vcr/features), INIT (converted visualbert-vcr-pre), OUT, GPUS.
source "$(dirname "$0")/_common.sh"
OUT="${OUT:-$ROOT/runs/vcr}"
for mode in qa qar; do
  epochs=8; [ "$mode" = qar ] && epochs=12
  launch "$ROOT/VCR/run_vcr.py" --mode "$mode" --data_dir "$DATA/vcr" --features "$DATA/vcr/features" \
    --model_name_or_path "${INIT:?set INIT to a converted visualbert-vcr-pre}" --output_dir "$OUT/$mode" \
    --batch_size "$(per_proc_batch 32)" --learning_rate 2e-5 --num_train_epochs "$epochs" --warmup 0.1 "$@"
done
"$PY" "$ROOT/VCR/run_predict.py" --model_dir "$OUT/qa/best" --qar_model_dir "$OUT/qar/best" --data_dir "$DATA/vcr" \
  --features "$DATA/vcr/features" --split val --output_dir "$OUT/val"
