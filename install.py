"""Run by the WebUI when the extension is installed or the WebUI starts (not with
--skip-prepare-environment). Installs, with the WebUI's own helper, only what the WebUI
lacks, with version floors that its own pins already satisfy: on a stock 1.10.1 nothing is
installed, and none of its pinned packages (protobuf, numpy, transformers, ...) is moved, so
its launcher never reinstalls its requirements. Never touches torch; `run_pip` itself
honours --skip-install.

Not installed here on purpose:
* mediapipe (the offline person segmenter) needs protobuf>=4.25, which breaks the WebUI's
  pinned protobuf 3.20; inside the WebUI masks come from CLIPSeg.
* The face-swap stack, for the few who use face swap: when it is asked for and missing, the
  job says exactly what to install (`FACE_SWAP_INSTALL` in lib_multipass/faceswap.py).
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
