#!/usr/bin/env bash
# VCR line from the images, stage 3b (configs/vcr/fine-tune-qar.json): QA->R, the detector trained too; global
# batch 32, lr 2e-5, 12 epochs, warmup 0.1, BertAdam, pooler frozen, patience 3; best/ on val. Then (first
# machine only) with the Q->A model of scripts/vcr_3_finetune_qa.sh: Q->A, QA->R, Q->AR on val and the
# leaderboard file of test (test/leaderboard.csv).
# Env: DATA (vcr/{train,val,test}.jsonl + vcr/vcr1images), INIT (default runs/vcr_pre/best), QA_MODEL (default
# runs/vcr_qa/best), OUT, and those of scripts/_common.sh.
source "$(dirname "$0")/_common.sh"
OUT="${OUT:-$ROOT/runs/vcr_qar}"
QA_MODEL="${QA_MODEL:-$ROOT/runs/vcr_qa/best}"
BATCH=$(per_proc_batch 32)
launch "$ROOT/VCR/run_vcr.py" --mode qar --data_dir "$DATA/vcr" --images "$DATA/vcr/vcr1images" \
  --model_name_or_path "${INIT:-$ROOT/runs/vcr_pre/best}" --output_dir "$OUT" --batch_size "$BATCH" \
  --learning_rate 2e-5 --num_train_epochs 12 --warmup 0.1 --max_seq_length 128 "${TRAIN_FLAGS[@]}" "$@"
if first_node; then
  for split in val test; do
    run "$PY" "$ROOT/VCR/run_predict.py" --model_dir "$QA_MODEL" --qar_model_dir "$OUT/best" --data_dir "$DATA/vcr" \
      --images "$DATA/vcr/vcr1images" --split "$split" --output_dir "$OUT/$split"
  done
fi
