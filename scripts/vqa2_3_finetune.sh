#!/usr/bin/env bash
# VQA line, stage 3 (configs/vqa/fine-tune.json): fine-tuning on VQA train+val (KL to the soft scores), best/ on
# minival; global batch 64, lr 2e-5, 10 epochs, warmup 0.1, BertAdam (per-tensor clip 1.0: the config's
# grad_norm 0.25 is never read by the original), pooler frozen, patience 3; then the EvalAI result.json for
# test2015 (first machine only).
# Env: DATA, INIT (stage-2 model dir or a converted visualbert-vqa-pre), OUT, and those of scripts/_common.sh.
source "$(dirname "$0")/_common.sh"
OUT="${OUT:-$ROOT/runs/vqa2}"
BATCH=$(per_proc_batch 64)
launch "$ROOT/VQA2/run_vqa2.py" --imdb_dir "$DATA/vqa2/imdb" --features "$DATA/detectron_fix_100" \
  --train_split trainval --eval_split minival --model_name_or_path "${INIT:-$ROOT/runs/vqa2_pre/best}" \
  --output_dir "$OUT" --batch_size "$BATCH" --learning_rate 2e-5 --num_train_epochs 10 --warmup 0.1 \
  --max_seq_length 128 "${TRAIN_FLAGS[@]}" "$@"
if first_node; then
  run "$PY" "$ROOT/VQA2/run_predict.py" --model_dir "$OUT/best" --imdb_dir "$DATA/vqa2/imdb" \
    --features "$DATA/detectron_fix_100" --split test2015 --output_dir "$OUT/test2015"
fi
