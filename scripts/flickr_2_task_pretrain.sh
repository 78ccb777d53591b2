#!/usr/bin/env bash
# Flickr30K line, stage 2 (configs/flickr/pre-train.json): task pre-training, masked LM on the Flickr30K
# Entities train captions (no caption-image match), validated on val; BAN's proposals with the 6 spatial
# features (2054-d); global batch 32, lr 5e-5, 10 epochs, warmup 0.1, BertAdam, pooler frozen, patience 3.
# Env: DATA (flickr30k/Flickr30kEntities/{Sentences,Annotations,train.txt,val.txt,test.txt} and BAN's
# flickr30k/{train,val,test}.hdf5 + *_imgid2idx.pkl), INIT (stage-1 model dir), OUT, and those of
# scripts/_common.sh.
source "$(dirname "$0")/_common.sh"
BATCH=$(per_proc_batch 32)
launch "$ROOT/run_pretrain.py" --dataset flickr30k --data_dir "$DATA/flickr30k/Flickr30kEntities" \
  --features "$DATA/flickr30k" --train_split train --eval_split val \
  --model_name_or_path "${INIT:-$ROOT/runs/flickr_coco_pre/best}" --output_dir "${OUT:-$ROOT/runs/flickr_pre}" \
  --batch_size "$BATCH" --learning_rate 5e-5 --num_train_epochs 10 --warmup 0.1 --max_seq_length 128 \
  "${TRAIN_FLAGS[@]}" "$@"
