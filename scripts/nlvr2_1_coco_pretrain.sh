#!/usr/bin/env bash
# NLVR2 line, stage 1 (configs/nlvr2/coco-pre-train.json): COCO captions pre-training from BERT on 1024-d
# features capped at 144 regions; global batch 64, lr 5e-5, 10 epochs, warmup 0.1, BertAdam, pooler frozen,
# patience 3. Trains on train2014 + val2014 captions minus the VQA minival images (expand_coco +
# exclude_minival, as the VQA line) and validates on the val2014 captions of the minival images.
# Env: DATA (coco/annotations, vqa2/imdb/imdb_minival2014.npy or MINIVAL), COCO_FEATURES (the 1024-d COCO
# features), BERT, OUT, and those of scripts/_common.sh.
source "$(dirname "$0")/_common.sh"
coco_splits
BATCH=$(per_proc_batch 64)
launch "$ROOT/run_pretrain.py" --dataset coco_captions --data_dir "$DATA/coco/annotations" \
  --features "${COCO_FEATURES:?set COCO_FEATURES to the 1024-d COCO features}" --max_regions 144 --bert_model "$BERT" \
  --output_dir "${OUT:-$ROOT/runs/nlvr2_coco_pre}" "${SPLITS[@]}" --batch_size "$BATCH" --learning_rate 5e-5 \
  --num_train_epochs 10 --warmup 0.1 --max_seq_length 128 "${TRAIN_FLAGS[@]}" "$@"
