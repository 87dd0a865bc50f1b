"""modules/sd_samplers.py: the sampler list (names only)."""

from types import SimpleNamespace

all_samplers = [SimpleNamespace(name=n) for n in ("DPM++ 2M", "Euler a", "Euler", "DDIM", "DPM++ SDE")]
