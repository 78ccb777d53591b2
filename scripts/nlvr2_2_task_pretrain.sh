#!/usr/bin/env bash
# NLVR2 line, stage 2 (configs/nlvr2/pre-train.json): task pre-training on NLVR2 train (MLM + the label through
# the sentence-image head), validated on dev; 144 regions, global batch 64, lr 5e-5, 10 epochs, warmup 0.1,
# BertAdam, pooler frozen, patience 3.
# Env: DATA, INIT, OUT, and those of scripts/_common.sh.
source "$(dirname "$0")/_common.sh"
BATCH=$(per_proc_batch 64)
launch "$ROOT/run_pretrain.py" --dataset nlvr2 --data_dir "$DATA/nlvr2" --features "$DATA/detectron_fix_144" \
  --max_regions 144 --model_name_or_path "${INIT:-$ROOT/runs/nlvr2_coco_pre/best}" \
  --output_dir "${OUT:-$ROOT/runs/nlvr2_pre}" --batch_size "$BATCH" --learning_rate 5e-5 --num_train_epochs 10 \
  --warmup 0.1 --max_seq_length 128 "${TRAIN_FLAGS[@]}" "$@"
