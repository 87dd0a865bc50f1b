"""Which WebUI runs the extension: AUTOMATIC1111 or one of the Forge family.

Forge keeps the WebUI's script hooks and `process_images`, but its model is a set of
patchers (`sd_model.forge_objects`) rebuilt for every batch and sampling, its ControlNet is
built in (`sd_forge_controlnet`) and its UI runs on gradio 4. The adapter asks `forge` where
they differ, and the name where the Forge forks differ from Forge 2.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from functools import cache


@dataclass(frozen=True)
class WebUIHost:
    name: str  # "AUTOMATIC1111", "Forge", "Forge Neo", "Forge Classic", "reForge"
    version: str

    @property
    def forge(self) -> bool:
        return self.name != "AUTOMATIC1111"


def host_from_version(version: str, release: str = "", reforge: bool = False) -> WebUIHost:
    """The host that `modules_forge.forge_version` names ("2.0.1v1.10.1" on Forge 2; Neo and
    Classic say "neo"/"classic" and give their release apart)."""
    lowered = version.lower()
    for flavour in ("neo", "classic"):
        if lowered.startswith(flavour):
            return WebUIHost(f"Forge {flavour.capitalize()}", release or version[len(flavour):].strip(" -v"))
    return WebUIHost("reForge" if reforge else "Forge", version)


@cache
def current_webui() -> WebUIHost:
    """The running WebUI (read once: it does not change while the extension is loaded)."""
    if importlib.util.find_spec("modules_forge") is None:
        try:
            from modules import launch_utils

            version = launch_utils.git_tag()
        except Exception:  # noqa: BLE001 - a version is only shown, never relied on
            version = ""
        return WebUIHost("AUTOMATIC1111", version)
    try:
        forge_version = importlib.import_module("modules_forge.forge_version")
        version, release = str(getattr(forge_version, "version", "")), str(getattr(forge_version, "release", ""))
    except ImportError:
        version, release = "", ""
    # reForge names itself like Forge 2 ("2.0.0dev-v1.10.1RC") but keeps Forge 1's ldm_patched,
    # which Forge 2 dropped (Neo and Classic say so in their version)
    reforge = importlib.util.find_spec("ldm_patched") is not None
    return host_from_version(version, release, reforge)
