"""Run by the WebUI when the extension is installed or the WebUI starts (not with
--skip-prepare-environment). Installs, with the WebUI's own helpers, only what the WebUI
lacks, with version floors. Never touches torch; `run_pip` itself honours --skip-install.

Not installed on purpose: mediapipe (the offline person segmenter) needs protobuf>=4.25,
which breaks the WebUI's pinned protobuf 3.20, so inside the WebUI masks come from CLIPSeg.
Face swap: onnxruntime, onnx (1.14.1, the newest that keeps protobuf at 3.20.x) and
insightface 2.1 (whose detector gives the landmarks a swap needs); with the WebUI's own
opencv-python already there, pip adds no second OpenCV (checked in a WebUI 1.10.1 venv).
"""

from __future__ import annotations

from importlib import metadata

import launch

#: (distribution names that satisfy it, version floor, what to install when missing or older)
REQUIREMENTS = (
    (("transformers",), "4.25.0", '"transformers>=4.25.0"'),  # CLIPSegForImageSegmentation
    (("opencv-python", "opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless"),
     "4.8.0", '"opencv-python-headless>=4.8.0"'),  # one OpenCV build only: any of these serves
    (("numpy",), "1.23.0", '"numpy>=1.23.0"'),
    (("Pillow", "pillow"), "9.1.0", '"Pillow>=9.1.0"'),  # Image.Resampling
    (("onnxruntime", "onnxruntime-gpu"), "1.16.0", '"onnxruntime>=1.16.0"'),
    (("onnx",), "1.14.0", '"onnx==1.14.1" "protobuf>=3.20.2,<3.21"'),
    (("insightface",), "0.7.3", '"insightface==2.1"'),
)


def _version(names: tuple[str, ...]) -> tuple[int, ...] | None:
    for name in names:
        try:
            return _parse(metadata.version(name))
        except metadata.PackageNotFoundError:
            continue
    return None


def _parse(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


for names, floor, install in REQUIREMENTS:
    found = _version(names)
    if found is None or found < _parse(floor):
        launch.run_pip(f"install {install}", f"{install} for sd-webui-multipass")
