#!/usr/bin/env bash
# Flickr30K line, stage 1 (configs/flickr/coco-pre-train.json): COCO captions pre-training from BERT (MLM +
# caption-image match, false_caption_ratio 0.5) on 2054-d COCO features (image_feature_type "flickr": BAN's
# bottom-up features, 10-100 boxes an image, with the 6 spatial features appended); global batch 32, lr 5e-5,
# 10 epochs, warmup 0.1, BertAdam, pooler frozen, patience 3. Splits as the other lines: train2014 + val2014
# captions minus the VQA minival images (expand_coco + exclude_minival), validated on their val2014 captions.
# Env: DATA (coco/annotations, vqa2/imdb/imdb_minival2014.npy or MINIVAL), COCO_FEATURES (the 2054-d COCO
# features keyed COCO_<set>_<id:012d>: tools/convert_ban_hdf5.py writes them from BAN's COCO
# {train,val}36.hdf5 + *_imgid2idx.pkl), BERT, OUT, and those of scripts/_common.sh.
source "$(dirname "$0")/_common.sh"
coco_splits
BATCH=$(per_proc_batch 32)
launch "$ROOT/run_pretrain.py" --dataset coco_captions --data_dir "$DATA/coco/annotations" \
  --features "${COCO_FEATURES:?set COCO_FEATURES to the 2054-d COCO features (tools/convert_ban_hdf5.py)}" \
  --bert_model "$BERT" --output_dir "${OUT:-$ROOT/runs/flickr_coco_pre}" "${SPLITS[@]}" --batch_size "$BATCH" \
  --learning_rate 5e-5 --num_train_epochs 10 --warmup 0.1 --max_seq_length 128 "${TRAIN_FLAGS[@]}" "$@"
