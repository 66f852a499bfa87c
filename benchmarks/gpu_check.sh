#!/usr/bin/env bash
# The GPU check for a lent machine (no package registry; PyTorch, CuPy, OpenCV, numpy, onnx and the CPU build of
# onnxruntime installed system-wide). It installs the wheels carried in .gpu-wheels/ (`make gpu-wheels` here), the
# onnxruntime-gpu wheel joined from the parts carried in .ort-gpu-wheel/ (`make ort-gpu-wheel`; benchmarks/README.md
# gives the calls) and the project without dependencies into a venv that sees the system packages, builds the demo
# and a random-weights package, then runs, in this order:
#
#   part torch: the torch backend's CUDA tests, lipsync bench --backend torch --device cuda at batch 1, 8 and 25 in
#               fp32 and fp16 (CUDA graphs), the zero-cost-UNet host ceiling on all cores (host_ceiling.py);
#   part ort:   only with GPU_CHECK_ORT_MIN_LEFT_S (360) of the budget left: lipsync bench --backend onnxruntime on
#               --device cuda fp32, a 30 s render of speech at 1280x720, batch 25 (fps, stage times, busiest host
#               thread), cuda fp16, then --device tensorrt fp16, at batch 1, 8 and 25.
#
# A step needs nothing, torch, cuda, ort-cuda or ort-tensorrt (gpu_check_report.py facts); an unmet need skips it
# with the reason. Every step is recorded in $OUT/steps.jsonl, its output in $OUT/NAME.log, results in
# $OUT/NAME.json; at the end $OUT/summary.json and $OUT/summary.md (the steps, then one table of every PyTorch,
# ONNX Runtime and host-ceiling row). Run from the repository root:   OUT=/some/dir benchmarks/gpu_check.sh
#
# GPU_CHECK_BUDGET_S: the device seconds this run may use (default 540, one 600 s call less the way back); each
#   step's timeout is cut to what is left. Pass the device tool's budget_left_s less a minute.
# GPU_CHECK_PARTS: "torch ort" (default), or one of them (two calls to one warm machine: the venv, the packages
#   and the joined wheel stay in .gpu-check/, ignored, between calls).
# GPU_CHECK_DEVICE=cpu runs the same steps on a machine without a GPU (fp32, the tiny package, small batches, a 2 s
#   render; the ONNX Runtime command lines run once on the CPU too), which tests/benchmarks/test_gpu_check.py does;
#   with GPU_CHECK_INSTALL=0 it uses GPU_CHECK_VENV (or GPU_CHECK_PYTHON) as it is instead of filling one.
set -uo pipefail

OUT=${OUT:?set OUT to the folder for the results}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
WHEELS=${GPU_CHECK_WHEELS:-.gpu-wheels}
ORT_PARTS=${GPU_CHECK_ORT_WHEEL:-.ort-gpu-wheel}
WORK=${GPU_CHECK_WORK:-.gpu-check}  # venv, packages, joined wheel, speech and videos: kept between calls, never in $OUT
VENV=${GPU_CHECK_VENV:-$WORK/venv}
PY=${GPU_CHECK_PYTHON:-$VENV/bin/python}
BUDGET=${GPU_CHECK_BUDGET_S:-540}
ORT_MIN_LEFT=${GPU_CHECK_ORT_MIN_LEFT_S:-360}
PARTS=${GPU_CHECK_PARTS:-torch ort}
START=$SECONDS
mkdir -p "$OUT" "$WORK"
OUT=$(cd "$OUT" && pwd)
WORK=$(cd "$WORK" && pwd)
LOG="$OUT/gpu_check.log"
: >"$OUT/steps.jsonl"

