#!/usr/bin/env bash
# VCR line from the images, stage 3a (configs/vcr/fine-tune-qa.json): Q->A, the detector trained too
# (freeze_detector false); global batch 32, lr 2e-5, 8 epochs, warmup 0.1, BertAdam, pooler frozen, patience 3;
# best/ on val, then Q->A on val (first machine only).
# Env: DATA (vcr/{train,val}.jsonl + vcr/vcr1images), INIT (default runs/vcr_pre/best, or a converted
# vcr_pre_train.th), OUT, and those of scripts/_common.sh.
source "$(dirname "$0")/_common.sh"
OUT="${OUT:-$ROOT/runs/vcr_qa}"
BATCH=$(per_proc_batch 32)
launch "$ROOT/VCR/run_vcr.py" --mode qa --data_dir "$DATA/vcr" --images "$DATA/vcr/vcr1images" \
  --model_name_or_path "${INIT:-$ROOT/runs/vcr_pre/best}" --output_dir "$OUT" --batch_size "$BATCH" \
  --learning_rate 2e-5 --num_train_epochs 8 --warmup 0.1 --max_seq_length 128 "${TRAIN_FLAGS[@]}" "$@"
if first_node; then
  run "$PY" "$ROOT/VCR/run_predict.py" --model_dir "$OUT/best" --data_dir "$DATA/vcr" --images "$DATA/vcr/vcr1images" \
    --split val --output_dir "$OUT/val"
fi
