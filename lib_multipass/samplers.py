"""Sampler names as users write them (WebUI labels, Astria's `scheduler` values).

Pure lookup: engines map the canonical name to their own sampler.
"""

from __future__ import annotations

from .errors import OptionsError

#: canonical name -> WebUI label (used in infotext, as the WebUI writes it)
SAMPLERS: dict[str, str] = {
    "euler": "Euler",
    "euler_a": "Euler a",
    "ddim": "DDIM",
    "dpm++2m": "DPM++ 2M",
    "dpm++2m_karras": "DPM++ 2M Karras",
    "dpm++sde": "DPM++ SDE",
    "dpm++sde_karras": "DPM++ SDE Karras",
    "lcm": "LCM",
    "tcd": "TCD",
}


def _key(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch not in " _-")


_BY_KEY = {_key(k): k for k in SAMPLERS} | {_key(v): k for k, v in SAMPLERS.items()}


def canonical_sampler(name: str, field: str = "sampler") -> str:
    """`"DPM++ 2M Karras"`, `"dpm++2m_karras"` -> `"dpm++2m_karras"`; unknown -> OptionsError."""
    found = _BY_KEY.get(_key(str(name)))
    if found is None:
        raise OptionsError(
            f"`{field}`: unknown sampler {name!r}; use one of: {', '.join(SAMPLERS)}", field
        )
    return found
