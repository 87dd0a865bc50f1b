"""One CLI job from its arguments to its files: plan before any model loads, an output folder
that holds only this job's files, each image written as soon as it exists. Shared by the
`run` command and the demo."""

from __future__ import annotations

import argparse
import json
import logging
import signal
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from ..errors import MultipassError
from ..infotext import generation_params, infotext
from ..masks.masking import gray_image
from ..options import MultipassOptions
from ..plan import Generation, Plan, make_plan
from ..prompt import Job, parse
from ..prompt_weights import parse_weights
from ..samplers import canonical_sampler
from .flags import add_option_flags, flag_values

EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
log = logging.getLogger(__name__)


def add_job_arguments(parser: argparse.ArgumentParser) -> None:
    """The prompt, the generation settings and every option flag (`run`, and the demo)."""
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--negative", default="")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--cfg", type=float, default=7.0)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--sampler", default="dpm++2m_karras")
    parser.add_argument("--options", default="{}", help='options as a JSON object, e.g. \'{"denoising_strength": 0.6}\'')
    add_option_flags(parser)


def plan_from_args(args: argparse.Namespace) -> tuple[Job, Plan]:
    """Parse and plan before any model is loaded: a malformed job fails here."""
    job = parse(args.prompt, args.negative)
    try:
        values = json.loads(args.options)
    except json.JSONDecodeError as err:
        raise MultipassError(f"--options is not valid JSON ({err}); write a JSON object") from None
    if not isinstance(values, dict):
        raise MultipassError("--options must be a JSON object like {\"denoising_strength\": 0.6}")
    values.update(flag_values(args))  # a flag wins over --options
    options = MultipassOptions.from_dict(values)
    sampler = canonical_sampler(args.sampler)
    generation = Generation(args.seed, args.steps, args.cfg, args.width, args.height, sampler)
    plan = make_plan(job, options, generation)
    for p in plan.passes:  # the standalone engine's samplers and prompt weights, checked before any model loads
        canonical_sampler(p.sampler, "person_sampler" if p.kind == "person" else "sampler")
        if options.use_lpw:
            parse_weights(p.prompt), parse_weights(p.negative)
    return job, plan


#: the files a job writes (and so the only ones it clears from a reused output folder)
OWNED = ("base.png", "mask.png", "final.png", "finished.png", "overview.png", "plan.json", "infotext.txt", "person_*.png",
         "faces_*.png", "*-interrupted.png")


def prepare_out(folder: Path) -> None:
    """A writable output folder, cleared of the files an earlier job wrote there (nothing else):
    checked before any model loads, so a bad --out never costs a pass."""
    if folder.exists() and not folder.is_dir():
        raise MultipassError(f"--out {str(folder)!r} is a file; give a folder (it is made when missing)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".multipass-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise MultipassError(f"--out {str(folder)!r} is not writable ({err.strerror or err}); give another folder") from None
    for pattern in OWNED:
        for old in folder.glob(pattern):
            if old.is_file():
                old.unlink()


class Outputs:
    """Writes each image as soon as it exists, so nothing made is lost on a later failure."""

    def __init__(self, folder: Path, text: str):
        self.folder = folder
        self.text = text
        self.written: list[str] = []
        prepare_out(folder)

    def write(self, name: str, save: Any) -> None:
        save(self.folder / name)
        if name not in self.written:
            self.written.append(name)

    def image(self, name: str, image: Image.Image) -> None:
        info = PngInfo()
        info.add_text("parameters", self.text)
        self.write(f"{name}.png", lambda path: image.save(path, pnginfo=info))

    def finish(self, plan: Plan, result: Any) -> None:
        """mask.png (the union of the paste alphas), final.png, plan.json, infotext.txt."""
        if plan.persons and "base" in result.images:
            alpha = np.zeros(result.images["base"].size[::-1], np.float32)
            for a in result.alphas.values():
                alpha = np.maximum(alpha, a)
            self.write("mask.png", gray_image(alpha).save)
        if result.final is not None:
            self.image("final", result.final)
        report = plan.to_json() | {"warnings": result.warnings, "error": result.error,
                                   "interrupted": result.interrupted_pass or result.interrupted}
        self.write("plan.json", lambda path: path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8"))
        self.write("infotext.txt", lambda path: path.write_text(self.text + "\n", encoding="utf-8"))


def run_job(args: argparse.Namespace, plan: Plan, engine: Any, model: str) -> int:
    from ..runner import run

    params = generation_params(plan, model)
    outputs = Outputs(args.out, infotext(args.prompt, args.negative, params))
    previous = signal.signal(signal.SIGINT, lambda *_: engine.interrupt())
    try:
        result = run(plan, engine, on_image=outputs.image)
    finally:
        signal.signal(signal.SIGINT, previous)
    extra = {"Multipass warnings": "; ".join(result.warnings) or None,
             "Multipass interrupted": result.interrupted_pass}
    outputs.text = infotext(args.prompt, args.negative, params | {k: v for k, v in extra.items() if v})
    if result.partial is not None:  # kept for a look, under a name that says what it is
        outputs.image(f"{result.interrupted_pass}-interrupted", result.partial)
    outputs.finish(plan, result)
    for warning in result.warnings:
        log.warning("%s", warning)
    log.info("wrote %s to %s", ", ".join(outputs.written) or "nothing", args.out)
    if result.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if result.error else 0
