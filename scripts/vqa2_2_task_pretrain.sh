#!/usr/bin/env bash
# VQA line, stage 2: task pretraining on VQA train+val text (MLM), batch 64, lr 5e-5, 10 epochs.
# Env: DATA, INIT (stage-1 model dir, e.g. runs/vqa2_coco_pre/final or a converted visualbert-vqa-coco-pre), OUT, GPUS.
source "$(dirname "$0")/_common.sh"
launch "$ROOT/run_pretrain.py" --dataset vqa2 --data_dir "$DATA/vqa2/imdb" --features "$DATA/detectron_fix_100" \
  --train_split trainval --eval_split minival --model_name_or_path "${INIT:-$ROOT/runs/vqa2_coco_pre/final}" \
  --output_dir "${OUT:-$ROOT/runs/vqa2_pre}" --batch_size "$(per_proc_batch 64)" --learning_rate 5e-5 \
  --num_train_epochs 10 --warmup 0.1 "$@"
