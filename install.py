"""Run by the WebUI when the extension is installed or the WebUI starts (not with
--skip-prepare-environment). Installs, with the WebUI's own helpers, only what the WebUI
lacks, with version floors. Never touches torch; `run_pip` itself honours --skip-install.

Not installed on purpose: mediapipe (the offline person segmenter) needs protobuf>=4.25,
which breaks the WebUI's pinned protobuf 3.20, so inside the WebUI masks come from CLIPSeg.
"""

from __future__ import annotations

from importlib import metadata

import launch

#: (distribution names that satisfy it, what to install, version floor)
REQUIREMENTS = (
    (("transformers",), "transformers", "4.25.0"),  # CLIPSegForImageSegmentation
    (("opencv-python", "opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless"),
     "opencv-python-headless", "4.8.0"),  # one OpenCV build only: any of these serves
    (("numpy",), "numpy", "1.23.0"),
    (("Pillow", "pillow"), "Pillow", "9.1.0"),  # Image.Resampling
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


for names, package, floor in REQUIREMENTS:
    found = _version(names)
    if found is None or found < _parse(floor):
        launch.run_pip(f"install \"{package}>={floor}\"", f"{package}>={floor} for sd-webui-multipass")
