#!/usr/bin/env bash
# Run this FIRST on a GPU machine (about 2-3 minutes). It exercises every path only a GPU takes, on tiny
# models and synthetic data in a temporary directory, and prints one OK / FAIL / SKIP line per check:
#   1. fused vs unfused attention in fp32 / fp16 / bf16 (bf16 from compute capability 8.0), at a length that is
#      a multiple of 8 (memory-efficient kernel) and one that is not, forward logits and gradients;
#   2. the prediction loop under bf16 / fp16 autocast gives the float32 predictions;
#   3. a 2-GPU MLM-only task pretraining run of 3 steps (needs 2 visible GPUs; SKIP otherwise), then its step-2
#      checkpoint resumed on ONE GPU (RNG state across device counts);
#   4. an O2 (bf16, fp16 before Ampere) NLVR2 run with a frozen pooler and 2 accumulated micro-batches (fp32
#      master gradients): save at step 2, resume to step 4 in a new directory, weights equal the uninterrupted
#      run's, every saved weight is float32 and the pooler was never rounded to low precision.
# Exit status 0 when nothing FAILed. Env: PYTHON (default python), GPUS (default 0,1), KEEP=1 keeps the work dir.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python}"
GPUS="${GPUS:-0,1}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/visualbert_gpu_check.XXXXXX")"
if [ "${KEEP:-0}" = 1 ]; then echo "work dir: $WORK"; else trap 'rm -rf "$WORK"' EXIT; fi
FAILED=0
ok() { echo "OK   $*"; }
fail() { echo "FAIL $*"; FAILED=1; }
skip() { echo "SKIP $*"; }
run() {  # run LOG CMD...: quiet unless it fails (then the log tail is shown)
  local log="$1"; shift
  if "$@" >"$log" 2>&1; then return 0; fi
  echo "---- last lines of $log:"; tail -n 25 "$log"; return 1
}
cd "$ROOT"

read -r NGPU CAP VERSION < <("$PY" -c "
import visualbert, paddle
n = paddle.device.cuda.device_count() if paddle.device.is_compiled_with_cuda() else 0
cap = '%d.%d' % paddle.device.cuda.get_device_capability() if n else '-'
print(n, cap, paddle.__version__)" 2>/dev/null || echo "0 - ?")
echo "paddle $VERSION, $NGPU visible GPU(s), compute capability $CAP"
if [ "$NGPU" -lt 1 ]; then fail "no GPU visible to Paddle (install paddlepaddle-gpu; check nvidia-smi / CUDA_VISIBLE_DEVICES)"; exit 1; fi
DTYPE=bfloat16; [ "${CAP%%.*}" -lt 8 ] && DTYPE=float16

# 1-2: in-process checks (print their own OK / FAIL lines).
"$PY" tools/gpu_check.py attention 2>"$WORK/attention.err" || { FAILED=1; tail -n 20 "$WORK/attention.err"; }
"$PY" tools/gpu_check.py bf16_eval 2>"$WORK/eval.err" || { FAILED=1; tail -n 20 "$WORK/eval.err"; }

run "$WORK/data.log" "$PY" tools/make_synthetic_data.py --out "$WORK/data" --tasks vqa,nlvr2 --num_images 24 \
  --vqa_dim 64 --nlvr2_dim 64 --nlvr2_sets 16 --regions 6 --nlvr2_regions 6 --quiet || { fail "synthetic data"; exit 1; }
TINY=(--hidden_size 64 --num_hidden_layers 2 --num_attention_heads 2 --intermediate_size 128 --dropout 0
      --max_seq_length 32 --disable_tqdm --logging_steps 1 --warmup 0 --learning_rate 1e-3 --seed 5)

# 3: 2-GPU MLM-only pretraining, then resume its checkpoint on one GPU.
PRE=(run_pretrain.py --dataset vqa2 --data_dir "$WORK/data/vqa2/imdb" --features "$WORK/data/detectron_fix_100"
     --train_split train --eval_split val --batch_size 4 --max_steps 3 --save_steps 1 --eval_steps 3 "${TINY[@]}")
if [ "$NGPU" -ge 2 ]; then
  if run "$WORK/pre2.log" "$PY" -m paddle.distributed.launch --devices "$GPUS" --log_dir "$WORK/pre2_logs" \
       "${PRE[@]}" --output_dir "$WORK/pre2" && [ -f "$WORK/pre2/final/model_state.pdparams" ]; then
    ok "2-GPU MLM-only pretraining, 3 steps"
    if run "$WORK/resume1.log" env CUDA_VISIBLE_DEVICES="${GPUS%%,*}" "$PY" "${PRE[@]}" --output_dir "$WORK/pre1" \
         --resume_from "$WORK/pre2/step_2"; then
      ok "2-GPU checkpoint resumed on 1 GPU (RNG state across device counts)"
    else
      fail "2-GPU checkpoint resumed on 1 GPU"
    fi
  else
    fail "2-GPU MLM-only pretraining (logs: KEEP=1 and $WORK/pre2_logs)"
  fi
else
  skip "2-GPU MLM-only pretraining and 2 -> 1 GPU resume: only $NGPU GPU visible (GPUS=$GPUS)"
fi

# 4: O2 save / resume round trip with a frozen pooler (fp32 weights on disk, resumed run = uninterrupted run).
O2=(NLVR2/run_nlvr2.py --data_dir "$WORK/data/nlvr2" --features "$WORK/data/detectron_fix_144" --batch_size 4
    --max_steps 4 --save_steps 2 --eval_steps 4 --gradient_accumulation_steps 2 --use_amp --amp_level O2
    --amp_dtype "$DTYPE" "${TINY[@]}")  # BertAdam and a frozen pooler: the scripts' defaults
export CUDA_VISIBLE_DEVICES="${GPUS%%,*}"
if run "$WORK/o2a.log" "$PY" "${O2[@]}" --output_dir "$WORK/o2a" \
   && run "$WORK/o2b.log" "$PY" "${O2[@]}" --output_dir "$WORK/o2b" --resume_from "$WORK/o2a/step_2"; then
  ok "O2 $DTYPE training, save at step 2, resume to step 4"
  "$PY" tools/gpu_check.py weights "$WORK/o2a/step_2" "$WORK/o2a/final" 2>/dev/null || FAILED=1
  "$PY" tools/gpu_check.py same "$WORK/o2a/final" "$WORK/o2b/final" --atol 1e-3 2>/dev/null || FAILED=1
else
  fail "O2 $DTYPE save / resume round trip"
fi

if [ "$FAILED" = 0 ]; then echo "ALL GPU CHECKS PASSED"; else echo "SOME GPU CHECKS FAILED (see the FAIL lines)"; fi
exit "$FAILED"