step() { echo "== [$((SECONDS - START)) s] $*" | tee -a "$LOG" >&2; }
json() { local s=${1//\\/\\\\}; s=${s//\"/\\\"}; s=${s//$'\n'/ }; printf '"%s"' "${s//$'\t'/ }"; }
# record NAME STATUS NEEDS REASON [EXIT SECONDS]
record() {
    printf '{"name": %s, "status": %s, "needs": %s, "reason": %s, "exit": %s, "seconds": %s, "at": %s, "log": %s}\n' \
        "$(json "$1")" "$(json "$2")" "$(json "$3")" "$(json "$4")" "${5:-null}" "${6:-0}" "$((SECONDS - START))" \
        "$(json "$1.log")" >>"$OUT/steps.jsonl"
}
left() { echo $((BUDGET - (SECONDS - START))); }
unmet() { # the reason NEED is unmet, empty when met
    case $1 in
        -) echo "" ;;
        torch) echo "${NEED_torch-}" ;;
        cuda) echo "${NEED_cuda-}" ;;
        ort-cuda) echo "${NEED_ort_cuda-}" ;;
        ort-tensorrt) echo "${NEED_ort_tensorrt-}" ;;
    esac
}
# run LIMIT NAME NEEDS COMMAND...: one step, its output in $OUT/NAME.log; a failure or timeout is recorded, not fatal
run() {
    local limit=$1 name=$2 needs=$3 reason
    shift 3
    reason=$(unmet "$needs")
    if [ -n "$reason" ]; then
        step "$name skipped: $reason"
        record "$name" skipped "$needs" "$reason"
        return
    fi
    if [ "$(left)" -lt 15 ]; then
        record "$name" skipped "budget" "the $BUDGET s budget is spent"
        return
    fi
    [ "$limit" -gt "$(left)" ] && limit=$(left)
    step "$name (at most $limit s): $*"
    local began=$SECONDS rc=0
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1 || rc=$?
    if [ $rc -eq 0 ]; then
        record "$name" ok "$needs" "" 0 $((SECONDS - began))
    else
        record "$name" failed "$needs" "exit $rc$([ $rc -eq 124 ] && echo ', timed out')" $rc $((SECONDS - began))
        tail -5 "$OUT/$name.log" | tee -a "$LOG" >&2
    fi
}

if [ "$DEVICE" = cpu ]; then
    # the full UNet on a CPU is far too slow for a dry run: the same steps with the tiny stand-in
    BATCHES=1,2; PRECISIONS=fp32; FRAMES=20; REPEAT=1; GRAPH=(); BENCH_PACKAGE=tiny; SYNTH_BENCH=(--tiny)
    RENDER_SECONDS=2; ORT_RUNS=("cpu fp32 -"); CUDA_TESTS_NEED=cuda
else
    BATCHES=1,8,25; PRECISIONS="fp32 fp16"; FRAMES=250; REPEAT=3; GRAPH=(--cuda-graph); BENCH_PACKAGE=random
    SYNTH_BENCH=(--weights random); RENDER_SECONDS=30; ORT_RUNS=(); CUDA_TESTS_NEED=cuda
fi
# ONNX Runtime on the card: device precision need, in the order run (the render goes right after the first)
ORT_GPU_RUNS=("cuda fp32 ort-cuda" "cuda fp16 ort-cuda" "tensorrt fp16 ort-tensorrt")

