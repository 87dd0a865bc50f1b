"""modules/sd_samplers.py: the sampler list, and the silent fix of an unknown sampler name.

In 1.10.1 `fix_p_invalid_sampler_and_scheduler` (called by process_images) replaces a name
it does not know by the first sampler, "DPM++ 2M", and only logs a warning.
"""

import logging
from types import SimpleNamespace

all_samplers = [SimpleNamespace(name=n, aliases=a) for n, a in (
    ("DPM++ 2M", ["k_dpmpp_2m"]), ("Euler a", ["k_euler_a"]), ("Euler", ["k_euler"]), ("DDIM", []),
    ("DPM++ SDE", ["k_dpmpp_sde"]))]
all_samplers_map = {x.name: x for x in all_samplers}
samplers_map = {alias.lower(): x.name for x in all_samplers for alias in [x.name, *x.aliases]}


def fix_p_invalid_sampler_and_scheduler(p):
    name = p.sampler_name
    p.sampler_name = all_samplers_map.get(name, all_samplers[0]).name
    if p.sampler_name != name:
        logging.warning(f'Sampler Scheduler autocorrection: "{name}" -> "{p.sampler_name}"')
