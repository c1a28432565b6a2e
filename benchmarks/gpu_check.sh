#!/usr/bin/env bash
# The one command a session runs on a GPU machine (docs/performance.md, "GPU check"):
#   bash benchmarks/gpu_check.sh
# Writes under "$OUT" (default ./gpu_out): env.txt, buildable.txt, gpu_check.json,
# training.json, inference.json, device_tests.txt and log.txt (seven files: the device tool
# returns at most 8).
# Installs nothing into the image; wheels carried in .whl (pydantic: the training scripts'
# checkpoints need it, the device image lacks it) go to a private --target folder. Every step
# has its own timeout (whole script < 9 min 40 s); a failed or
# timed-out step is recorded and the next one still runs. Exit status: 3 if CUDA is not
# usable here, 1 if any step failed, 0 otherwise.
# Dry run of the same steps without a GPU (to test this script, not the GPU):
#   GPU_CHECK_DEVICE=cpu GPU_CHECK_MODELS=clst OUT=/tmp/gpu_out bash benchmarks/gpu_check.sh
set -u -o pipefail

OUT="${OUT:-./gpu_out}"  # relative to where the script is started
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd) || exit 2
cd "$(dirname "$0")/.." || exit 2  # the repository root
LOG="$OUT/log.txt"
PY="${PYTHON:-python3}"  # the device image's python3 holds the CUDA build of torch
DEVICE="${GPU_CHECK_DEVICE:-cuda}"
ONLY="${GPU_CHECK_MODELS:-}"  # comma-separated subset of the models (default: all)
export PYTHONUNBUFFERED=1
# limits in seconds, worst case: nvidia-smi 10 + 4 probes x 20 + 30 + 160 + 95 + 95 + 20 + 60,
# plus 5 s grace (SIGKILL after SIGTERM) for each of the 6 steps = 580 s, under the device tool's
# 600 s per call (a few minutes expected); the tests raise the probe limit (GPU_CHECK_T_PROBE)
# because importing torch on a loaded CPU is slow
T_PROBE="${GPU_CHECK_T_PROBE:-20}" T_LIST=30 T_CHECK=160 T_TRAIN=95 T_INFER=95 T_WHEELS=20
T_DEVTEST=60

FAILED=""
: >"$LOG"
step() {  # step NAME SECONDS CMD...: run with a timeout, log it, remember a failure
    local name=$1 limit=$2 rc
    shift 2
    echo "=== $name (limit ${limit}s): $*" | tee -a "$LOG"
    timeout -k 5 "$limit" "$@" 2>&1 | tee -a "$LOG"
    rc=$?
    [ "$rc" -eq 124 ] && echo "=== $name: TIMED OUT after ${limit}s" | tee -a "$LOG"
    echo "=== $name: exit $rc" | tee -a "$LOG"
    [ "$rc" -eq 0 ] || FAILED="$FAILED $name"
    return 0
}

# sigformer from this working tree: installed (pip install -e .) or, offline, on PYTHONPATH.
# Probed from / : `python -c` puts the current folder on sys.path, so at the repository root
# the probe would pass where `python benchmarks/x.py` (its own folder on sys.path) fails.
if ! (cd / && timeout "$T_PROBE" "$PY" -c "import sigformer") 2>/dev/null; then
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
    echo "sigformer is not installed here: using it from PYTHONPATH=$PWD" | tee -a "$LOG"
fi

{
    echo "date: $(date -u +%FT%TZ), device: $DEVICE"
    timeout 10 nvidia-smi -L 2>&1 || echo "nvidia-smi: not found or failed"
    timeout "$T_PROBE" "$PY" -c "import platform, torch, lightning, numpy, sigformer
print('python', platform.python_version(), '| torch', torch.__version__, '| CUDA build',
      torch.version.cuda, '| lightning', lightning.__version__, '| numpy', numpy.__version__)
print('sigformer from', sigformer.__file__)" 2>&1
} >"$OUT/env.txt" 2>&1
tee -a "$LOG" <"$OUT/env.txt"

