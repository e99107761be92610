#!/usr/bin/env bash
# GPU check of issue 21: one CUDA GPU, no network; the steps are capped at 110 + 90 + 75 + 60 s (about
# 2-3 min expected). Run from the repository root with hwnas importable (PYTHONPATH=$PWD) and $OUT set
# to an empty folder; everything it keeps goes there (7 files):
#
#   gpu_check.log            this script's output, every step's exit status at the end
#   profile.json             hwnas profile --backend cuda --json: proxyless at 224 px, batch 1
#   cuda_proxyless_224.json  the latency table it wrote (device.processor = the GPU's name)
#   search_spos.json         torchrun --nproc_per_node=1 -m hwnas search (SPOS + evolution) on CUDA
#                            with NCCL, measured selection on the GPU: summary (launch.backend = nccl)
#   search_spos_config.json  its config.json (launch: processes, backend, train device)
#   search_proxyless.json    the same with --strategy proxyless (DNAS: alternate, binary gates)
#   paper.json               benchmarks/ddp_scaling.py --paper on CUDA: gradient bytes all-reduced per
#                            step and the compute time of one step, proxyless at 224 px, 64 images
#
# Usage: OUT=/some/empty/dir PYTHONPATH=$PWD bash benchmarks/gpu_check.sh
set -u
OUT="${OUT:?set OUT to an output folder}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
WORK="$(mktemp -d)"
LOG="$OUT/gpu_check.log"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-4}" PYTHONPATH="${PYTHONPATH:-$PWD}" TQDM_DISABLE=1
declare -A RC

step() {  # step NAME SECONDS STDOUT_FILE COMMAND...: runs with a time limit, records the exit status
  local name=$1 limit=$2 stdout=$3
  shift 3
  echo "=== $name ($(date +%T), limit ${limit}s): $*" | tee -a "$LOG"
  timeout "$limit" "$@" >"$stdout" 2>>"$LOG"
  RC[$name]=$?
  echo "=== $name: exit ${RC[$name]}" | tee -a "$LOG"
}

{
  echo "gpu_check $(date -u +%FT%TZ) on $(hostname)"
  nvidia-smi -L
  "$PY" -c "import torch, torch.distributed as d; print('torch', torch.__version__, 'cuda', torch.version.cuda,
'gpu', torch.cuda.get_device_name(0), 'nccl', d.is_nccl_available() and torch.cuda.nccl.version())"
} >>"$LOG" 2>&1

# 1. the cuda profiler backend on a real space at a real resolution (70 blocks)
step profile 110 "$OUT/profile.json" "$PY" -m hwnas profile --space proxyless --backend cuda --resolution 224 \
  --num-classes 10 --batch 1 --repeats 20 --warmup 5 --remeasure 1 --out "$OUT/cuda_proxyless_224.json" --json

# 2. a short search under torchrun on CUDA with NCCL (one process), measured selection on the GPU
SEARCH=(--space proxyless --table "$OUT/cuda_proxyless_224.json" --latency-rel proxyless_mobile_ops:1.2
        --data digits --data-limit 128 --batch-size 64 --bn-batches 2 --seed 0
        --train-device cuda --dist-backend nccl --json)
TORCHRUN=("$PY" -m torch.distributed.run --standalone --nproc_per_node=1)
step search_spos 90 "$OUT/search_spos.json" "${TORCHRUN[@]}" -m hwnas search "${SEARCH[@]}" \
  --strategy spos-evolution --epochs 2 --population 6 --generations 2 --top-k 3 --verify 2 --out "$WORK/spos"
cp "$WORK/spos/config.json" "$OUT/search_spos_config.json" 2>>"$LOG"

# 3. a DNAS strategy on CUDA (alternate weight / architecture steps, binary gates)
step search_proxyless 75 "$OUT/search_proxyless.json" "${TORCHRUN[@]}" -m hwnas search "${SEARCH[@]}" \
  --strategy proxyless --epochs 2 --proxyless-warmup-epochs 1 --verify 0 --out "$WORK/proxyless"

# 4. the inputs of the on-paper many-GPU estimate, measured on this GPU
step paper 60 "$OUT/paper.json" "$PY" benchmarks/ddp_scaling.py --paper --train-device cuda --paper-batch 64 --json

{
  echo "=== checks"
  "$PY" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
def load(name):
    try:
        return json.loads((out / name).read_text())
    except Exception as exc:  # noqa: BLE001 - report, do not stop
        return {"error": f"{type(exc).__name__}: {exc}"}
table = load("cuda_proxyless_224.json")
dev = table.get("device", {})
print("table:", len(table.get("entries", {})), "entries,", dev.get("backend"), dev.get("processor"),
      dev.get("resolution"), "px")
for name in ("search_spos.json", "search_proxyless.json"):
    s = load(name)
    print(name, "launch:", s.get("launch"), "| accuracy", s.get("accuracy"), "| predicted",
          s.get("predicted_latency_ms"), "ms | measured", s.get("measured_latency_ms"), "ms |", s.get("latency_source"),
          "| error" if "error" in s else "")
print("config launch:", load("search_spos_config.json").get("launch"))
print("paper:", load("paper.json"))
EOF
  echo "=== exit status per step"
  for k in profile search_spos search_proxyless paper; do echo "$k ${RC[$k]:-not run}"; done
} 2>&1 | tee -a "$LOG"
rm -rf "$WORK"
