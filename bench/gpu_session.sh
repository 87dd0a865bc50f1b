#!/usr/bin/env bash
# The one prepared call of a GPU session (the device machine starts bare and reaches no
# registry): the wheels its image lacks (.whl/, carried), GPU clocks and power logged beside
# the benchmark (a run here once slowed 2.5x midway), a probe of one UNet step (gpu_probe.py),
# bench_gpu.py at 512x768 (eager, fast, eager/fast A/B in turn), and, in the time left, the probe
# with inductor's kernels and tuning knobs.
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
# where a UNet step's time goes (a minute): the card's matrix rate, SDPA backends, cuDNN, LoRA off/on
timeout 120 python3 bench/gpu_probe.py --no-compile --out "$OUT/probe.json" > "$OUT/log_probe.txt" 2>&1
echo "probe: exit $? after ${SECONDS}s"
timeout $(((budget - SECONDS) * 60 / 100)) python3 bench/bench_gpu.py --sizes 512x768 --modes eager,fast --ab-rounds 2 \
    --out "$OUT/gpu_512.json" > "$OUT/log_512.txt" 2>&1
echo "512x768: exit $? after ${SECONDS}s"
# inductor's kernels alone on one step, with diffusers' tuning advice (no CUDA graphs)
timeout $((budget - SECONDS)) python3 bench/gpu_probe.py --out "$OUT/probe_compiled.json" > "$OUT/log_probe_compiled.txt" 2>&1
echo "probe compiled: exit $? after ${SECONDS}s"
kill $clocks
grep -hE "^(eager|fast) |^(matmul|step_ms|kernels|compile)|Traceback|Error|skipping cudagraphs" "$OUT"/log_*.txt | cut -c1-2500
