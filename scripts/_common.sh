# Sourced by the launchers (bash). Environment:
#   GPUS=0,1,2,3      devices of THIS machine (never hard-coded); without it, NPROC CPU processes (default 1)
#   NNODES=2          machines (default 1); with NNODES > 1 also MASTER=host:port (the same on every machine)
#                     and NODE_RANK (0 on one machine, 1 .. NNODES-1 on the others)
#   GRAD_ACCUM=2      micro-batches per optimizer step (default 1): the per-process batch becomes
#                     GLOBAL / (processes on all nodes × GRAD_ACCUM), the global batch stays the paper's
#   OPTIMIZER=adamw   instead of the original's bertadam (the default)
#   TRAIN_POOLER=1    train the pooler too (the original never does)
#   DRY_RUN=1         print the commands instead of running them
#   PYTHON, LOG_DIR   interpreter (default python), paddle.distributed.launch log directory
# Arguments given to a launcher are appended to its training command and override the defaults.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python}"
NNODES="${NNODES:-1}"
GRAD_ACCUM="${GRAD_ACCUM:-1}"

die() { echo "$(basename "$0"): $*" >&2; exit 2; }

positive_int() { [[ "$2" =~ ^[1-9][0-9]*$ ]] || die "$1=$2: expected a positive integer"; }
positive_int NNODES "$NNODES"
positive_int GRAD_ACCUM "$GRAD_ACCUM"
if [ -n "${GPUS:-}" ]; then
  [[ "$GPUS" =~ ^[0-9]+(,[0-9]+)*$ ]] || die "GPUS=$GPUS: expected device ids like 0,1,2,3"
else
  positive_int NPROC "${NPROC:-1}"
fi
if [ "$NNODES" -gt 1 ]; then
  [ -n "${MASTER:-}" ] || die "NNODES=$NNODES needs MASTER=host:port (the same on every machine)"
  [[ "$MASTER" =~ ^[^:]+:[0-9]+$ ]] || die "MASTER=$MASTER: expected host:port"
  if [ -n "${NODE_RANK:-}" ]; then
    { [[ "$NODE_RANK" =~ ^[0-9]+$ ]] && [ "$NODE_RANK" -lt "$NNODES" ]; } \
      || die "NODE_RANK=$NODE_RANK: expected 0 .. $((NNODES - 1))"
  fi
fi

# Processes on this machine and on all machines.
procs_per_node() { if [ -n "${GPUS:-}" ]; then echo "$GPUS" | tr ',' '\n' | wc -l | tr -d ' '; else echo "${NPROC:-1}"; fi; }
world_size() { echo $(( $(procs_per_node) * NNODES )); }

# Per-process batch for the paper's GLOBAL batch; refuses one that does not divide. Use it in an assignment
# (BATCH=$(per_proc_batch 64)) so that a refusal stops the launcher.
per_proc_batch() {
  local global="$1" world
  world="$(world_size)"
  if [ $(( global % (world * GRAD_ACCUM) )) -ne 0 ]; then
    die "the paper's global batch $global does not divide into $world process(es) × GRAD_ACCUM=$GRAD_ACCUM" \
        "($NNODES node(s) × $(procs_per_node)); choose a process count / GRAD_ACCUM that divides $global"
  fi
  echo $(( global / (world * GRAD_ACCUM) ))
}

# Flags of every training run: the original's optimizer and frozen pooler, early stopping as the original
# (patience 3 epochs), the accumulation of GRAD_ACCUM.
TRAIN_FLAGS=(--optimizer "${OPTIMIZER:-bertadam}" --patience 3 --gradient_accumulation_steps "$GRAD_ACCUM")
if [ "${TRAIN_POOLER:-0}" = 1 ]; then TRAIN_FLAGS+=(--train_pooler); fi

run() {  # runs (or, with DRY_RUN=1, prints) one command
  if [ "${DRY_RUN:-0}" = 1 ]; then
    local arg out=()
    for arg in "$@"; do
      if [[ "$arg" =~ ^[A-Za-z0-9_./:=,+@%-]+$ ]]; then out+=("$arg"); else out+=("$(printf '%q' "$arg")"); fi
    done
    echo "${out[*]}"
  else
    "$@"
  fi
}

launch() {  # python -m paddle.distributed.launch [multi-node flags] SCRIPT ARGS...
  local cmd=("$PY" -m paddle.distributed.launch --log_dir "${LOG_DIR:-$ROOT/runs/launch_logs}")
  if [ -n "${GPUS:-}" ]; then cmd+=(--devices "$GPUS"); else cmd+=(--nproc_per_node "${NPROC:-1}"); fi
  if [ "$NNODES" -gt 1 ]; then
    cmd+=(--master "$MASTER" --nnodes "$NNODES")
    if [ -n "${NODE_RANK:-}" ]; then cmd+=(--rank "$NODE_RANK"); fi
  fi
  run "${cmd[@]}" "$@"
}

first_node() { [ "$NNODES" -eq 1 ] || [ "${NODE_RANK:-0}" = 0 ]; }  # predictions run on one machine only

# The VQA minival images (excluded from COCO pre-training, as the original's exclude_minival).
# Validation: the val2014 captions of those images (the original's validationset); EXPAND_COCO=0 trains on
# train2014 only and validates on all of val2014 (not the original's recipe).
coco_splits() {  # sets SPLITS for COCO caption pre-training
  local minival="${MINIVAL:-$DATA/vqa2/imdb/imdb_minival2014.npy}"
  if [ "${EXPAND_COCO:-1}" = 0 ]; then
    echo "note: EXPAND_COCO=0: pre-training on train2014 captions only (not the original's train2014+val2014)" >&2
    SPLITS=(--train_split train2014 --eval_split val2014)
  elif [ -f "$minival" ] || [ "${DRY_RUN:-0}" = 1 ]; then
    SPLITS=(--train_split train2014+val2014 --exclude_minival "$minival" --eval_split val2014)
  else
    die "$minival not found: COCO pre-training as the original (expand_coco + exclude_minival) needs the VQA" \
        "minival imdb (set MINIVAL=/path/imdb_minival2014.npy), or EXPAND_COCO=0 for train2014 only"
  fi
}
