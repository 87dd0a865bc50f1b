#!/usr/bin/env bash
# Prepare a Stable Diffusion WebUI Forge checkout (Forge 2, lllyasviel/stable-diffusion-webui-forge
# at dfdcbab6) to run offline on CPU with tiny random models, for the extension's acceptance
# tests against the real Forge. Also a Forge Classic checkout (Haoming02/sd-webui-forge-classic,
# branch `classic`, 1f95d717; recognised by modules_forge/forge_version.py saying
# version = "classic"): the differences are noted as "Classic:" below. Also reForge
# (Panchovix/stable-diffusion-webui-reForge, branch main, 3b56b268; recognised by
# modules_forge/ and ldm_patched/ with a forge_version.py version that is neither "classic" nor
# "neo", here '1.0.0v2-v1.10.1RC'): noted as "reForge:".
#
#   tests/webui_real/prepare_forge.sh [FORGE_DIR]        (or FORGE_DIR=... in the environment)
#
# The checkout must already hold repositories/ as Forge's first start would clone them
# (modules/launch_utils.py): stable-diffusion-webui-assets (6f7db241), huggingface_guess
# (84826248) and BLIP (48211a15). Classic: stable-diffusion-webui-assets (6f7db241),
# stable-diffusion-stability-ai (cf1d67a6) and generative-models (45c443b3), no BLIP or
# huggingface_guess. reForge: stable-diffusion-webui-assets (6f7db241), stable-diffusion-stability-ai
# (launch_utils.py names joypaul162's fork at f16630a9; Stability-AI's cf1d67a6 serves: only
# modules/paths.py's check for ldm/models/diffusion/ddpm.py and the yaml configs use it),
# generative-models (45c443b3), k-diffusion (ab527a9a) and BLIP (48211a15).
# This machine cannot reach GitHub, so nothing here clones.
#
# Steps:
#   1. FORGE_DIR/venv with Python 3.11: torch 2.14.1 + torchvision 0.29.1 (PyPI's CUDA build, it
#      runs on CPU), requirements_versions.txt (Classic: requirements.txt, gradio 3.41.2,
#      pydantic 1.10.20, transformers 4.30.2, protobuf 3.20.3; reForge: requirements_versions.txt,
#      gradio 3.41.2, transformers 4.48.1, numpy 1.26.4, pillow 10.4.0, protobuf 3.20.0, and its
#      pydantic wheel URL on GitHub replaced by PyPI's pydantic==1.10.15) without its bare `torch` and its
#      setuptools==69.5.1 (which conflicts with torch 2.14's setuptools>=77; Classic pins none)
#      with torch held by a constraints file; then what Forge's first start would add: joblib (soft-inpainting's
#      script imports it, no requirements file names it), the requirements of the built-in
#      ControlNet/legacy preprocessors (fvcore, mediapipe, onnxruntime, svglib; protobuf, numpy
#      and Pillow held at Forge's pins), open_clip (pinned by the requirements), `clip` (openai/CLIP
#      d50d76d, --no-deps) and webuiapi for the tests; setuptools<70 last (pkg_resources, for
#      pytorch_lightning 1.9.4 and clip's setup.py; pip then reports torch's setuptools>=77
#      conflict, harmless). Skipped when FORGE_DIR/venv/.multipass-prepared exists (it holds the
#      venv's pip freeze); a fresh venv takes ~3 min and ~7 GB.
#   2. No HF cache is needed: Forge ships the SD 1.5 tokenizer and configs in
#      backend/huggingface/ (Classic: ldm_patched/modules/sd1_tokenizer, sd1_clip_config.json, and
#      A1111's configs/v1-inference.yaml), and points HF_HOME/HF_HUB_CACHE at models/diffusers itself
#      when they are unset. The script writes models/diffusers/version.txt so the first start does
#      not print transformers' "cache ... has been updated" migration notice.
#   3. Tiny random models (tiny_forge_models.py beside this script, run with the venv's python):
#      models/Stable-diffusion/tiny-sd15.safetensors (~280 MB; SD 1.5 layout Forge detects as
#      SD15), models/Lora/tiny-sd15-lora.safetensors, models/VAE-taesd/taesd_{de,en}coder.pth and
#      models/ControlNet/tiny-sd15-controlnet.safetensors (~37 MB, lllyasviel "control_model.*"
#      layout matching the tiny UNet, random non-zero zero convs; the built-in ControlNet lists it
#      as "tiny-sd15-controlnet [6c429777]": a unit must name it with that hash; Classic lists it,
#      and wants it named, as plain "tiny-sd15-controlnet"). On Classic the builder uses Classic's
#      own modules and detection (ldm_patched) and writes byte-identical files.
#      Kept when already built with the same recipe (a re-run takes ~1 s). reForge: built with
#      its ldm_patched (like Classic; same bytes, ControlNet listed as "tiny-sd15-controlnet
#      [6c429777]" as on Forge 2), plus a random models/VAE-approx/model.pt when missing (reForge
#      ships only vaeapprox-sdxl.pt and would download model.pt at the first SD 1.5 job: HTTP 500).
#
# Environment knobs:
#   PYTHON          interpreter for the venv (default: python3.11 from pyenv or PATH)
#   CLIP_SRC        a checkout of openai/CLIP (commit d50d76d) to pip-install `clip` from;
#                   default: FORGE_DIR/repositories/CLIP, then the folder "CLIP" beside FORGE_DIR,
#                   then /work/webui/CLIP; without one, PyPI's openai-clip 1.0.1 (the same code)
#   FORGE_TINY_FP16=1  store the tiny checkpoint's VAE/text encoder as fp16 (~490 MB) instead of fp8
#   FORGE_TINY_CONTROLNET=0  do not build the tiny ControlNet
#
# Start Forge afterwards with (OMP_NUM_THREADS=1 matters on 2 shared cores; `--use-cpu all`
# crashes Forge without CUDA, issue #2231; drop --nowebui for the Gradio UI on the same port):
#   cd FORGE_DIR && OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 setsid venv/bin/python launch.py \
#     --always-cpu --all-in-fp32 --skip-prepare-environment --skip-torch-cuda-test \
#     --ckpt models/Stable-diffusion/tiny-sd15.safetensors --api --nowebui --port 7862 \
#     --server-name 127.0.0.1 > forge.log 2>&1 &
#   ready when `curl -sf http://127.0.0.1:7862/sdapi/v1/sd-models` answers (~12-17 s);
#   stop with kill -TERM -- -<pid of setsid'd python> (its process group).
#   Classic: the same command (it has the same --always-cpu/--all-in-fp32 flags; answers after
#   ~9-12 s and loads the checkpoint right after start, in the background).
#   reForge: the same command too (answers after ~16 s, loads the checkpoint in the background).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PREFIX=prepare_forge
# shellcheck source=prepare_common.sh
source "$HERE/prepare_common.sh"
FORGE="$(checkout_dir "${1:-${FORGE_DIR:-}}" FORGE_DIR)"
BUILDER="$HERE/tiny_forge_models.py"
VENV="$FORGE/venv"
MARKER="$VENV/.multipass-prepared"

