"""The plan summary under the Multipass controls: one short line per pass (what is painted,
with which LoRAs, denoise, size, seed) and problems in words. Pure: text in, HTML out; the
page asks for it through `/multipass/v1/summary` as the user types (javascript/multipass.js
keeps only the newest answer, so it never goes stale).
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any

from ..errors import MultipassError
from ..options import MultipassOptions
from ..plan import Generation, Pass, Plan, make_plan
from ..prompt import parse
from .args import UI_FIELDS, options_from_args

HINT = ("Write the scene, then <b>BREAK</b> and the subject with its LoRA: "
        "<code>a forest BREAK photo BREAK ohwx man &lt;lora:ohwx:1&gt;</code>")


def options_from_ui(values: Mapping[str, Any]) -> MultipassOptions:
    """Options from the page's control values by option name (missing ones: defaults)."""
    defaults = MultipassOptions()
    ordered = [values.get(name, getattr(defaults, name)) for name in UI_FIELDS]
    return options_from_args(ordered)


def summary_html(prompt: str, negative: str = "", ui: Mapping[str, Any] | None = None,
                 size: tuple[int, int] = (512, 512)) -> str:
    """The summary of the job the prompt box and controls describe, for images of `size` (the
    tab's width and height); never raises."""
    if not prompt.strip():
        return f'<div class="multipass-plan multipass-hint">{HINT}</div>'
    try:
        options = options_from_ui({**(ui or {}), "enabled": True})
        plan = make_plan(parse(prompt, negative), options, Generation(seed=0, width=size[0], height=size[1]))
    except MultipassError as err:
        return f'<div class="multipass-plan"><p class="multipass-problem">{escape(str(err))}</p></div>'
    enabled = bool((ui or {}).get("enabled", False))
    lines = "".join(_line(p) for p in plan.passes)
    notes = "".join(f'<p class="multipass-problem">{escape(n)}</p>' for n in _notes(plan, enabled))
    return f'<div class="multipass-plan"><ol>{lines}</ol>{notes}</div>'


def _line(p: Pass) -> str:
    loras = ", ".join(f"{lora.name}:{lora.weight:g}" for lora in p.loras) or "no LoRA"
    seed = f"image seed + {p.index}" if p.kind in ("person", "faces", "harmonize") else "image seed"
    what = p.name.replace("_", " ")  # person 1, faces, harmonize, base
    if p.kind == "faces" and p.faces is not None:
        strength = f" · face denoise {p.faces.denoise:g}"
    else:
        strength = f" · denoise {p.denoise:g}" if p.kind in ("person", "harmonize") else ""
    mask = f" · mask “{' | '.join(p.mask.prompt)}”" if p.mask is not None and not p.mask.image else ""
    prompt = escape(p.prompt if len(p.prompt) <= 90 else p.prompt[:89] + "…")
    return (f'<li><b>{what}</b> · {escape(loras)}{strength}{escape(mask)} · {p.width}x{p.height} · {seed} · '
            f'<span class="multipass-prompt" title="{escape(p.prompt)}">{prompt or "(empty prompt)"}</span></li>')


def _notes(plan: Plan, enabled: bool) -> list[str]:
    notes = []
    job = plan.job
    if not enabled and len(job.segments) > 1:
        notes.append("Multipass is off: the WebUI will see this BREAK prompt as one prompt, LoRAs everywhere.")
    if len(job.segments) > 1 and not job.persons[-1].loras and not job.common.loras:
        notes.append("The person prompt has no <lora:...>: the subject pass repaints it with the plain model.")
    dropped = [lora.name for lora in job.base.loras] if not plan.options.base_loras and len(job.segments) > 1 else []
    if dropped:
        notes.append(f"LoRA in the scene segment left out of the base pass: {', '.join(dropped)} "
                     "(tick 'Keep base/common LoRAs' for a style LoRA).")
    empty = [p.name for p in plan.persons if not p.prompt.strip()]
    if empty:
        notes.append(f"Empty person prompt: {', '.join(empty)}.")
    return notes
