"""Find LoRA files by name in a folder, as the WebUI does (file name without extension), and
check each one before any pass: a truncated or foreign file fails up front, not after the
base pass."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

from .errors import ModelNotFoundError

SUFFIX = ".safetensors"
#: bytes per element of the safetensors dtypes
ITEM_SIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
             "F8_E4M3": 1, "F8_E5M2": 1}
#: the layouts this engine loads, by a key part only they have (first match wins)
LAYOUTS = (("hada_w1_a", "LyCORIS LoHa"), ("lokr_w", "LyCORIS LoKr"), ("lora_down", "kohya LoRA/LoCon"),
           ("lora_A", "peft/diffusers LoRA"), ("lora.down", "diffusers LoRA (old keys)"))
#: LyCORIS layouts the WebUI loads and this engine does not, by a key part only they have
OTHER_LAYOUTS = (("lora_mid", "LyCORIS LoCon with CP decomposition (lora_mid)"), ("oft_", "LyCORIS OFT"),
                 ("boft_", "LyCORIS BOFT"), (".on_input", "LyCORIS IA3"), (".a1.weight", "LyCORIS GLoRA"),
                 (".diff", "LyCORIS full (diff)"), (".w_norm", "LyCORIS norm"))


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
    for name in names:
        check_lora_file(available[name])
    return {name: available[name] for name in names}


def check_lora_file(path: Path) -> None:
    """A readable safetensors file whose tensors are all there and which holds LoRA weights.

    Reads the header only (a JSON index of names, dtypes, shapes and byte ranges) and checks
    it against the file's size, so a cut download is found without loading anything."""
    def bad(why: str) -> ModelNotFoundError:
        return ModelNotFoundError(f"LoRA file {str(path)!r} {why}; download it again or remove it")

    try:
        size = path.stat().st_size
        with path.open("rb") as file:
            length = int.from_bytes(file.read(8), "little")
            if length <= 1 or 8 + length > size:
                raise bad("is not a safetensors file (its header is cut or missing)")
            header = json.loads(file.read(length))
    except OSError as err:
        raise bad(f"cannot be read ({err.strerror or err})") from None
    except (ValueError, UnicodeDecodeError):
        raise bad("has a damaged header") from None
    tensors = {k: v for k, v in header.items() if k != "__metadata__"} if isinstance(header, dict) else {}
    end = 0
    for name, info in tensors.items():
        try:
            start, stop = info["data_offsets"]
            expected = math.prod(info["shape"]) * ITEM_SIZE[info["dtype"]]
        except (KeyError, TypeError, ValueError):
            raise bad(f"has a damaged entry for {name!r}") from None
        if stop - start != expected:
            raise bad(f"has a damaged entry for {name!r}")
        end = max(end, stop)
    if 8 + length + end > size:
        raise bad(f"is cut short ({size} bytes of {8 + length + end})")
    lora_layout(list(tensors), str(path))


def lora_layout(keys: Sequence[str], path: str) -> str:
    """The layout of a LoRA file from its tensor names; one this engine cannot load is an
    error naming it (before any pass, not after the base)."""
    for part, name in OTHER_LAYOUTS:
        if any(part in key for key in keys):
            raise ModelNotFoundError(
                f"LoRA file {path!r} is a {name} file, which the standalone engine does not load; it loads "
                f"{', '.join(name for _, name in LAYOUTS[:-1])} and {LAYOUTS[-1][1]} files (the WebUI loads this one)")
    for part, name in LAYOUTS:
        if any(part in key for key in keys):
            return name
    raise ModelNotFoundError(f"LoRA file {path!r} holds no LoRA weights (no lora_down/lora_up, lora_A/lora_B, "
                             "hada_ or lokr_ keys); download it again or remove it")
