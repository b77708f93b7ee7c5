#!/usr/bin/env bash
# Every performance goal of spml_lightning on one GPU, in under 13 minutes (about 7 expected).
#
#   bash bench/gpu_check.sh                 # from the repository root, on a machine with one CUDA GPU
#   LOG_DIR=/somewhere bash bench/gpu_check.sh
#   COMPILE=1 bash bench/gpu_check.sh       # also time the fast profile with torch.compile (+2-3 min)
#   SMOKE=1 bash bench/gpu_check.sh         # the same steps on the CPU with tiny sizes (checks the script)
#
# Needs nothing but this repository and the machine's PyTorch stack: python3 with torch,
# torchvision, lightning, numpy, Pillow, PyYAML (and scikit-learn for the mAP reference,
# jsonargparse for the LightningCLI path; without it the spml sides are built through the
# Python API with the CLI's defaults). Nothing is installed or downloaded: the package is
# used from this checkout (PYTHONPATH) and the JPEGs are generated on the spot.
#
# Prints each benchmark's output into $LOG_DIR and, at the end, every goal's `ratio` and
# `check` line: copy them, with the card's name, into bench/README.md.
set -u -o pipefail

cd "$(dirname "$0")/.."
REPO=$(pwd)
PYTHON=${PYTHON:-python3}
LOG_DIR=${LOG_DIR:-${OUT:-/tmp}/spml_gpu_check}
mkdir -p "$LOG_DIR"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
START=$(date +%s)

CORES=$(nproc)
FAST_WORKERS=$(( CORES > 3 ? CORES - 2 : 1 ))
if [ "${SMOKE:-0}" = 1 ]; then
    DEVICE=cpu
    EVAL_SIZE=(--rows 300 --classes 6 --repeats 1)
    TRAIN_SIZE=(--backbone resnet18 --image-size 32 --jpeg-size 40x30 --steps 2 --warmup 1 --val-batches 1
                --repeats 1 --fast-batch-size 8 --workers 1 --fast-workers 1)
    DATA_SIZE=(--image-size 32 --jpeg-size 40x30 --batch-size 4 --batches 2 --warmup 1 --repeats 1 --workers 0 1)
    MEMORY_SIZE=(--rows 2000 --workers 2 --batches 8)
    PROFILE_SIZE=(--seeds 0 --epochs 1 --data.init_args.root "$LOG_DIR/demo_smoke"
                  --data.init_args.num_train 64 --data.init_args.num_test 32)
else
    DEVICE=cuda
    EVAL_SIZE=(--repeats 3)
    TRAIN_SIZE=(--backbone resnet50 --image-size 448 --jpeg-size 500x375 --workers 4 --fast-workers "$FAST_WORKERS"
                --repeats 3)
    DATA_SIZE=(--workers 4 "$FAST_WORKERS" --repeats 3 --batches 30)
    MEMORY_SIZE=(--workers 14)
    PROFILE_SIZE=(--seeds 0 1)
    if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
        echo "gpu_check: no CUDA device visible to $PYTHON (SMOKE=1 runs the steps on the CPU)." >&2
        exit 1
    fi
fi
missing=$("$PYTHON" - <<'EOF'
import importlib.util
need = ["torch", "torchvision", "lightning", "numpy", "PIL", "yaml"]
print(" ".join(n for n in need if importlib.util.find_spec(n) is None))
EOF
)
if [ -n "$missing" ]; then
    echo "gpu_check: missing Python packages: $missing (pip install -e . installs them)." >&2
    exit 1
fi

{
    echo "# gpu_check: $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "# GPU: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)"
    echo "# CPU: $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1), $CORES cores"
    "$PYTHON" -c "import torch, torchvision, lightning; print(f'# torch {torch.__version__}, torchvision {torchvision.__version__}, lightning {lightning.__version__}')"
    "$PYTHON" -c "import jsonargparse" 2>/dev/null && echo "# spml sides: LightningCLI" \
        || echo "# spml sides: Python API (jsonargparse not installed)"
} | tee "$LOG_DIR/machine.txt"

