"""Generation parameters in the WebUI's infotext format (what PNG Info shows and pastes)."""

from __future__ import annotations

import json
from collections.abc import Mapping

from . import __version__
from .plan import Plan
from .samplers import SAMPLERS


def quote(value: object) -> str:
    """Quote a value the way the WebUI does: JSON-quoted when it holds `,` `:` or a newline."""
    text = str(value)
    if "," not in text and "\n" not in text and ":" not in text:
        return text
    return json.dumps(text, ensure_ascii=False)


def generation_params(plan: Plan, model: str | None = None) -> dict[str, object]:
    """The WebUI's keys for the main settings, then the multipass keys that differ from defaults."""
    gen = plan.generation
    params: dict[str, object] = {
        "Steps": gen.steps,
        "Sampler": SAMPLERS.get(gen.sampler, gen.sampler),
        "CFG scale": f"{gen.cfg_scale:g}",
        "Seed": gen.seed,
        "Size": f"{gen.width}x{gen.height}",
    }
    if model:
        params["Model"] = model
    if plan.options.enabled:
        params["Multipass"] = __version__
        params.update(plan.options.infotext_params())
    return params


def infotext(prompt: str, negative: str, params: Mapping[str, object]) -> str:
    """`prompt`, `Negative prompt: ...`, then `Key: value, ...` on the last line."""
    lines = [prompt]
    if negative:
        lines.append(f"Negative prompt: {negative}")
    lines.append(", ".join(f"{key}: {quote(value)}" for key, value in params.items() if value is not None))
    return "\n".join(lines)
