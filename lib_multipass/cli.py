"""`python -m lib_multipass`: parse a prompt, run a job on a checkpoint, or run the offline demo.

Exit codes: 0 done, 1 a pass failed after the base image was saved, 2 bad input
(usage, prompt, options, missing files), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from .errors import MultipassError
from .mask_cli import add_parser as add_mask_parser
from .masking import gray_image
from .infotext import generation_params, infotext
from .options import MultipassOptions
from .plan import Generation, Plan, lora_json, make_plan
from .prompt import Job, parse
from .samplers import canonical_sampler

EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


def parse_json(job: Job, plan: Plan) -> dict[str, Any]:
    """The dry-run view of a prompt: segments, flags, LoRAs and the passes the model receives."""
    names = job.segment_names()
    by_role = dict(zip(names, job.segments))
    options = plan.options.to_dict()
    return {
        "segments": {
            "base": job.base.text,
            "common": job.common.text,
            "persons": [p.text for p in job.persons],
        },
        "flags": {name: options[name] for name in job.flags},
        "loras": [lora_json(lora, role) for role in names for lora in by_role[role].loras],
        "passes": [
            {"kind": p.kind, "index": p.index, "prompt": p.prompt, "negative": p.negative,
             "loras": [lora_json(lora) for lora in p.loras], "seed": p.seed, "denoise": p.denoise}
            for p in plan.passes
        ],
    }


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
    r.add_argument("--segmenter", default=None, help="CLIPSeg folder or hub id (default CIDAS/clipseg-rd64-refined), or 'selfie' for the offline person segmenter")
    r.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    _add_job_arguments(r)
    r.add_argument("--out", required=True, type=Path, help="output folder")

    add_mask_parser(commands)

    d = commands.add_parser("demo", help="run the README's first example offline on tiny random models")
    d.add_argument("--out", type=Path, default=Path("out/demo"))
    d.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "sd-webui-multipass" / "tiny-models")
    return parser


def _add_job_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--negative", default="")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--cfg", type=float, default=7.0)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--sampler", default="dpm++2m_karras")
    parser.add_argument("--mask-image", help="a mask PNG/JPEG used instead of segmentation")
    parser.add_argument("--init-image", help="a photo: the base image itself (prompt masking), or with --controlnet "
                        "the source of the hint and the img2img init of the base")
    parser.add_argument("--controlnet", help="ControlNet type: pose, canny, depth, lineart, tile, inpaint")
    parser.add_argument("--controlnet-model", help="ControlNet weights: .safetensors file, diffusers folder or hub id")
    parser.add_argument("--control-image", help="a ready hint image (else made from --init-image)")
    parser.add_argument("--controlnet-txt2img", action="store_true",
                        help="the base is txt2img guided by the hint (pose kept, looks free) instead of img2img")
    parser.add_argument("--inpaint-faces", action="store_true", help="one more low-denoise pass over each face")
    parser.add_argument("--face-swap", nargs="+", metavar="REF", help="swap faces to these reference photos/folders")
    parser.add_argument("--face-swap-model", help="inswapper_128.onnx (else models/insightface or ~/.insightface)")
    parser.add_argument("--face-recognition-model", help="w600k_r50.onnx of insightface's buffalo_l")
    parser.add_argument("--options", default="{}", help='options as a JSON object, e.g. \'{"denoising_strength": 0.6}\'')


def plan_from_args(args: argparse.Namespace) -> tuple[Job, Plan]:
    """Parse and plan before any model is loaded: a malformed job fails here."""
    job = parse(args.prompt, args.negative)
    try:
        values = json.loads(args.options)
    except json.JSONDecodeError as err:
        raise MultipassError(f"--options is not valid JSON ({err}); write a JSON object") from None
    if not isinstance(values, dict):
        raise MultipassError("--options must be a JSON object like {\"denoising_strength\": 0.6}")
    if args.mask_image:
        values["mask_image"] = args.mask_image
    for arg, option in (("init_image", "input_image"), ("controlnet", "controlnet"),
                        ("controlnet_model", "controlnet_model"), ("control_image", "controlnet_image")):
        if getattr(args, arg):
            values[option] = getattr(args, arg)
    if args.controlnet_txt2img:
        values["controlnet_txt2img"] = True
    if args.inpaint_faces:
        values["inpaint_faces"] = True
    if args.face_swap:
        values.update(face_swap=True, face_swap_images=list(args.face_swap))
    for arg in ("face_swap_model", "face_recognition_model"):
        if getattr(args, arg):
            values[arg] = getattr(args, arg)
    options = MultipassOptions.from_dict(values)
    sampler = canonical_sampler(args.sampler)
    generation = Generation(args.seed, args.steps, args.cfg, args.width, args.height, sampler)
    plan = make_plan(job, options, generation)
    for p in plan.passes:  # the standalone engine's samplers, checked before any model loads
        canonical_sampler(p.sampler, "person_sampler" if p.kind == "person" else "sampler")
    return job, plan


#: the files a job writes (and so the only ones it clears from a reused output folder)
OWNED = ("base.png", "mask.png", "final.png", "overview.png", "plan.json", "infotext.txt", "person_*.png",
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
    from .runner import run

    params = generation_params(plan, model)
    outputs = Outputs(args.out, infotext(args.prompt, args.negative, params))
    previous = signal.signal(signal.SIGINT, lambda *_: engine.interrupt())
    try:
        result = run(plan, engine, on_image=outputs.image, on_progress=lambda m: print(m, file=sys.stderr))
    finally:
        signal.signal(signal.SIGINT, previous)
    extra = {"Multipass warnings": "; ".join(result.warnings) or None,
             "Multipass interrupted": result.interrupted_pass}
    outputs.text = infotext(args.prompt, args.negative, params | {k: v for k, v in extra.items() if v})
    if result.partial is not None:  # kept for a look, under a name that says what it is
        outputs.image(f"{result.interrupted_pass}-interrupted", result.partial)
    outputs.finish(plan, result)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"wrote {', '.join(outputs.written) or 'nothing'} to {args.out}", file=sys.stderr)
    if result.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if result.error else 0


def command_run(args: argparse.Namespace) -> int:
    _, plan = plan_from_args(args)
    from .engines.diffusers import HUB_ID, DiffusersEngine, default_device, load_pipeline
    from .lora_files import find_loras
    from .segmenters import make_segmenter
    from .runner import all_lora_names

    # everything that can fail does so before the checkpoint loads: LoRA files, output folder,
    # segmenter weights and what the mask prompt asks of it
    find_loras(args.lora_dir, all_lora_names(plan))
    model = plan.options.controlnet_model
    if plan.options.controlnet and model and not Path(model).exists() and not HUB_ID.fullmatch(model):
        raise MultipassError(f"--controlnet-model {model!r}: no such file or folder (nor a hub id like "
                             "lllyasviel/control_v11p_sd15_openpose)")
    prepare_out(args.out)
    device = args.device or default_device()
    segmenter = make_segmenter(args.segmenter, device=device)
    if plan.persons and not plan.options.mask_image:
        segmenter.prepare(plan.options.mask_prompt + plan.options.mask_negative)
    print(f"loading {args.checkpoint}", file=sys.stderr)
    pipe = load_pipeline(args.checkpoint, args.config, device)
    engine = DiffusersEngine(pipe, args.lora_dir, segmenter)
    return run_job(args, plan, engine, Path(args.checkpoint).stem)


def _quiet_libraries() -> None:
    """Our own progress lines replace the libraries' bars and notices."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command != "parse":
        _quiet_libraries()
        logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")
    try:
        if args.command == "parse":
            job = parse(args.prompt, args.negative)
            plan = make_plan(job, MultipassOptions(), Generation())
            data = parse_json(job, plan)
            print(json.dumps(data, indent=None if args.json else 2, ensure_ascii=False))
            return 0
        if args.command == "run":
            return command_run(args)
        if args.command == "mask":
            from .mask_cli import command_mask

            command_mask(args)
            return 0
        from .demo import run_demo

        return run_demo(args.out, args.cache)
    except MultipassError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