if [ "$DEVICE" = cuda ] && ! timeout "$T_PROBE" "$PY" -c \
        "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    msg="CUDA is not usable here: torch.cuda.is_available() is False (see env.txt for the torch"
    msg="$msg build and nvidia-smi). Nothing was run; this script needs an NVIDIA GPU."
    echo "$msg" | tee -a "$LOG" >&2
    exit 3
fi

only() {  # only LIST: the comma-separated LIST restricted to $ONLY (all of it if unset)
    [ -z "$ONLY" ] && { echo "$1"; return; }
    local kept="" m
    for m in ${1//,/ }; do
        case ",$ONLY," in *",$m,"*) kept="$kept${kept:+,}$m" ;; esac
    done
    echo "$kept"
}

# models whose packages import here (DBConformer needs braindecode, absent from some images);
# the benchmarks stop at the first model that cannot be built, so they get only these
step list-buildable "$T_LIST" "$PY" benchmarks/gpu_check.py --list-buildable
grep -E '^(training|inference|check)=' "$LOG" >"$OUT/buildable.txt"
TRAIN_MODELS=$(only "$(sed -n 's/^training=//p' "$OUT/buildable.txt" | tail -n 1)")
INFER_MODELS=$(only "$(sed -n 's/^inference=//p' "$OUT/buildable.txt" | tail -n 1)")
# all seven: gpu_check.py reports one it cannot build as skipped, naming the missing package
CHECK_MODELS=$(only "$(sed -n 's/^check=//p' "$OUT/buildable.txt" | tail -n 1)")

step gpu-check "$T_CHECK" "$PY" benchmarks/gpu_check.py --device "$DEVICE" \
    ${CHECK_MODELS:+--models "$CHECK_MODELS"} --out "$OUT/gpu_check.json"
if [ -n "$TRAIN_MODELS" ]; then
    step training "$T_TRAIN" "$PY" benchmarks/training.py --device "$DEVICE" --quick \
        --models "$TRAIN_MODELS" --out "$OUT/training.json"
else
    echo "=== training: skipped, no buildable model" | tee -a "$LOG"; FAILED="$FAILED training"
fi
if [ -n "$INFER_MODELS" ]; then
    step inference "$T_INFER" "$PY" benchmarks/inference.py --device "$DEVICE" --quick \
        --models "$INFER_MODELS" --out "$OUT/inference.json"
else
    echo "=== inference: skipped, no buildable model" | tee -a "$LOG"; FAILED="$FAILED inference"
fi

# the training scripts' --device cuda paths: the tests that skip without a GPU (train, write a
# checkpoint, load and resume it on the CPU). They save bundles, so they need pydantic: from
# the image, else from wheels carried in .whl (docs/performance.md, "GPU check")
if [ "$DEVICE" = cuda ]; then
    if ! timeout "$T_PROBE" "$PY" -c "import pydantic" 2>/dev/null; then
        if ls .whl/*.whl >/dev/null 2>&1; then
            SITE=$(mktemp -d)  # not under $OUT: the device tool brings back 8 files at most
            step wheels "$T_WHEELS" "$PY" -m pip install -q --no-index --no-deps --no-compile \
                --no-cache-dir --target "$SITE" .whl/*.whl
            export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
        else
            echo "pydantic is missing and no .whl folder was carried: the device tests will" \
                 "fail to import (docs/performance.md, GPU check)" | tee -a "$LOG"
        fi
    fi
    step device-tests "$T_DEVTEST" "$PY" -m pytest -q -p no:cacheprovider -rs \
        tests/test_ofdm_device.py tests/test_training_device.py
    sed -n '/=== device-tests (limit/,/=== device-tests: exit/p' "$LOG" >"$OUT/device_tests.txt"
    rm -rf "${SITE:-/nonexistent}"
fi

if [ -n "$FAILED" ]; then
    echo "GPU check: FAILED steps:$FAILED (details in $LOG)" | tee -a "$LOG"
    exit 1
fi
echo "GPU check: all steps passed" | tee -a "$LOG"
