"""Soak: many consecutive jobs in one process on the tiny models, with varied prompts, LoRAs,
masks, interrupts and failures. Prints the resident memory every 50 jobs, the adapters and
pipelines the engine holds, and whether the last job equals the first. Not a test.

    .venv/bin/python bench/bench_soak.py [--jobs 200]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from lib_multipass.engines.diffusers import DiffusersEngine, load_pipeline  # noqa: E402
from lib_multipass.masks.segmenters import ClipSegSegmenter  # noqa: E402
from lib_multipass.options import MultipassOptions  # noqa: E402
from lib_multipass.plan import Generation, make_plan  # noqa: E402
from lib_multipass.prompt import parse  # noqa: E402
from lib_multipass.runner import run  # noqa: E402
from lib_multipass.tiny_models import LORA_NAME, build_tiny_models, write_lora  # noqa: E402

PROMPTS = [
    f"a forest BREAK photo BREAK ohwx man <lora:{LORA_NAME}:1> --mask_threshold 0.3",
    "a beach BREAK sks woman <lora:second:0.7> --mask_threshold 0.3 --mask_dilate 8",
    f"a street BREAK photo BREAK man <lora:{LORA_NAME}:0.5> BREAK woman <lora:second:1> --mask_threshold 0.3",
    "an empty room BREAK nobody --mask_prompt nothing_here",  # no subject: a skipped pass
    f"a field BREAK man <lora:{LORA_NAME}:1> --mask_threshold 0.3 --denoising_strength 0",
]


def rss_mb() -> float:
    """Resident memory now (Linux /proc), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one_job(engine: DiffusersEngine, index: int):
    prompt = PROMPTS[index % len(PROMPTS)]
    plan = make_plan(parse(prompt), MultipassOptions(), Generation(seed=index % 7, steps=4, width=64, height=64,
                                                                    sampler="euler"))
    return run(plan, engine)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    args = parser.parse_args()
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()
    with tempfile.TemporaryDirectory() as folder:
        models = build_tiny_models(Path(folder) / "tiny")
        pipe = load_pipeline(str(models.checkpoint), device="cpu")
        write_lora(models.lora_dir / "second.safetensors", pipe, 99)
        engine = DiffusersEngine(pipe, models.lora_dir, ClipSegSegmenter(str(models.segmenter)))
        first = one_job(engine, 0).final
        started = time.perf_counter()
        rows = [(0, rss_mb())]
        outcomes: dict[str, int] = {}
        for index in range(1, args.jobs):
            result = one_job(engine, index)
            kind = "warning" if result.warnings else "clean"
            outcomes[kind] = outcomes.get(kind, 0) + 1
            if (index + 1) % 50 == 0:
                rows.append((index + 1, rss_mb()))
        elapsed = time.perf_counter() - started
        other_seed = one_job(engine, len(PROMPTS)).final  # the first job's prompt with another seed
        same = one_job(engine, 0).final
        print(f"{args.jobs} jobs in {elapsed:.1f} s ({elapsed / args.jobs * 1000:.0f} ms a job); outcomes {outcomes}")
        for jobs, rss in rows:
            print(f"after {jobs:4d} jobs: RSS {rss:7.1f} MB")
        print(f"RSS growth from job 50 to job {rows[-1][0]}: {rows[-1][1] - rows[1][1]:+.1f} MB"
              if len(rows) > 2 else "")
        print(f"adapters loaded: {sorted(engine.adapters)} (peft: {sorted(pipe.unet.peft_config)})")
        print(f"pipelines held: {len(engine._pipes)}")
        print(f"job {args.jobs} equals job 1: {np.array_equal(np.asarray(first), np.asarray(same))}"
              f" (the same prompt with another seed differs: "
              f"{not np.array_equal(np.asarray(first), np.asarray(other_seed))})")


if __name__ == "__main__":
    main()