if [ "${GPU_CHECK_INSTALL:-1}" = 1 ]; then
    if [ ! -f "$VENV/.gpu-check-installed" ]; then
        step "venv $VENV (system site packages: torch, cupy, cv2, onnx, onnxruntime), carried wheels, the project"
        ls "$WHEELS"/*.whl >/dev/null || { echo "no wheels in $WHEELS: run 'make gpu-wheels' and carry it" >&2; exit 2; }
        python3 -m venv --system-site-packages "$VENV" &&
            "$PY" -m pip install --quiet --no-index --no-deps "$WHEELS"/*.whl &&
            "$PY" -m pip install --quiet --no-index --no-deps --no-build-isolation . &&
            touch "$VENV/.gpu-check-installed" || { echo "the install failed" >&2; exit 2; }
    fi
    if [[ " $PARTS " == *" ort "* ]]; then
        if [ -f "$VENV/.ort-gpu-installed" ]; then
            record ort-gpu-install ok - "installed by an earlier call"
        elif ls "$ORT_PARTS"/*.sha256 >/dev/null 2>&1; then
            run 120 ort-gpu-install - bash -c "benchmarks/ort_gpu_wheel.sh join '$ORT_PARTS' '$WORK/ort-wheel' && \
                '$PY' -m pip install --no-index --no-deps --force-reinstall '$WORK'/ort-wheel/*.whl && \
                touch '$VENV/.ort-gpu-installed'"
        else
            record ort-gpu-install skipped ort-cuda "no onnxruntime-gpu parts in $ORT_PARTS (benchmarks/README.md)"
        fi
    fi
fi
LIPSYNC=("$PY" -m lipsync_render)

step "facts"
eval "$("$PY" benchmarks/gpu_check_report.py facts "$OUT/facts.json" 2>"$OUT/facts.log")" ||
    { record facts failed - "$(tail -1 "$OUT/facts.log")"; NEED_torch="facts failed"; NEED_cuda="facts failed"; \
      NEED_ort_cuda="facts failed"; NEED_ort_tensorrt="facts failed"; }
run 60 versions - bash -c "cat '$OUT/facts.log'; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv \
    || echo 'no nvidia-smi'"
run 60 doctor - "${LIPSYNC[@]}" doctor

PACKAGES=$WORK/packages
mkdir -p "$PACKAGES"
for package in demo "$BENCH_PACKAGE"; do
    [ -f "$PACKAGES/$package/package.json" ] && continue
    options=(); [ "$package" != demo ] && options=("${SYNTH_BENCH[@]}")
    run 120 "synth-$package" - "${LIPSYNC[@]}" package synth "$PACKAGES/$package" --frames 100 "${options[@]}"
done

bench() { # bench NAME NEEDS ARGS...: lipsync bench on the bench package, saved as NAME.json and NAME.md
    local name=$1 needs=$2
    shift 2
    run 200 "$name" "$needs" "${LIPSYNC[@]}" bench --model "$PACKAGES/$BENCH_PACKAGE" --batch-sizes "$BATCHES" \
        --frames "$FRAMES" --warmup 1 --repeat "$REPEAT" --quiet --save "$OUT/$name.json" --save "$OUT/$name.md" "$@"
}
render() { # render DEVICE PRECISION NEEDS: the speech at 1280x720, batch 25, watched for the busiest host thread
    local name="render-ort-$1-$2"
    run 120 "$name" "$3" "$PY" benchmarks/gpu_check_report.py watch "$OUT/$name.json" -- "${LIPSYNC[@]}" render \
        "$WORK/speech.wav" --model "$PACKAGES/$BENCH_PACKAGE" -o "$WORK/$name.mp4" --json --quiet \
        --backend onnxruntime --device "$1" --precision "$2" --batch-size 25 --size 1280x720
}

if [[ " $PARTS " == *" torch "* ]]; then
    run 120 cuda-tests "$CUDA_TESTS_NEED" "$PY" -m pytest -q -p no:cacheprovider tests/runtimes/test_pytorch.py -k cuda
    torch_need=torch; [ "$DEVICE" != cpu ] && torch_need=cuda
    for precision in $PRECISIONS; do
        bench "bench-torch-$DEVICE-$precision" "$torch_need" --device "$DEVICE" --backend torch \
            --precision "$precision" "${GRAPH[@]}"
    done
    run 150 host-ceiling - "$PY" benchmarks/host_ceiling.py --model "$PACKAGES/demo" --frames $((FRAMES * 2)) \
        --repeat "$REPEAT" --cores "$(nproc)" --json "$OUT/host-ceiling.json" --markdown "$OUT/host-ceiling.md"
fi

if [[ " $PARTS " == *" ort "* ]]; then
    short=""
    [ "$(left)" -lt "$ORT_MIN_LEFT" ] && short="$(left) s of the budget left, under the $ORT_MIN_LEFT s these steps need"
    [ -z "$short" ] && run 60 speech - "$PY" benchmarks/gpu_check_report.py speech "$RENDER_SECONDS" "$WORK/speech.wav"
    first=1
    for entry in "${ORT_GPU_RUNS[@]}" "${ORT_RUNS[@]}"; do
        read -r device precision needs <<<"$entry"
        names=("bench-ort-$device-$precision")
        if [ $first = 1 ] || [ "$device" = cpu ]; then names+=("render-ort-$device-$precision"); fi
        first=0
        for name in "${names[@]}"; do
            if [ -n "$short" ]; then
                record "$name" skipped budget "$short"
            elif [[ $name == bench-* ]]; then
                bench "$name" "$needs" --device "$device" --backend onnxruntime --precision "$precision"
            else
                render "$device" "$precision" "$needs"
            fi
        done
    done
fi

step "summary"
"$PY" benchmarks/gpu_check_report.py summary "$OUT" >/dev/null 2>>"$LOG" || echo "the summary failed" >&2
cat "$OUT/summary.md" 2>/dev/null
# the device tool brings back at most 8 files from $OUT: everything but the summaries goes into one archive
if [ "${GPU_CHECK_PACK:-$([ "$DEVICE" = cpu ] && echo 0 || echo 1)}" = 1 ]; then
    (cd "$OUT" && tar czf gpu-check-files.tgz --exclude gpu-check-files.tgz --exclude 'summary.*' --remove-files \
        -- * 2>/dev/null) || echo "packing $OUT failed" >&2
fi
step "done in $((SECONDS - START)) s: $OUT/summary.md"
