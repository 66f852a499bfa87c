#!/usr/bin/env bash
# The GPU check for a lent machine (no package registry, PyTorch/CuPy/OpenCV/numpy/onnx/onnxruntime-CPU installed
# system-wide): installs the wheels carried in .gpu-wheels/ (`make gpu-wheels` here) and the project without
# dependencies into a venv that sees the system packages, builds the demo and a random-weights package, and runs
#
#   the torch backend's CUDA tests (graph replay = eager, fp32/fp16/bf16 against the CPU),
#   lipsync bench --device cuda --backend torch at batch 1, 8 and 25 in fp32 and fp16 (CUDA graphs), and
#   the zero-cost-UNet host ceiling on all cores (benchmarks/host_ceiling.py),
#
# writing JSON and Markdown to $OUT (summary.md first). Each step has its own timeout; the whole is meant to fit in
# 8 minutes. Run from the repository root:   OUT=/some/dir benchmarks/gpu_check.sh
#
# GPU_CHECK_DEVICE=cpu runs the same steps on a machine without a GPU (fp32 only, small batches and fewer frames),
# to catch mistakes before spending device time; with GPU_CHECK_INSTALL=0 it uses GPU_CHECK_VENV as it is
# (e.g. the project's .venv) instead of creating and filling one.
set -euo pipefail

OUT=${OUT:?set OUT to the folder for the results}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
WHEELS=${GPU_CHECK_WHEELS:-.gpu-wheels}
VENV=${GPU_CHECK_VENV:-/tmp/lipsync-gpu-check-venv}
BUDGET=${GPU_CHECK_BUDGET:-460}  # seconds for everything; each step's timeout is cut to what is left
START=$SECONDS
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"

step() { echo "== [$((SECONDS - START)) s] $*" | tee -a "$LOG" >&2; }
# run LIMIT_SECONDS NAME COMMAND...: one step, its output in $OUT/NAME.log; a failure or timeout is recorded, not fatal
run() {
    local limit=$1 name=$2 left=$((BUDGET - (SECONDS - START)))
    shift 2
    if [ "$left" -lt 15 ]; then
        echo "| $name | skipped: the $BUDGET s budget is spent | $((SECONDS - START)) s |" >>"$OUT/steps.md"
        return
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    step "$name (at most $limit s): $*"
    if timeout "$limit" "$@" >"$OUT/$name.log" 2>&1; then
        echo "| $name | ok | $((SECONDS - START)) s |" >>"$OUT/steps.md"
    else
        local rc=$?
        echo "| $name | FAILED (exit $rc$([ $rc -eq 124 ] && echo ', timed out')) | $((SECONDS - START)) s |" >>"$OUT/steps.md"
        tail -5 "$OUT/$name.log" | tee -a "$LOG" >&2
    fi
}

if [ "$DEVICE" = cpu ]; then
    # the full UNet in torch on a CPU is far too slow for a dry run: the same steps with the tiny stand-in
    BATCHES=1,2; PRECISIONS=fp32; FRAMES=20; CORES=$(nproc); GRAPH=""; BENCH_PACKAGE=tiny; SYNTH_BENCH=(--tiny)
else
    BATCHES=1,8,25; PRECISIONS="fp32 fp16"; FRAMES=250; CORES=$(nproc); GRAPH="--cuda-graph"; BENCH_PACKAGE=random
    SYNTH_BENCH=(--weights random)
fi
printf '| step | result | at |\n|---|---|---:|\n' >"$OUT/steps.md"

PY="$VENV/bin/python"
if [ "${GPU_CHECK_INSTALL:-1}" = 1 ]; then
    step "venv $VENV (system site packages: torch, cupy, cv2, onnx, onnxruntime), carried wheels, the project"
    ls "$WHEELS"/*.whl >/dev/null || { echo "no wheels in $WHEELS: run 'make gpu-wheels' before carrying" >&2; exit 2; }
    python3 -m venv --system-site-packages "$VENV"
    "$PY" -m pip install --quiet --no-index --no-deps "$WHEELS"/*.whl
    "$PY" -m pip install --quiet --no-index --no-deps --no-build-isolation .
fi
LIPSYNC=("$PY" -m lipsync_render)

run 60 versions "$PY" -c "import torch, onnxruntime, cv2, numpy, av, soundfile, soxr; \
print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available()); \
print('gpu', torch.cuda.get_device_name(0) if torch.cuda.is_available() else None); \
print('onnxruntime', onnxruntime.__version__, onnxruntime.get_available_providers()); \
print('opencv', cv2.__version__, 'numpy', numpy.__version__, 'av', av.__version__)"
run 60 doctor "${LIPSYNC[@]}" doctor

run 120 cuda-tests "$PY" -m pytest -q -p no:cacheprovider tests/runtimes/test_pytorch.py -k cuda

PACKAGES="$VENV/gpu-check-packages"
rm -rf "$PACKAGES" && mkdir -p "$PACKAGES"
run 120 synth-demo "${LIPSYNC[@]}" package synth "$PACKAGES/demo" --frames 100
run 120 "synth-$BENCH_PACKAGE" "${LIPSYNC[@]}" package synth "$PACKAGES/$BENCH_PACKAGE" --frames 100 "${SYNTH_BENCH[@]}"

for precision in $PRECISIONS; do
    name="bench-torch-$precision"
    run 200 "$name" "${LIPSYNC[@]}" bench --model "$PACKAGES/$BENCH_PACKAGE" --device "$DEVICE" --backend torch \
        --precision "$precision" $GRAPH --batch-sizes "$BATCHES" --frames "$FRAMES" --warmup 1 --repeat 3 \
        --json "$OUT/$name.json" --markdown "$OUT/$name.md"
done

run 150 host-ceiling "$PY" benchmarks/host_ceiling.py --model "$PACKAGES/demo" --frames $((FRAMES * 2)) \
    --repeat 3 --cores "$CORES" --json "$OUT/host-ceiling.json" --markdown "$OUT/host-ceiling.md"

step "summary"
{
    echo "# GPU check, $(date -u +%F' '%T) UTC, device $DEVICE, $(nproc) cores"
    echo
    cat "$OUT/steps.md"
    echo
    echo '```'
    cat "$OUT/versions.log" 2>/dev/null || true
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null || true
    echo '```'
    echo
    echo "## cuda-tests"
    echo
    echo '```'
    tail -15 "$OUT/cuda-tests.log" 2>/dev/null || true
    echo '```'
    for part in bench-torch-fp32 bench-torch-fp16 host-ceiling; do
        if [ -f "$OUT/$part.md" ]; then
            echo
            echo "## $part"
            echo
            cat "$OUT/$part.md"
        fi
    done
} >"$OUT/summary.md"
step "done in $((SECONDS - START)) s: $OUT/summary.md"
