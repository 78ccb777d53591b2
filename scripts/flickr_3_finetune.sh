#!/usr/bin/env bash
# Flickr30K line, stage 3 (configs/flickr/fine-tune.json): region-to-phrase grounding (KL divergence to the
# uniform distribution over the proposals of IoU >= 0.5), best/ by R@1 on val; global batch 32, lr 2e-5,
# 5 epochs, warmup 0.1, BertAdam, pooler frozen, patience 3; then R@1/5/10 and predictions for val and test
# (first machine only).
# Env: DATA (as stage 2), INIT (stage-2 model dir), OUT, and those of scripts/_common.sh.
source "$(dirname "$0")/_common.sh"
OUT="${OUT:-$ROOT/runs/flickr30k}"
BATCH=$(per_proc_batch 32)
launch "$ROOT/Flickr30K/run_flickr.py" --data_dir "$DATA/flickr30k/Flickr30kEntities" --features "$DATA/flickr30k" \
  --train_split train --eval_split val --model_name_or_path "${INIT:-$ROOT/runs/flickr_pre/best}" \
  --output_dir "$OUT" --batch_size "$BATCH" --learning_rate 2e-5 --num_train_epochs 5 --warmup 0.1 \
  --max_seq_length 128 "${TRAIN_FLAGS[@]}" "$@"
if first_node; then
  for split in val test; do
    run "$PY" "$ROOT/Flickr30K/run_predict.py" --model_dir "$OUT/best" --data_dir "$DATA/flickr30k/Flickr30kEntities" \
      --features "$DATA/flickr30k" --split "$split" --output_dir "$OUT/$split"
  done
fi
