"""`python -m lib_multipass`: parse a prompt, run a job on a checkpoint, or run the offline demo.

Exit codes: 0 done, 1 a pass failed after the base image was saved, 2 bad input
(usage, prompt, options, missing files), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from ..errors import MultipassError
from ..masks.detector import DETECTOR_HELP
from ..masks.refine import REFINER_HELP
from ..options import MultipassOptions
from ..plan import Generation, dry_run_view, make_plan
from ..prompt import parse
from .job import EXIT_USAGE, add_job_arguments, plan_from_args, prepare_out, run_job
from .mask import add_parser as add_mask_parser

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lib_multipass", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("parse", help="show how a prompt is split into passes (no model needed)")
    p.add_argument("prompt")
    p.add_argument("--negative", default="")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    r = commands.add_parser("run", help="run a multipass job on a checkpoint")
    r.add_argument("--checkpoint", required=True, help=".safetensors file (WebUI layout), diffusers folder or hub id")
    r.add_argument("--config", help="diffusers folder or hub id with the configs of a single-file checkpoint")
    r.add_argument("--lora-dir", help="folder of LoRA .safetensors files, looked up by name")
    r.add_argument("--segmenter", default=None, help="CLIPSeg folder or hub id (default CIDAS/clipseg-rd64-refined), "
                   "or 'selfie' for the offline person segmenter")
    r.add_argument("--refiner", default=None, help=REFINER_HELP)
    r.add_argument("--detector", default=None, help=DETECTOR_HELP)
    r.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    r.add_argument("--fast", action="store_true", help="CUDA: compiled UNet (CUDA graphs) and VAE, channels-last; "
                   "the first pass of each size compiles (about two minutes), LoRA switching never does")
    add_job_arguments(r)
    r.add_argument("--out", required=True, type=Path, help="output folder")

    add_mask_parser(commands)

    o = commands.add_parser("options", help="every option: value, default, where to set it (README's table)")
    o.add_argument("--json", action="store_true", help="a JSON schema of the options dict instead")

    d = commands.add_parser("demo", help="run the README's first example offline on tiny random models")
    d.add_argument("--out", type=Path, default=Path("out/demo"))
    d.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "sd-webui-multipass" / "tiny-models")
    return parser


def command_run(args: argparse.Namespace) -> int:
    sized = args.width is not None and args.height is not None
    _, plan = plan_from_args(args)
    from ..engines.diffusers import DiffusersEngine, default_device, load_pipeline, native_side
    from ..lora_files import find_loras
    from ..masks.detector_choice import make_detector
    from ..masks.refine import make_refiner
    from ..masks.segmenters import make_segmenter
    from ..model_cache import HUB_ID
    from ..runner import all_lora_names

    # everything that can fail does so before the checkpoint loads: LoRA files, output folder,
    # segmenter weights and what the mask prompt asks of it
    find_loras(args.lora_dir, all_lora_names(plan))
    model = plan.options.controlnet_model
    if plan.options.controlnet and model and not Path(model).exists() and not HUB_ID.fullmatch(model):
        raise MultipassError(f"--controlnet-model {model!r}: no such file or folder (nor a hub id like "
                             "lllyasviel/control_v11p_sd15_openpose)")
    device = args.device or default_device()
    if args.fast and not device.startswith("cuda"):
        raise MultipassError("--fast needs a CUDA device (compiling on the CPU takes longer than it saves)")
    prepare_out(args.out)
    segmenter = make_segmenter(args.segmenter, device=device)
    detector = make_detector(args.detector, device)
    if plan.persons and not plan.options.mask_image:
        segmenter.prepare(plan.options.mask_prompt + plan.options.mask_negative)
        if detector is not None:
            detector.load()
    log.info("loading %s", args.checkpoint)
    pipe = load_pipeline(args.checkpoint, args.config, device)
    engine = DiffusersEngine(pipe, args.lora_dir, segmenter, refiner=make_refiner(args.refiner, device),
                             detector=detector)
    engine.weighted_prompts = plan.options.use_lpw
    native = native_side(pipe)
    if native != 512 and not sized:  # the size comes from --ar, at the model's own area
        _, plan = plan_from_args(args, native)
    if args.fast:
        engine.enable_fast_path()
    return run_job(args, plan, engine, Path(args.checkpoint).stem)


def _quiet_libraries() -> None:
    """Our own progress lines replace the libraries' bars and notices."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()


class _Plain(logging.Formatter):
    """Progress as it is; warnings and errors say what they are."""

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"{record.levelname.lower()}: " if record.levelno >= logging.WARNING else ""
        return prefix + record.getMessage()


def log_to_stderr() -> None:
    """The one path of progress, warnings and errors: the `lib_multipass` loggers, to stderr
    (inside the WebUI the same records reach its console, warnings and up)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Plain())
    ours = logging.getLogger("lib_multipass")
    ours.handlers[:] = [handler]
    ours.setLevel(logging.INFO)
    ours.propagate = False
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")  # the libraries' own


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in ("run", "mask", "demo"):  # the commands that load models
        _quiet_libraries()
    log_to_stderr()
    try:
        if args.command == "parse":
            job = parse(args.prompt, args.negative)
            plan = make_plan(job, MultipassOptions(), Generation())
            data = dry_run_view(job, plan)
            print(json.dumps(data, indent=None if args.json else 2, ensure_ascii=False))
            return 0
        if args.command == "run":
            return command_run(args)
        if args.command == "options":
            from ..option_docs import json_schema, markdown_table

            print(json.dumps(json_schema(), indent=2) if args.json else markdown_table(), end="\n" if args.json else "")
            return 0
        if args.command == "mask":
            from .mask import command_mask

            command_mask(args)
            return 0
        from .demo import run_demo

        return run_demo(args.out, args.cache)
    except MultipassError as err:
        log.error("%s", err)
        return EXIT_USAGE
