"""modules/sd_schedulers.py: the scheduler labels (a sampler name may end with one)."""

from types import SimpleNamespace

schedulers = [SimpleNamespace(name=n, label=label) for n, label in (
    ("automatic", "Automatic"), ("uniform", "Uniform"), ("karras", "Karras"), ("exponential", "Exponential"),
    ("polyexponential", "Polyexponential"), ("sgm_uniform", "SGM Uniform"), ("kl_optimal", "KL Optimal"),
    ("align_your_steps", "Align Your Steps"), ("simple", "Simple"), ("normal", "Normal"), ("ddim", "DDIM"),
    ("beta", "Beta"))]
schedulers_map = {**{x.name: x for x in schedulers}, **{x.label: x for x in schedulers}}
