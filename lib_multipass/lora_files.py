"""Find LoRA files by name in a folder, as the WebUI does (file name without extension)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .errors import ModelNotFoundError

SUFFIX = ".safetensors"


def list_loras(folder: str | Path | None) -> dict[str, Path]:
    """Name -> file for every LoRA under `folder` (sub-folders too; `sub/name` also works)."""
    if folder is None or not Path(folder).is_dir():
        return {}
    root = Path(folder)
    found: dict[str, Path] = {}
    for path in sorted(root.rglob(f"*{SUFFIX}")):
        relative = path.relative_to(root).with_suffix("").as_posix()
        found.setdefault(path.stem, path)
        found.setdefault(relative, path)
    return found


def find_loras(folder: str | Path | None, names: Sequence[str]) -> dict[str, Path]:
    """The file of each LoRA name; a missing one is an error that lists the LoRAs found."""
    if not names:
        return {}
    if folder is None:
        raise ModelNotFoundError(
            f"the prompt uses LoRA {', '.join(map(repr, names))} but no LoRA folder was given; "
            "pass the folder that holds the .safetensors files (--lora-dir)"
        )
    if not Path(folder).is_dir():
        raise ModelNotFoundError(f"LoRA folder {str(folder)!r} does not exist; pass the folder that holds your LoRAs")
    available = list_loras(folder)
    missing = [name for name in names if name not in available]
    if missing:
        listing = ", ".join(sorted({p.stem for p in available.values()})) or "none"
        raise ModelNotFoundError(
            f"LoRA {', '.join(map(repr, missing))} not found in {str(folder)!r}; LoRAs found there: {listing}. "
            f"Put <name>{SUFFIX} in that folder or fix the name in the <lora:name:weight> tag"
        )
    return {name: available[name] for name in names}
