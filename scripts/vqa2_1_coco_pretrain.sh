#!/usr/bin/env bash
# VQA line, stage 1: COCO captions pretraining from BERT (MLM + sentence-image), batch 48, lr 5e-5, 10 epochs.
# As the original (expand_coco + exclude_minival): when $DATA/vqa2/imdb/imdb_minival2014.npy exists, trains on
# the captions of train2014 + val2014 minus the images of VQA minival (--train_split train2014+val2014
# --exclude_minival ...) with no caption evaluation (val2014 is in training; minival stays held out for VQA);
# without that file, falls back to train2014 with val2014 captions for evaluation. Later arguments override.
# Env: DATA (root with coco/annotations, detectron_fix_100 and optionally vqa2/imdb), BERT (HF bert-base-uncased
# dir), OUT, GPUS.
source "$(dirname "$0")/_common.sh"
MINIVAL="$DATA/vqa2/imdb/imdb_minival2014.npy"
if [ -f "$MINIVAL" ]; then
  SPLITS=(--train_split train2014+val2014 --exclude_minival "$MINIVAL" --eval_split "")
else
  echo "note: $MINIVAL not found; pretraining on train2014 captions only (minival not excluded)" >&2
  SPLITS=(--train_split train2014 --eval_split val2014)
fi
launch "$ROOT/run_pretrain.py" --dataset coco_captions --data_dir "$DATA/coco/annotations" \
  --features "$DATA/detectron_fix_100" --bert_model "$BERT" --output_dir "${OUT:-$ROOT/runs/vqa2_coco_pre}" \
  "${SPLITS[@]}" --batch_size "$(per_proc_batch 48)" --learning_rate 5e-5 --num_train_epochs 10 --warmup 0.1 "$@"
