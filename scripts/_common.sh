# Sourced by the launchers. GPUs come from $GPUS (e.g. GPUS=0,1,2,3), never hard-coded; without it the
# launcher runs $NPROC CPU processes (default 1).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python}"
launch() {
  if [ -n "${GPUS:-}" ]; then
    "$PY" -m paddle.distributed.launch --devices "$GPUS" --log_dir "${LOG_DIR:-$ROOT/runs/launch_logs}" "$@"
  else
    "$PY" -m paddle.distributed.launch --nproc_per_node "${NPROC:-1}" --log_dir "${LOG_DIR:-$ROOT/runs/launch_logs}" "$@"
  fi
}
# Per-process batch so that the global batch is the paper's: GLOBAL / number of processes.
nproc() { if [ -n "${GPUS:-}" ]; then echo "$GPUS" | tr ',' '\n' | wc -l; else echo "${NPROC:-1}"; fi; }
per_proc_batch() { echo $(( $1 / $(nproc) )); }
