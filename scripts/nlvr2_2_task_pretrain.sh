#!/usr/bin/env bash
# NLVR2 line, stage 2: task pretraining on NLVR2 train (MLM + label through the sentence-image head),
# batch 64, lr 5e-5, 10 epochs. Env: DATA, INIT, OUT, GPUS.
source "$(dirname "$0")/_common.sh"
launch "$ROOT/run_pretrain.py" --dataset nlvr2 --data_dir "$DATA/nlvr2" --features "$DATA/detectron_fix_144" \
  --model_name_or_path "${INIT:-$ROOT/runs/nlvr2_coco_pre/final}" --output_dir "${OUT:-$ROOT/runs/nlvr2_pre}" \
  --batch_size "$(per_proc_batch 64)" --learning_rate 5e-5 --num_train_epochs 10 --warmup 0.1 "$@"
