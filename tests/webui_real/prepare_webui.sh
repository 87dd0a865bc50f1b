#!/usr/bin/env bash
# Prepare an AUTOMATIC1111 stable-diffusion-webui 1.10.1 checkout to run offline on CPU
# with tiny random models, for the extension's acceptance tests against the real WebUI.
#
#   tests/webui_real/prepare_webui.sh [WEBUI_DIR]        (or WEBUI_DIR=... in the environment)
#
# The checkout must already hold repositories/ as the WebUI's first start would clone them
# (stable-diffusion-stability-ai, generative-models, k-diffusion, BLIP,
# stable-diffusion-webui-assets, at the commits modules/launch_utils.py names): this
# machine cannot reach GitHub, so nothing here clones.
#
# Steps:
#   1. WEBUI_DIR/venv with Python 3.11: torch 2.14.1 + torchvision 0.29.1 (2.13.0+cpu does
#      not work: PyPI's torchvision 0.28 is CUDA-linked), the rest of
#      requirements_versions.txt with torch held where it is, open_clip_torch 2.20.0,
#      webuiapi, then setuptools<70 (pytorch_lightning 1.9.4 and clip's setup.py need
#      pkg_resources; torch 2.14 itself asks for setuptools>=77, so pip reports a conflict,
#      harmless, and any later install that re-resolves torch raises setuptools again),
#      then `clip` with --no-deps.  Skipped when WEBUI_DIR/venv/.multipass-prepared exists
#      (it holds the venv's pip freeze); a fresh venv takes ~2.5 min and ~5.5 GB (torch
#      2.14.1 from PyPI is the CUDA build; it runs on CPU).
#   2. An HF hub cache (WEBUI_HF_HOME, default: the folder "hf-home" beside WEBUI_DIR)
#      holding the CLIP tokenizer + config of openai/clip-vit-large-patch14, built from
#      open_clip's bundled BPE vocabulary.
#   3. Tiny random models (tiny_webui_models.py beside this script): tiny-sd1 and tiny-sdxl
#      checkpoints with their yaml files, a tiny CLIP text-encoder config folder and
#      models/VAE-approx/vaeapprox-sdxl.pt.
#
# Environment knobs:
#   PYTHON          interpreter for the venv (default: python3.11 from pyenv or PATH)
#   CLIP_SRC        a checkout of openai/CLIP (commit d50d76d) to pip-install `clip` from;
#                   default: WEBUI_DIR/repositories/CLIP, then the folder "CLIP" beside
#                   WEBUI_DIR; without one, PyPI's openai-clip 1.0.1 (the same code) is used
#   WEBUI_HF_HOME   where the HF cache goes (pass the same as HF_HOME when starting)
#   WEBUI_NO_SDXL=1 build only the SD 1.x tiny model
#
# Start the WebUI afterwards with (OMP_NUM_THREADS=1 matters on 2 shared cores):
#   cd WEBUI_DIR && OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 HF_HOME=<WEBUI_HF_HOME> \
#     venv/bin/python launch.py --skip-prepare-environment --skip-torch-cuda-test --no-half \
#     --use-cpu all --disable-opt-split-attention --do-not-download-clip --no-download-sd-model \
#     --ckpt models/Stable-diffusion/tiny-sd1.safetensors --api [--nowebui] --port 7861
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PREFIX=prepare_webui
# shellcheck source=prepare_common.sh
source "$HERE/prepare_common.sh"
WEBUI="$(checkout_dir "${1:-${WEBUI_DIR:-}}" WEBUI_DIR)"
BUILDER="$HERE/tiny_webui_models.py"
HF_DIR="${WEBUI_HF_HOME:-$(dirname "$WEBUI")/hf-home}"
VENV="$WEBUI/venv"
MARKER="$VENV/.multipass-prepared"

[[ -f "$WEBUI/launch.py" && -f "$WEBUI/requirements_versions.txt" ]] || die "$WEBUI is not a WebUI checkout"
head -1 "$WEBUI/CHANGELOG.md" 2>/dev/null | grep -q '^## 1\.10' || log "warning: CHANGELOG.md does not start with 1.10.x; this was set up for 1.10.1"
for repo in stable-diffusion-stability-ai generative-models k-diffusion BLIP stable-diffusion-webui-assets; do
    [[ -d "$WEBUI/repositories/$repo" ]] || die "$WEBUI/repositories/$repo is missing (clone it at the commit launch_utils.py names)"
