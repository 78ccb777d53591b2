#!/usr/bin/env bash
# VQA line, stage 2 (configs/vqa/pre-train.json): task pre-training, MLM on "question ? answer" of VQA train+val
# (the answer appended as the original's vqa_dataset.py does), validated on minival; global batch 64, lr 5e-5,
# 10 epochs, warmup 0.1, BertAdam, pooler frozen, patience 3.
# Env: DATA, INIT (stage-1 model dir, e.g. runs/vqa2_coco_pre/best or a converted visualbert-vqa-coco-pre), OUT,
# and those of scripts/_common.sh.
source "$(dirname "$0")/_common.sh"
BATCH=$(per_proc_batch 64)
launch "$ROOT/run_pretrain.py" --dataset vqa2 --data_dir "$DATA/vqa2/imdb" --features "$DATA/detectron_fix_100" \
  --train_split trainval --eval_split minival --model_name_or_path "${INIT:-$ROOT/runs/vqa2_coco_pre/best}" \
  --output_dir "${OUT:-$ROOT/runs/vqa2_pre}" --batch_size "$BATCH" --learning_rate 5e-5 --num_train_epochs 10 \
  --warmup 0.1 --max_seq_length 128 "${TRAIN_FLAGS[@]}" "$@"
