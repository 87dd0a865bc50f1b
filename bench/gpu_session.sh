#!/usr/bin/env bash
# The one prepared call of a GPU session (the device machine starts bare and reaches no
# registry): the wheels its image lacks (.whl/, carried), GPU clocks and power logged beside
# the benchmark (a run here once slowed 2.5x midway), then bench_gpu.py at 512x768 (eager,
# fast, eager/fast A/B in turn), the fast path with inductor's tuning knobs, and, in the time
# left, the fast path at 1024x1024.
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
timeout $((budget * 55 / 100)) python3 bench/bench_gpu.py --sizes 512x768 --modes eager,fast --out "$OUT/gpu_512.json" \
    > "$OUT/log_512.txt" 2>&1
echo "512x768: exit $? after ${SECONDS}s"
# the same fast path with diffusers' inductor advice (1x1 convolutions as matrix products, tuned kernels)
timeout $(((budget - SECONDS) * 60 / 100)) python3 bench/bench_gpu.py --sizes 512x768 --modes fast --runs 1 \
    --ab-rounds 2 --inductor conv_1x1_as_mm=1,coordinate_descent_tuning=1,epilogue_fusion=0 \
    --out "$OUT/gpu_512_tuned.json" > "$OUT/log_512_tuned.txt" 2>&1
echo "512x768 tuned: exit $? after ${SECONDS}s"
timeout $((budget - SECONDS)) python3 bench/bench_gpu.py --sizes 1024x1024 --modes fast --runs 1 --ab-rounds 2 \
    --out "$OUT/gpu_1024.json" > "$OUT/log_1024.txt" 2>&1
echo "1024x1024: exit $? after ${SECONDS}s"
kill $clocks
grep -hE "^(eager|fast) |Traceback|Error|skipping cudagraphs" "$OUT"/log_*.txt | cut -c1-3000
