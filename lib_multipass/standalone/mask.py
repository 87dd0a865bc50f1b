"""`python -m lib_multipass mask IMAGE --prompt TEXT [flags] --out DIR`: tune mask flags alone.

Writes the raw probability map, the final mask (the paste alpha) and an overlay, and
prints the mask's area and the subjects' boxes as JSON.
"""

from __future__ import annotations

import argparse
import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import MultipassError
from ..faces.detect import Face
from ..images import open_image
from ..masks import masking
from ..masks.crop import Box, mask_box
from ..masks.detector import DETECTOR_HELP, BoxDetector, boxes_of
from ..masks.refine import REFINER_HELP, SamRefiner
from ..masks.segmenters import probabilities_in
from ..options import MultipassOptions, option_specs
from ..plan import mask_spec
from .flags import add_option_flags, flag_values

MAX_PERSONS = 16
#: the mask options this command takes as flags (the mask prompt is --prompt; no mask image)
MASK_FLAGS = tuple(name for name in option_specs() if name.startswith("mask_") and name not in ("mask_prompt", "mask_image"))


def add_parser(commands) -> None:
    m = commands.add_parser("mask", help="segment one image with mask flags (no diffusion model needed)")
    m.add_argument("image", type=Path)
    m.add_argument("--prompt", required=True, help="what to mask, e.g. 'person' or 'red dress | hat'")
    m.add_argument("--persons", type=int, default=1, help="split into this many subjects, left to right")
    m.add_argument("--segmenter", default=None, help="CLIPSeg folder or hub id, or 'selfie' (offline, people only)")
    m.add_argument("--refiner", default=None, help=REFINER_HELP)
    m.add_argument("--detector", default=None, help=DETECTOR_HELP)
    m.add_argument("--out", type=Path, required=True)
    add_option_flags(m, MASK_FLAGS)


def segment_with(segmenter) -> masking.Segment:
    """A segmenter as the mask stage calls it: terms on a crop of the image."""
    return functools.partial(probabilities_in, segmenter)


def overlay(image: Image.Image, alpha: np.ndarray) -> Image.Image:
    """The image with the mask tinted red."""
    pixels = np.asarray(image.convert("RGB"), np.float32)
    a = 0.6 * alpha[..., None]
    return Image.fromarray(np.rint(pixels * (1 - a) + np.array([255.0, 0, 0]) * a).astype(np.uint8))


def compute_mask(image: Image.Image, options: MultipassOptions, segmenter, persons: int = 1,
                 detect_faces: Callable[[Image.Image, Box | None], list[Face]] | None = None,
                 refiner: SamRefiner | None = None,
                 find_body: Callable[[Image.Image, Box], Face | None] | None = None,
                 detector: BoxDetector | None = None):
    """(probability map, paste alpha, report) for one image: the mask stage alone, as a job
    with `persons` person prompts would have it."""
    spec = mask_spec(options, None)
    found = masking.find_subjects(segment_with(segmenter), image, spec, detect_faces,
                                  None if refiner is None else refiner.refine, find_body, boxes_of(detector),
                                  options.mask_person_check)
    prob, subjects, instances = found.prob, found.mask, found.instances
    specs = [spec] if persons <= 1 else [mask_spec(options, i) for i in range(persons)]
    alpha = np.zeros(prob.shape, np.float32)
    for one in specs:
        mask = masking.pass_mask(subjects, one, instances)
        if mask is not None:
            alpha = np.maximum(alpha, masking.feather(mask, one.blur))
    report: dict[str, Any] = {
        "size": list(image.size),
        "area": round(float((alpha > 0).mean()), 5),
        "instances": [{"box": list(mask_box(part) or ()), "area": round(masking.area(part), 5)} for part in instances],
        "options": {k: v for k, v in options.to_dict().items() if k.startswith("mask_")},
    }
    warnings = list(found.notes)
    if persons > 1 and len(instances) < persons:
        warnings.append(f"{len(instances)} subject(s) found for {persons} persons: the others would be skipped")
    if report["area"] < options.mask_min_area:
        warnings.append(
            f"the mask covers {report['area']:.2%} of the image, below mask_min_area {options.mask_min_area:.2%}: "
            "a person pass with it would be skipped"
        )
    if warnings:
        report["warning"] = "; ".join(warnings)
    return prob, alpha, report


def command_mask(args: argparse.Namespace) -> dict:
    from ..faces.detect import faces_in, make_face_detector
    from ..masks.bodies import make_body_finder
    from ..masks.detector_choice import make_detector
    from ..masks.refine import make_refiner
    from ..masks.segmenters import make_segmenter

    options = MultipassOptions.from_dict({"mask_prompt": args.prompt, **flag_values(args, MASK_FLAGS)})
    if not 1 <= args.persons <= MAX_PERSONS:
        raise MultipassError(f"--persons must be from 1 to {MAX_PERSONS}, got {args.persons}")
    image = open_image(args.image, "image").convert("RGB")
    segmenter = make_segmenter(args.segmenter)
    segmenter.prepare(options.mask_prompt + options.mask_negative)
    subject_detector = make_detector(args.detector)
    if subject_detector is not None:
        subject_detector.load()  # asked for by name: missing weights are an error, not a fallback
    faces, bodies = make_face_detector(), make_body_finder()
    prob, alpha, report = compute_mask(image, options, segmenter, args.persons,
                                       lambda image, box: faces_in(faces.detect, image, box),
                                       make_refiner(args.refiner),
                                       bodies.head if bodies is not None else None,
                                       subject_detector)
    args.out.mkdir(parents=True, exist_ok=True)
    masking.gray_image(prob).save(args.out / "prob.png")
    masking.gray_image(alpha).save(args.out / "mask.png")
    overlay(image, alpha).save(args.out / "overlay.png")
    print(json.dumps(report))
    return report