done
[[ -f "$BUILDER" ]] || die "$BUILDER is missing"

prepare_venv() {
    local python constraints requirements
    python="$(find_python)"
    log "creating $VENV with $python ($("$python" --version 2>&1))"
    [[ -x "$VENV/bin/python" ]] || "$python" -m venv "$VENV"

    constraints="$WORK/torch-constraints.txt"
    requirements="$WORK/requirements.txt"
    printf '%s\n' "${TORCH_PINS[@]}" > "$constraints"
    # requirements_versions.txt without its unpinned `torch` and its setuptools==69.5.1
    # pin (which conflicts with torch 2.14's setuptools>=77; setuptools<70 is installed later).
    grep -v -E '^[[:space:]]*(torch|setuptools)[[:space:]]*(==|$|#)' "$WEBUI/requirements_versions.txt" > "$requirements"

    log "pip: ${TORCH_PINS[*]}"
    pip_install "${TORCH_PINS[@]}"
    log "pip: requirements_versions.txt (torch held at ${TORCH_PINS[0]})"
    pip_install -r "$requirements" -c "$constraints"
    log "pip: wheel, open_clip_torch, webuiapi"
    # open-clip-torch 2.20.0 is the version launch_utils.py installs (commit bb6e834);
    # requirements_versions.txt pins the same.
    pip_install wheel "open-clip-torch==2.20.0" webuiapi -c "$constraints"

    # setuptools<70 before `clip`: its setup.py imports pkg_resources (gone from the
    # setuptools>=77 that torch 2.14 pulled in), and pytorch_lightning 1.9.4 needs it too.
    log "pip: setuptools<70 (pkg_resources, for clip's setup.py and pytorch_lightning 1.9.4)"
    pip_install "setuptools<70"

    install_clip "${CLIP_SRC:-}" "$WEBUI/repositories/CLIP" "$(dirname "$WEBUI")/CLIP"

    log "checking imports"
    OMP_NUM_THREADS=1 "$VENV/bin/python" - <<'EOF'
import warnings
warnings.simplefilter("ignore")
import pkg_resources  # noqa: F401  (pytorch_lightning needs it)
import torch, torchvision, transformers, gradio, numpy, PIL, pytorch_lightning, open_clip, clip, webuiapi  # noqa
from torchvision.ops import nms  # fails with a CUDA-linked torchvision that does not match torch
nms(torch.rand(3, 4), torch.rand(3), 0.5)
print(f"[prepare_webui] torch {torch.__version__}, torchvision {torchvision.__version__}, "
      f"transformers {transformers.__version__}, gradio {gradio.__version__}, numpy {numpy.__version__}, "
      f"Pillow {PIL.__version__}")
EOF
    write_marker
}

if [[ -f "$MARKER" ]]; then
    log "$VENV already prepared ($MARKER exists): skipping the installs"
else
    prepare_venv
fi

log "building the HF tokenizer cache in $HF_DIR and the tiny models"
builder_args=("$WEBUI" --hf-home "$HF_DIR")
[[ "${WEBUI_NO_SDXL:-0}" == 1 ]] && builder_args+=(--no-sdxl)
if ! OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 HF_HOME="$HF_DIR" "$VENV/bin/python" -W ignore "$BUILDER" "${builder_args[@]}" \
        > "$WORK/builder.log" 2>&1; then
    tail -30 "$WORK/builder.log" >&2
    die "the tiny-model builder failed"
fi
grep -E '^[a-z_0-9]+: /|built in' "$WORK/builder.log" | sed 's/^/[prepare_webui] /'

cat <<EOF
[prepare_webui] ready. Start the WebUI with:
  cd $WEBUI && OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 HF_HOME=$HF_DIR venv/bin/python launch.py \\
    --skip-prepare-environment --skip-torch-cuda-test --no-half --use-cpu all \\
    --disable-opt-split-attention --do-not-download-clip --no-download-sd-model \\
    --ckpt models/Stable-diffusion/tiny-sd1.safetensors --api --nowebui --port 7861
EOF
