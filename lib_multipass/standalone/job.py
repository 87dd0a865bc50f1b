"""One CLI job from its arguments to its files: plan before any model loads, an output folder
that holds only this job's files, each image written as soon as it exists. Shared by the
`run` command and the demo."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from ..errors import MultipassError
from ..finish import check_standalone
from ..infotext import generation_params, infotext
from ..masks.masking import gray_image
from ..options import MultipassOptions
from ..plan import Generation, Plan, make_plan, size_for
from ..prompt import Job, parse
from ..prompt_weights import parse_weights
from ..samplers import canonical_sampler
from .flags import add_option_flags, flag_values
from .request import apply_request

EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
DEFAULTS = {"negative": "", "seed": 0, "steps": 20, "cfg": 7.0, "sampler": "dpm++2m_karras", "num_images": 1}
MAX_IMAGES = 8
log = logging.getLogger(__name__)


def add_job_arguments(parser: argparse.ArgumentParser) -> None:
    """The prompt, the generation settings and every option flag (`run`, and the demo)."""
    parser.add_argument("--prompt", help="the multipass prompt (BREAK between segments)")
    parser.add_argument("--negative", help="the negative prompt")
    parser.add_argument("--seed", type=int, help=f"default {DEFAULTS['seed']}")
    parser.add_argument("--steps", type=int, help=f"default {DEFAULTS['steps']}")
    parser.add_argument("--cfg", type=float, help=f"default {DEFAULTS['cfg']}")
    parser.add_argument("--width", type=int, help="with --height; default: --ar at the model's native size")
    parser.add_argument("--height", type=int)
    parser.add_argument("--ar", help="aspect ratio when no --width/--height: 1:1 (default), portrait, landscape, 16:9, "
                        "9:16, 21:9, 3:2, 4:5, ... at the model's native area")
    parser.add_argument("--num-images", type=int, help="1 to 8 images, each with its own seed (seed, seed+1, ...); "
                        "more than one: a folder each, image_1/ ...")
    parser.add_argument("--sampler", help=f"default {DEFAULTS['sampler']}")
    parser.add_argument("--request", type=Path, help="an Astria-style prompt request (JSON); the flags given win")
    parser.add_argument("--options", default="{}", help='options as a JSON object, e.g. \'{"denoising_strength": 0.6}\'')
    add_option_flags(parser)


def plan_from_args(args: argparse.Namespace, native: int = 512) -> tuple[Job, Plan]:
    """Parse and plan before any model is loaded: a malformed job fails here. `native`: the
    model's own side (512 until the checkpoint is loaded) for `--ar`."""
    try:
        values = json.loads(args.options)
    except json.JSONDecodeError as err:
        raise MultipassError(f"--options is not valid JSON ({err}); write a JSON object") from None
    if not isinstance(values, dict):
        raise MultipassError("--options must be a JSON object like {\"denoising_strength\": 0.6}")
    values.update(flag_values(args))  # a flag wins over --options, and both over --request
    apply_request(args, values)
    for name, default in DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    if args.prompt is None:
        raise MultipassError("give the prompt: --prompt TEXT, or a --request file with `text`")
    if not isinstance(args.num_images, int) or not 1 <= args.num_images <= MAX_IMAGES:
        raise MultipassError(f"--num-images must be from 1 to {MAX_IMAGES}, got {args.num_images!r}")
    job = parse(args.prompt, args.negative)
    options = MultipassOptions.from_dict(values)
    sampler = canonical_sampler(args.sampler)
    generation = Generation(args.seed, args.steps, args.cfg, *job_size(args, native), sampler)
    plan = make_plan(job, options, generation)
    check_standalone(plan.options)  # with the prompt's flags
    for p in plan.passes:  # the standalone engine's samplers and prompt weights, checked before any model loads
        canonical_sampler(p.sampler, "person_sampler" if p.kind == "person" else "sampler")
        if options.use_lpw:
            parse_weights(p.prompt), parse_weights(p.negative)
    return job, plan


def job_size(args: argparse.Namespace, native: int) -> tuple[int, int]:
    """--width and --height, or --ar (1:1 without it) at the model's native area."""
    if args.width is not None and args.height is not None:
        if args.ar:
            raise MultipassError("give --width and --height, or --ar, not both")
        return args.width, args.height
    if args.width is not None or args.height is not None:
        raise MultipassError("give both --width and --height (or neither, for --ar at the model's native size)")
    return size_for(args.ar or "1:1", native)


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
    """`--num-images` images, each its own job with its own seed (seed + k, as the WebUI's
    batch); more than one: each in its folder `image_k`."""
    count = args.num_images
    if count == 1:
        return run_one(args, plan, engine, model, args.out)
    for stale in args.out.glob("image_*"):  # from an earlier run with more images
        number = stale.name.removeprefix("image_")
        if stale.is_dir() and number.isdigit() and int(number) > count:
            prepare_out(stale)
            with contextlib.suppress(OSError):
                stale.rmdir()
    codes = []
    for k in range(count):
        one = make_plan(plan.job, plan.options, replace(plan.generation, seed=plan.generation.seed + k))
        log.info("image %d of %d, seed %d", k + 1, count, one.generation.seed)
        codes.append(run_one(args, one, engine, model, args.out / f"image_{k + 1}"))
        if codes[-1] == EXIT_INTERRUPTED:
            break
    return max(codes, key=lambda code: (code == EXIT_INTERRUPTED, code))


def run_one(args: argparse.Namespace, plan: Plan, engine: Any, model: str, out: Path) -> int:
    from ..runner import run

    params = generation_params(plan, model)
    outputs = Outputs(out, infotext(args.prompt, args.negative, params))
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
    log.info("wrote %s to %s", ", ".join(outputs.written) or "nothing", out)
    if result.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if result.error else 0
