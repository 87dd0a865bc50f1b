#!/usr/bin/env bash
# The one prepared call of a GPU session (the device machine starts bare and reaches no
# registry): the wheels its image lacks (.whl/, carried), GPU clocks and power logged beside
# the benchmark, a probe of where a step's time goes (gpu_probe.py, eager and fast path), then
# bench_gpu.py's fast path at 512x768 with eager/fast in turn. 2026-11-28 left open: eager txt2img
# steps took 72 ms of wall time with 17.7 ms of kernels, yet the fast path's 2.5 ms of CPU per
# step gave 57 ms steps.
# Run from the repository root:  bash bench/gpu_session.sh [seconds, default 560]
set -u
OUT=${OUT:-/tmp/bench_gpu}
mkdir -p "$OUT"
budget=${1:-560}
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site || exit 1
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,power.limit --format=csv,noheader
nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu,utilization.gpu,clocks_event_reasons.active \
    --format=csv -lms 1000 > "$OUT/clocks.csv" 2>&1 &
clocks=$!
python3 -c "import torch, peft, transformers, diffusers; print(torch.__version__, peft.__version__, transformers.__version__, diffusers.__version__)"
# where a step's time goes (3 minutes): the card's matrix rate, the bare UNet step (SDPA backends,
# cuDNN, LoRA off/on), a txt2img call's wall vs kernel time per step, eager and on the fast path
timeout 300 python3 bench/gpu_probe.py --no-compile --fast --reps 10 --pipeline-steps 10 --out "$OUT/probe.json" \
    > "$OUT/log_probe.txt" 2>&1
echo "probe: exit $? after ${SECONDS}s"
# the fast path's figures, its single pass's timeline, and eager/fast in turn in the same process
timeout $((budget - SECONDS)) python3 bench/bench_gpu.py --sizes 512x768 --modes fast --runs 1 --ab-rounds 2 \
    --out "$OUT/gpu_512.json" > "$OUT/log_512.txt" 2>&1
echo "512x768: exit $? after ${SECONDS}s"
kill $clocks
grep -hE "^(eager|fast) |^(matmul|step_ms|kernels|compile)|Traceback|Error|skipping cudagraphs" "$OUT"/log_*.txt | cut -c1-2500
