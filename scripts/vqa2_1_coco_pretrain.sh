#!/usr/bin/env bash
# VQA line, stage 1: COCO captions pretraining from BERT (MLM + sentence-image), batch 48, lr 5e-5, 10 epochs.
# Env: DATA (root with coco/annotations and detectron_fix_100), BERT (HF bert-base-uncased dir), OUT, GPUS.
source "$(dirname "$0")/_common.sh"
launch "$ROOT/run_pretrain.py" --dataset coco_captions --data_dir "$DATA/coco/annotations" \
  --features "$DATA/detectron_fix_100" --bert_model "$BERT" --output_dir "${OUT:-$ROOT/runs/vqa2_coco_pre}" \
  --batch_size "$(per_proc_batch 48)" --learning_rate 5e-5 --num_train_epochs 10 --warmup 0.1 "$@"
