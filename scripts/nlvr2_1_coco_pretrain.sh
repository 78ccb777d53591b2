#!/usr/bin/env bash
# NLVR2 line, stage 1: COCO captions pretraining with 1024-d (<=144 boxes) features, batch 64, lr 5e-5, 10 epochs.
# Env: DATA (coco/annotations + COCO_FEATURES, the 1024-d COCO features), BERT, OUT, GPUS.
source "$(dirname "$0")/_common.sh"
launch "$ROOT/run_pretrain.py" --dataset coco_captions --data_dir "$DATA/coco/annotations" \
  --features "${COCO_FEATURES:?set COCO_FEATURES to the 1024-d COCO features}" --max_regions 144 --bert_model "$BERT" \
  --output_dir "${OUT:-$ROOT/runs/nlvr2_coco_pre}" --batch_size "$(per_proc_batch 64)" --learning_rate 5e-5 \
  --num_train_epochs 10 --warmup 0.1 "$@"