# Forge Classic (Haoming02/sd-webui-forge-classic, branch classic) says so in its version file.
if [[ -f "$FORGE/modules_forge/forge_version.py" ]] \
        && grep -Eq "^[[:space:]]*version[[:space:]]*=[[:space:]]*[\"']classic[\"']" "$FORGE/modules_forge/forge_version.py"; then
    FLAVOR=classic
    REQUIREMENTS="$FORGE/requirements.txt"
    REPOS=(stable-diffusion-webui-assets stable-diffusion-stability-ai generative-models)
    [[ -f "$FORGE/launch.py" && -f "$REQUIREMENTS" && -f "$FORGE/modules_forge/forge_loader.py" && -d "$FORGE/ldm_patched" ]] \
        || die "$FORGE is not a Forge Classic checkout (launch.py, requirements.txt, modules_forge/forge_loader.py, ldm_patched/)"
    log "Forge Classic checkout (modules_forge/forge_version.py: version = \"classic\")"
elif [[ -f "$FORGE/modules_forge/forge_version.py" && -d "$FORGE/ldm_patched" && ! -f "$FORGE/backend/loader.py" ]] \
        && ! grep -Eq "^[[:space:]]*version[[:space:]]*=[[:space:]]*[\"'](classic|neo)[\"']" "$FORGE/modules_forge/forge_version.py"; then
    # reForge (Panchovix/stable-diffusion-webui-reForge, main): Forge 1 layout on ldm_patched.
    FLAVOR=reforge
    REQUIREMENTS="$FORGE/requirements_versions.txt"
    REPOS=(stable-diffusion-webui-assets stable-diffusion-stability-ai generative-models k-diffusion BLIP)
    [[ -f "$FORGE/launch.py" && -f "$REQUIREMENTS" && -f "$FORGE/modules_forge/forge_loader.py" ]] \
        || die "$FORGE is not a reForge checkout (launch.py, requirements_versions.txt, modules_forge/forge_loader.py, ldm_patched/)"
    log "reForge checkout (modules_forge/forge_version.py: $(grep -E '^[[:space:]]*version[[:space:]]*=' "$FORGE/modules_forge/forge_version.py" | head -1))"
else
    FLAVOR=forge2
    REQUIREMENTS="$FORGE/requirements_versions.txt"
    REPOS=(stable-diffusion-webui-assets huggingface_guess BLIP)
    [[ -f "$FORGE/launch.py" && -f "$REQUIREMENTS" && -f "$FORGE/backend/loader.py" ]] \
        || die "$FORGE is not a Forge checkout (launch.py, requirements_versions.txt, backend/loader.py)"
    grep -q "huggingface_guess" "$FORGE/modules/launch_utils.py" || log "warning: launch_utils.py names no huggingface_guess; this was set up for Forge 2 (dfdcbab6)"
fi
for repo in "${REPOS[@]}"; do
    [[ -d "$FORGE/repositories/$repo" ]] || die "$FORGE/repositories/$repo is missing (clone it at the commit modules/launch_utils.py names)"
