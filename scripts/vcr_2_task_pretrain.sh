#!/usr/bin/env bash
# VCR line from the images, stage 2 (configs/vcr/pre-train.json): VCR task pre-training on train (each line's
# 4 Q->A and 4 QA->R texts as separate examples: complete_shuffle + pretraining_include_qa_and_qar; masked LM +
# is-the-right-choice), validated on val; the detector's backbone frozen (the original train.py's default);
# global batch 32, lr 5e-5, 1 epoch, warmup 0.1879, BertAdam, pooler frozen, patience 3.
# Stage 1 (coco-pre-train.json) is not runnable from the release: see the README's VCR section.
# Env: DATA (vcr/{train,val}.jsonl + vcr/vcr1images), INIT (converted vcr_coco_pre_train.th), OUT, and those of
# scripts/_common.sh.
source "$(dirname "$0")/_common.sh"
INIT="${INIT:?set INIT to a converted visualbert-vcr-coco-pre (checkpoint/convert.py keeps its detector)}"
BATCH=$(per_proc_batch 32)
launch "$ROOT/VCR/run_vcr.py" --stage pretrain --data_dir "$DATA/vcr" --images "$DATA/vcr/vcr1images" \
  --model_name_or_path "$INIT" --output_dir "${OUT:-$ROOT/runs/vcr_pre}" --batch_size "$BATCH" --learning_rate 5e-5 \
  --num_train_epochs 1 --warmup 0.1879 --max_seq_length 128 "${TRAIN_FLAGS[@]}" "$@"
