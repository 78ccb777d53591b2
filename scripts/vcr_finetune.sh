#!/usr/bin/env bash
# VCR (configs/vcr/fine-tune-qa.json, fine-tune-qar.json): Q->A (8 epochs) and QA->R (12 epochs) from
# visualbert-vcr-pre, best/ on val; global batch 32, lr 2e-5, warmup 0.1, BertAdam, pooler frozen, patience 3;
# then Q->A, QA->R, Q->AR on val (first machine only). Precomputed region features replace the original's
# end-to-end detector (see the README's table of training-setup differences).
# Env: DATA (vcr/{train,val}.jsonl + vcr/features), INIT (converted visualbert-vcr-pre), OUT, and those of
# scripts/_common.sh.
source "$(dirname "$0")/_common.sh"
OUT="${OUT:-$ROOT/runs/vcr}"
INIT="${INIT:?set INIT to a converted visualbert-vcr-pre}"
BATCH=$(per_proc_batch 32)
for mode in qa qar; do
  epochs=8; [ "$mode" = qar ] && epochs=12
  launch "$ROOT/VCR/run_vcr.py" --mode "$mode" --data_dir "$DATA/vcr" --features "$DATA/vcr/features" \
    --model_name_or_path "$INIT" --output_dir "$OUT/$mode" --batch_size "$BATCH" --learning_rate 2e-5 \
    --num_train_epochs "$epochs" --warmup 0.1 --max_seq_length 128 "${TRAIN_FLAGS[@]}" "$@"
done
if first_node; then
  run "$PY" "$ROOT/VCR/run_predict.py" --model_dir "$OUT/qa/best" --qar_model_dir "$OUT/qar/best" --data_dir "$DATA/vcr" \
    --features "$DATA/vcr/features" --split val --output_dir "$OUT/val"
fi