done
[[ -f "$BUILDER" ]] || die "$BUILDER is missing"

prepare_venv() {
    local python constraints ext_constraints requirements
    python="$(find_python)"
    log "creating $VENV with $python ($("$python" --version 2>&1))"
    [[ -x "$VENV/bin/python" ]] || "$python" -m venv "$VENV"

    constraints="$WORK/torch-constraints.txt"
    ext_constraints="$WORK/ext-constraints.txt"
    requirements="$WORK/requirements.txt"
    printf '%s\n' "${TORCH_PINS[@]}" > "$constraints"
    # Forge's pins that the extensions' requirements must not move (mediapipe would lift protobuf).
    { printf '%s\n' "${TORCH_PINS[@]}"
      grep -iE '^(protobuf|numpy|Pillow)==' "$REQUIREMENTS"  # -i: reForge pins "pillow"
      echo "setuptools<70"; } > "$ext_constraints"
    # reForge names a pydantic wheel on GitHub (unreachable here): PyPI's pydantic of that version instead.
    grep -v -E '^[[:space:]]*(torch|setuptools)[[:space:]]*(==|$|#)' "$REQUIREMENTS" \
        | sed -E 's#^[[:space:]]*https?://[^[:space:]]*/pydantic-([0-9][0-9a-z.]*)-py3-none-any\.whl.*$#pydantic==\1#' \
        > "$requirements"

    log "pip: ${TORCH_PINS[*]}"
    pip_install "${TORCH_PINS[@]}"
    log "pip: $(basename "$REQUIREMENTS") (torch held at ${TORCH_PINS[0]})"
    pip_install -r "$requirements" -c "$constraints"
    log "pip: setuptools<70 (pkg_resources, for clip's setup.py and pytorch_lightning 1.9.4)"
    pip_install "setuptools<70"
    log "pip: joblib, the built-in ControlNet/preprocessor requirements, wheel, webuiapi"
    pip_install joblib fvcore mediapipe onnxruntime svglib "opencv-python>=4.8.0" wheel webuiapi -c "$ext_constraints"

    install_clip "${CLIP_SRC:-}" "$FORGE/repositories/CLIP" "$(dirname "$FORGE")/CLIP" /work/webui/CLIP

    log "checking imports"
    OMP_NUM_THREADS=1 "$VENV/bin/python" - <<'EOF'
import warnings
warnings.simplefilter("ignore")
import pkg_resources  # noqa: F401  (pytorch_lightning needs it)
import torch, torchvision, transformers, diffusers, gradio, numpy, PIL, pydantic, google.protobuf  # noqa
import pytorch_lightning, open_clip, clip, joblib, webuiapi, safetensors  # noqa
from torchvision.ops import nms  # fails with a CUDA-linked torchvision that does not match torch
nms(torch.rand(3, 4), torch.rand(3), 0.5)
assert hasattr(torch, "float8_e4m3fn")  # the tiny checkpoint stores its VAE/text encoder as fp8
print(f"[prepare_forge] torch {torch.__version__}, torchvision {torchvision.__version__}, "
      f"transformers {transformers.__version__}, diffusers {diffusers.__version__}, gradio {gradio.__version__}, "
      f"pydantic {pydantic.VERSION}, numpy {numpy.__version__}, Pillow {PIL.__version__}, "
      f"protobuf {google.protobuf.__version__}")
EOF
    write_marker
}

if [[ -f "$MARKER" ]]; then
    log "$VENV already prepared ($MARKER exists): skipping the installs"
else
    prepare_venv
fi

# Forge's own HF cache folder (HF_HOME/HF_HUB_CACHE default to it): mark its layout as current.
mkdir -p "$FORGE/models/diffusers"
[[ -f "$FORGE/models/diffusers/version.txt" ]] || printf '1' > "$FORGE/models/diffusers/version.txt"

log "building the tiny models (tiny_forge_models.py)"
builder_args=("$FORGE")
[[ "${FORGE_TINY_FP16:-0}" == 1 ]] && builder_args+=(--fp16)
if [[ "${FORGE_TINY_CONTROLNET:-1}" == 0 ]]; then builder_args+=(--no-controlnet); else builder_args+=(--controlnet); fi
if ! OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 "$VENV/bin/python" -W ignore "$BUILDER" "${builder_args[@]}" \
        > "$WORK/builder.log" 2>&1; then
    tail -30 "$WORK/builder.log" >&2
    die "the tiny-model builder failed"
fi
grep '^\[tiny_forge_models\]' "$WORK/builder.log" | sed 's/^\[tiny_forge_models\]/[prepare_forge]/'

cat <<EOF
[prepare_forge] ready. Start $(case $FLAVOR in classic) echo "Forge Classic";; reforge) echo "reForge";; *) echo "Forge";; esac) with:
  cd $FORGE && OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 setsid venv/bin/python launch.py \\
    --always-cpu --all-in-fp32 --skip-prepare-environment --skip-torch-cuda-test \\
    --ckpt models/Stable-diffusion/tiny-sd15.safetensors --api --nowebui --port 7862 \\
    --server-name 127.0.0.1 > forge.log 2>&1 &
EOF
