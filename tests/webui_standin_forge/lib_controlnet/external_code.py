"""lib_controlnet/external_code.py: the unit (no find_cn_script, get_models or
update_cn_script_in_processing in Forge)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class ControlNetUnit:
    enabled: bool = True
    module: str = "None"
    model: str = "None"
    weight: float = 1.0
    image: Any = None
    guidance_start: float = 0.0
    guidance_end: float = 1.0
    pixel_perfect: bool = False

    @staticmethod
    def from_dict(d: dict) -> ControlNetUnit:
        return ControlNetUnit(**{k: v for k, v in d.items() if k in ControlNetUnit.__dataclass_fields__})
