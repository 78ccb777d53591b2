#!/usr/bin/env bash
# VQA line, stage 1 (configs/vqa/coco-pre-train.json): COCO captions pre-training from BERT (MLM + caption-image
# match, false_caption_ratio 0.5) on 2048-d detectron_fix_100 features; global batch 48, lr 5e-5, 10 epochs,
# warmup 0.1, BertAdam, pooler frozen, early stopping after 3 epochs without a better validation loss.
# Trains on train2014 + val2014 captions minus the VQA minival images (expand_coco + exclude_minival) and
# validates on the val2014 captions of the minival images, as the original.
# Env: DATA (coco/annotations, detectron_fix_100, vqa2/imdb/imdb_minival2014.npy or MINIVAL), BERT (HF
# bert-base-uncased dir), OUT, and those of scripts/_common.sh (GPUS, NNODES, MASTER, NODE_RANK, DRY_RUN, ...).
source "$(dirname "$0")/_common.sh"
coco_splits
BATCH=$(per_proc_batch 48)
launch "$ROOT/run_pretrain.py" --dataset coco_captions --data_dir "$DATA/coco/annotations" \
  --features "$DATA/detectron_fix_100" --bert_model "$BERT" --output_dir "${OUT:-$ROOT/runs/vqa2_coco_pre}" \
  "${SPLITS[@]}" --batch_size "$BATCH" --learning_rate 5e-5 --num_train_epochs 10 --warmup 0.1 \
  --max_seq_length 128 "${TRAIN_FLAGS[@]}" "$@"