# run NAME SECONDS COMMAND...: one benchmark with a time limit, its output in $LOG_DIR/NAME.log
run() {
    local name=$1 limit=$2
    shift 2
    echo "== $name ($(( $(date +%s) - START )) s elapsed)"
    timeout --kill-after=10 "$limit" "$@" > "$LOG_DIR/$name.log" 2>&1
    local status=$?
    grep -E '^(ratio|check) ' "$LOG_DIR/$name.log"
    if [ $status -ne 0 ]; then
        echo "!! $name exited with status $status (124: over its ${limit} s); last lines of $LOG_DIR/$name.log:"
        tail -n 15 "$LOG_DIR/$name.log"
    fi
}

# Expected durations on one H100/H200 with 16 cores: about 25 + 120 + 90 + 40 + 150 + 20 s; the
# limits (60 + 200 + 120 + 60 + 240 + 45 s) keep the whole under 13 minutes even when one step hangs.
# Goal 4: exact mAP on 40,137 x 80 (CPU and GPU) and synchronisations in the eval steps.
run eval_speed 60 "$PYTHON" bench/eval_speed.py --device "$DEVICE" "${EVAL_SIZE[@]}"
# Goals 1 and 2: reference loop, spml fit paper profile, fast profile, model-step ceiling (ResNet-50, 448 px).
run train_throughput 200 "$PYTHON" bench/train_throughput.py --device "$DEVICE" "${TRAIN_SIZE[@]}" \
    --sides reference spml-paper spml-fast ceiling-fast
# Goal 3: loaders at 4 and cores-2 workers, GPU decoding and its agreement with PIL, against the step rate.
run data_pipeline 120 "$PYTHON" bench/data_pipeline.py --device "$DEVICE" "${DATA_SIZE[@]}"
# Goal 5: host memory of a COCO-sized datamodule with 14 workers.
run loader_memory 60 "$PYTHON" bench/loader_memory.py "${MEMORY_SIZE[@]}"
# Goal 2's accuracy: demo test mAP of the paper and the fast profile (GR Loss, from scratch,
# 2 seeds paired), to check on the GPU, bf16 included, the CPU finding of
# bench/results/cpu_profile_accuracy.jsonl (measured there in fp32: that CPU had no native bf16).
if "$PYTHON" -c "import jsonargparse" 2>/dev/null; then
    run profile_accuracy 240 "$PYTHON" bench/profile_accuracy.py --profiles paper fast "${PROFILE_SIZE[@]}"
    grep -E '^\| (paper|fast) |^check|^ratio' "$LOG_DIR/profile_accuracy.log"
fi
# Goal 4 again, as tests: no synchronising CUDA call in the steps; the decode tolerance.
if "$PYTHON" -c "import pytest" 2>/dev/null; then
    run steps_tests 45 "$PYTHON" -m pytest -q -p no:cacheprovider tests/test_performance.py tests/data/test_device_decode.py \
        -k "synchronise_cuda or device_decode_matches or host_read"
    tail -n 1 "$LOG_DIR/steps_tests.log"
fi
if [ "${COMPILE:-0}" = 1 ]; then
    run train_throughput_compile 240 "$PYTHON" bench/train_throughput.py --device "$DEVICE" "${TRAIN_SIZE[@]}" \
        --repeats 1 --compile --sides spml-fast ceiling-fast
fi

echo
echo "== summary ($(( $(date +%s) - START )) s), logs in $LOG_DIR"
cat "$LOG_DIR/machine.txt"
for name in eval_speed train_throughput train_throughput_compile data_pipeline loader_memory \
        profile_accuracy; do
    [ -f "$LOG_DIR/$name.log" ] && grep -h -E '^(ratio|check) ' "$LOG_DIR/$name.log"
done | tee "$LOG_DIR/summary.txt"
