"""A client of the real WebUI for the acceptance suite: its HTTP helpers, job results and constants.

The acceptance suite runs on a real AUTOMATIC1111 WebUI 1.10.1 checkout (`WEBUI_DIR`), or on a
real Forge 2, Forge Classic or reForge checkout (a `WEBUI_DIR` with `modules_forge/`, prepared
by prepare_forge.sh: its own tiny SD 1.5 model, LoRA and ControlNet, no SDXL, its CPU flags).

`make webui-acceptance WEBUI_DIR=...` prepares the checkout (tests/webui_real/prepare_webui.sh:
its venv, tiny random SD 1.x and SDXL models, LoRAs, a tiny CLIPSeg), copies this working
tree into its extensions folder, starts the WebUI offline on 127.0.0.1 with the UI and the
API, and drives it as clients do: plain HTTP, the `webuiapi` package and the UI's own
Gradio config. Without `WEBUI_DIR` every test here is skipped (CI has no WebUI checkout).
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
EXTENSION = "sd-webui-multipass"
PORT = int(os.environ.get("WEBUI_PORT", "7860"))
START_TIMEOUT = 180
TINY_DETECTOR = "models/owlvit/tiny-owlvit"  # a random OWL-ViT, built with the host's own transformers
TINY_NANODET = "models/nanodet"  # a random graph with NanoDet's interface where `nanodet` looks for its weights
FORGE = bool(os.environ.get("WEBUI_DIR")) and (Path(os.environ["WEBUI_DIR"]) / "modules_forge").is_dir()
# Forge 2 itself, not the forks of Forge 1 that keep its ldm_patched (Classic, reForge)
FORGE2 = FORGE and not (Path(os.environ["WEBUI_DIR"]) / "ldm_patched").is_dir()
if FORGE:  # `--use-cpu all` crashes Forge without CUDA (Forge #2231)
    SD1, SDXL = "tiny-sd15.safetensors", "tiny-sdxl.safetensors"
    LORA = {SD1: "tiny-sd15-lora", SDXL: "tiny-sdxl-lora"}
    FLAGS = ["--skip-prepare-environment", "--skip-torch-cuda-test", "--always-cpu", "--all-in-fp32", "--api",
             "--server-name", "127.0.0.1"]
else:
    SD1, SDXL = "tiny-sd1.safetensors", "tiny-sdxl.safetensors"
    LORA = {SD1: "tiny-sd1-lora", SDXL: "tiny-sdxl-lora"}
    FLAGS = ["--skip-prepare-environment", "--skip-torch-cuda-test", "--no-half", "--use-cpu", "all",
             "--disable-opt-split-attention", "--do-not-download-clip", "--no-download-sd-model", "--api",
             "--server-name", "127.0.0.1"]

#: what a job sends when a test does not say otherwise: small and quick on a CPU
BASE_PAYLOAD = {"steps": 4, "width": 64, "height": 64, "cfg_scale": 5, "sampler_name": "Euler a",
                "seed": 1234, "batch_size": 1, "n_iter": 1, "send_images": True, "save_images": False}
PROMPT = f"a forest clearing BREAK photo BREAK ohwx man <lora:{LORA[SD1]}:1>"
FIRST_JOB = dict(prompt=PROMPT, options={"enabled": True, "save_passes": True}, seed=777)

_PARAM = re.compile(r'\s*([\w ]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


def infotext_params(text: str) -> dict[str, str]:
    """The "Key: value" pairs of an infotext's last line (quoted values unquoted), as the WebUI
    parses them."""
    out = {}
    for key, value in _PARAM.findall(text.strip().splitlines()[-1]):
        out[key.strip()] = json.loads(value) if value.startswith('"') else value.strip()
    return out


def decode(data: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data.split(",", 1)[-1]))).convert("RGB"))


def encode(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


@dataclass
class Result:
    """One /sdapi/v1/txt2img answer: images (RGB arrays) with their infotexts."""

    status: int
    body: Any
    images: list[np.ndarray] = field(default_factory=list)
    infotexts: list[str] = field(default_factory=list)

    def params(self, index: int = 0) -> dict[str, str]:
        return infotext_params(self.infotexts[index])

    def named(self, label: str) -> np.ndarray:
        """An intermediate image that `save_passes` returns ("multipass base, image 1", ...)."""
        return self.images[self.infotexts.index(label)]


class Server:
    """The running WebUI: HTTP helpers and its log."""

    def __init__(self, webui: Path, log: Path, process: subprocess.Popen):
        import requests

        self.webui, self.log, self.process = webui, log, process
        self.url = f"http://127.0.0.1:{PORT}"
        self.http = requests.Session()
        self.checkpoint = SD1
        self.first: Result | None = None

    def get(self, path: str, **kwargs) -> Any:
        return self.http.get(self.url + path, timeout=120, **kwargs)

    def post(self, path: str, body: Any, **kwargs) -> Any:
        return self.http.post(self.url + path, json=body, timeout=600, **kwargs)

    def txt2img(self, prompt: str = PROMPT, options: dict | None = None, endpoint: str = "txt2img",
                **payload: Any) -> Result:
        """A job with multipass `options` (None: the script not sent at all)."""
        body = {**BASE_PAYLOAD, "prompt": prompt, **payload}
        if options is not None:  # the caller's alwayson_scripts (other scripts' args) are not changed
            body["alwayson_scripts"] = {**body.get("alwayson_scripts", {}), "multipass": {"args": [options]}}
        answer = self.post(f"/sdapi/v1/{endpoint}", body)
        data = answer.json()
        if answer.status_code != 200:
            return Result(answer.status_code, data)
        info = json.loads(data.get("info") or "{}")
        return Result(200, data, [decode(i) for i in data.get("images", [])], info.get("infotexts", []))

    def use(self, checkpoint: str) -> None:
        if self.checkpoint != checkpoint:
            assert self.post("/sdapi/v1/options", {"sd_model_checkpoint": checkpoint}).status_code == 200
            self.checkpoint = checkpoint

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf8", errors="replace")
