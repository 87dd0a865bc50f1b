# Shared by prepare_webui.sh and prepare_forge.sh (sourced, not run): the checkout's folder from
# the argument, messages, the Python 3.11 that makes the venv, a scratch folder, and a quiet pip.
# The sourcing script sets PREFIX, and VENV and MARKER before it installs.
TORCH_PINS=("torch==2.14.1" "torchvision==0.29.1")  # PyPI's CUDA build; it runs on CPU

checkout_dir() {  # checkout_dir GIVEN VARIABLE: GIVEN as an absolute path, or the usage and exit 2
    if [[ -z "$1" ]]; then
        echo "usage: $0 $2   (or set $2)" >&2
        exit 2
    fi
    (cd "$1" && pwd)
}

log() { printf '[%s] %s\n' "$PREFIX" "$*"; }
die() { printf '[%s] error: %s\n' "$PREFIX" "$*" >&2; exit 1; }

find_python() {
    if [[ -n "${PYTHON:-}" ]]; then echo "$PYTHON"; return; fi
    local candidate
    for candidate in /root/.pyenv/versions/3.11*/bin/python3.11 "$(command -v python3.11 || true)"; do
        [[ -n "$candidate" && -x "$candidate" ]] && { echo "$candidate"; return; }
    done
    die "no Python 3.11 found (set PYTHON)"
}

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

pip_install() {  # quiet pip in the venv; one install at a time (2 shared cores)
    local status=0
    "$VENV/bin/python" -m pip install --disable-pip-version-check --progress-bar off -q "$@" \
        > "$WORK/pip.log" 2>&1 || status=$?
    # The machine's pip index lists a few absent local folders: drop that noise.
    grep -v "is ignored: it is neither a file nor a directory" "$WORK/pip.log" >&2 || true
    return "$status"
}

install_clip() {  # openai/CLIP from the first checkout given (--no-deps), else PyPI's openai-clip 1.0.1 (the same code)
    local candidate clip_src=""
    for candidate in "$@"; do
        if [[ -n "$candidate" && -f "$candidate/setup.py" ]]; then clip_src="$candidate"; break; fi
    done
    if [[ -n "$clip_src" ]]; then
        log "pip: clip from $clip_src"
        # --no-deps: its requirements are there, and re-resolving torch would raise setuptools again.
        pip_install --no-build-isolation --no-deps "$clip_src"
        rm -rf "$clip_src/build" "$clip_src"/*.egg-info 2>/dev/null || true
    else
        log "pip: clip from PyPI's openai-clip 1.0.1 (no openai/CLIP checkout found)"
        pip_install --no-deps "openai-clip==1.0.1"
    fi
    # Again, in case anything above raised setuptools to satisfy torch's metadata.
    pip_install "setuptools<70"
}

write_marker() {  # the marker holds the pip freeze of the prepared venv
    "$VENV/bin/python" -m pip freeze --disable-pip-version-check 2>/dev/null > "$MARKER.tmp"
    mv "$MARKER.tmp" "$MARKER"
}
