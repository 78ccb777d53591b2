#!/usr/bin/env bash
# VQA line, stage 3: fine-tuning on VQA train+val (KL to soft scores), batch 64, lr 2e-5, 10 epochs, gradient
# norm clipped at 0.25 (configs/vqa/fine-tune.json of the original release); then the
# EvalAI result.json for test2015.
# Env: DATA, INIT (stage-2 model dir or converted visualbert-vqa-pre), OUT, GPUS.
source "$(dirname "$0")/_common.sh"
OUT="${OUT:-$ROOT/runs/vqa2}"
launch "$ROOT/VQA2/run_vqa2.py" --imdb_dir "$DATA/vqa2/imdb" --features "$DATA/detectron_fix_100" \
  --train_split trainval --eval_split minival --model_name_or_path "${INIT:-$ROOT/runs/vqa2_pre/final}" \
  --output_dir "$OUT" --batch_size "$(per_proc_batch 64)" --learning_rate 2e-5 --num_train_epochs 10 --warmup 0.1 \
  --max_grad_norm 0.25 "$@"
"$PY" "$ROOT/VQA2/run_predict.py" --model_dir "$OUT/best" --imdb_dir "$DATA/vqa2/imdb" \
  --features "$DATA/detectron_fix_100" --split test2015 --output_dir "$OUT/test2015"
