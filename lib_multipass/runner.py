"""Execute a plan against an Engine: base pass, masks, person passes.

Nothing already generated is lost: a failure or interrupt after the base pass ends the
job with what was made so far, the error recorded in the result.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
from PIL import Image

from . import finish
from .engines.base import ControlInput, Engine, GenerateRequest, InpaintRequest
from .errors import MultipassError, PassInterrupted
from .face_passes import run_faces
from .faces.swap import load_references
from .images import open_image
from .masks import masking
from .masks.colour import seam_width
from .masks.crop import mask_box
from .options import LANCZOS
from .plan import ControlSpec, MaskSpec, Pass, Plan, scaled

log = logging.getLogger(__name__)

ImageCallback = Callable[[str, Image.Image], None]


@dataclass
class RunResult:
    """What a job made: images by pass name ("base", "person_1", ...) and paste alphas."""

    plan: Plan
    images: dict[str, Image.Image] = field(default_factory=dict)
    alphas: dict[str, np.ndarray] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    interrupted: bool = False
    interrupted_pass: str | None = None  # the pass that was stopped midway (and discarded)
    partial: Image.Image | None = None  # what that pass had made when it stopped (never the final)

    @property
    def final(self) -> Image.Image | None:
        """The last image made (the base image when no person pass ran)."""
        return list(self.images.values())[-1] if self.images else None


def all_lora_names(plan: Plan) -> list[str]:
    return sorted({lora.name for p in plan.passes for lora in p.loras})


def run(
    plan: Plan,
    engine: Engine,
    on_image: ImageCallback | None = None,
    base: Image.Image | None = None,
    finishing: bool = True,
) -> RunResult:
    """Run every pass of `plan`; `base`: a base image the host made already (the WebUI).
    `finishing`: grade and grain the result here (a host with its own last steps, like the
    WebUI's face restoration, does it after them: `finish.finish_image`).

    Input errors found up front raise before anything runs.
    """
    result = _passes(plan, engine, on_image, base)
    if not finishing or result.final is None or result.interrupted or result.error:
        return result

    def keep(name: str, image: Image.Image) -> None:
        result.images[name] = image
        if on_image:
            on_image(name, image)

    try:  # the last steps, each on the image before it: face restoration, then finishing
        if plan.options.face_correct:
            keep("restored", _face_correct(plan, engine, result.final, result.warnings))
        if finish.wanted(plan.options):
            keep("finished", finish.finish_image(result.final, plan.options, plan.generation.seed, engine))
    except Exception as err:  # noqa: BLE001 - every image made before stays
        if not isinstance(err, MultipassError):
            log.exception("multipass: a finishing step failed")
        result.error = str(err) if isinstance(err, MultipassError) else f"{err.__class__.__name__}: {err}"
        result.warnings.append(f"{result.error}; the images made before it are kept")
    return result


def _face_correct(plan: Plan, engine: Engine, image: Image.Image, warnings: list[str]) -> Image.Image:
    """The standalone face restoration (the WebUI restores faces itself): GFPGAN on every face."""
    from .faces.restore import restore_faces
    from .image_models import FACE_RESTORERS, load_image_model

    source = plan.options.face_correct_model or finish.FACE_RESTORER
    model = engine.models.get(("face restorer", source), lambda: load_image_model(source, FACE_RESTORERS))
    restored, count = restore_faces(image, engine.detect_faces(image), model, plan.options.face_min_size)
    log.info(f"face correct: {count} face(s) restored")
    if not count:
        warnings.append("face_correct: no face found to restore")
    return restored


def _passes(plan: Plan, engine: Engine, on_image: ImageCallback | None, base: Image.Image | None) -> RunResult:
    """The base pass, the person passes and the face passes."""
    engine.check_loras(all_lora_names(plan))
    options = plan.options
    if options.color_grading:
        finish.grading_lut(options.color_grading)  # an unreadable .cube fails here, before any pass
    input_image = open_image(options.input_image, "input image").convert("RGB") if options.input_image else None
    hint_file = open_image(options.controlnet_image, "control image") if options.controlnet_image else None
    if options.face_swap:
        load_references(options.face_swap_images, engine.models)  # unreadable or missing reference photos fail here
    hints = Hints(engine, input_image, hint_file)
    base_image = base if base is not None else input_image if plan.base.kind == "input" else None
    size = base_image.size if base_image is not None else (plan.generation.width, plan.generation.height)
    user_mask = masking.load_mask_image(options.mask_image, size) if options.mask_image and plan.persons else None
    base_control = hints.control(plan.base.control, size)  # a hint that cannot be made fails here, before any pass
    result = RunResult(plan)
    if user_mask:
        result.warnings.extend(user_mask[1])

    def keep(name: str, image: Image.Image) -> None:
        result.images[name] = image
        if on_image:
            on_image(name, image)

    total = len(plan.passes)
    if engine.interrupted():
        result.interrupted = True
        return result
    if base_image is not None:
        log.info(f"[1/{total}] base: given image ({base_image.width}x{base_image.height})")
        keep("base", base_image)
    else:
        log.info(f"[1/{total}] {plan.base.kind} pass: {_describe(plan.base)}")
        started = time.perf_counter()
        request = GenerateRequest.from_pass(plan.base, base_control)
        try:
            if plan.base.kind == "img2img" and input_image is not None:  # planned only with an input image
                keep("base", engine.img2img(request, input_image, plan.base.denoise))
            else:
                keep("base", engine.txt2img(request))
        except PassInterrupted as err:
            _stopped(result, err.named("base"))
            return result
        log.info(f"[1/{total}] base pass done in {time.perf_counter() - started:.1f}s")
    if len(plan.passes) == 1:
        return result
    try:
        masks = _run_persons(plan, engine, result, keep, user_mask[0] if user_mask else None, hints)

        def keep_face(name: str, image: Image.Image, alpha: np.ndarray | None) -> None:
            if alpha is not None:
                result.alphas[name] = alpha
            keep(name, image)

        if not result.interrupted and result.final is not None:
            run_faces(plan, engine, result.final, masks, keep_face, result.warnings)
        if plan.harmonize is not None and not result.interrupted and result.final is not None:
            if engine.interrupted():
                result.interrupted = True
                result.warnings.append("interrupted before the harmonizing pass; the images made so far are kept")
            else:
                _harmonize(plan, plan.harmonize, engine, result.final, keep)
    except PassInterrupted as err:
        _stopped(result, err)
    except MultipassError as err:
        result.error = str(err)
    except Exception as err:  # noqa: BLE001 - the base image must survive any later failure
        log.exception("multipass: person pass failed")
        result.error = f"{err.__class__.__name__}: {err}"
    if result.error:
        result.warnings.append(f"{result.error}; the images made before it are kept")
    return result


def _run_persons(
    plan: Plan, engine: Engine, result: RunResult, keep: ImageCallback,
    user_mask: np.ndarray | None, hints: Hints,
) -> list[np.ndarray | None]:
    """The person passes; returns each person's mask (None where skipped), for the faces."""
    base_image = result.images["base"]
    hints.base_image = base_image
    if not plan.persons:
        return []
    masks = _person_masks(plan, engine, base_image, result.warnings, user_mask)
    empty = [p.name for p, segment in zip(plan.persons, plan.job.persons) if not segment.text and not segment.loras]
    if empty and len(plan.job.segments) > 1:
        result.warnings.append(f"empty person prompt ({', '.join(empty)}): in-painted with the common prompt only")
    current = base_image
    total = len(plan.passes)
    for step, p in enumerate(plan.persons, start=2):
        if engine.interrupted():
            result.interrupted = True
            result.warnings.append(f"interrupted before {p.name}; the images made so far are kept")
            return []
        pass_mask = masks[p.index - 1]
        if pass_mask is None:
            continue
        if p.denoise == 0:
            result.warnings.append(f"{p.name} skipped: denoise 0 keeps the image as it is")
            continue
        result.alphas[p.name] = pass_mask.alpha
        log.info(f"[{step}/{total}] {p.name} pass: {_describe(p)}, mask {masking.area(pass_mask.mask):.1%}")
        started = time.perf_counter()
        request = InpaintRequest(
            GenerateRequest.from_pass(p, hints.control(p.control, current.size)), current, pass_mask.mask,
            pass_mask.alpha, p.denoise, p.padding,
            mask_of(p).blur, seam_width(plan.options.color_match, mask_of(p).blur),
        )
        try:
            current = engine.inpaint(request)
        except PassInterrupted as err:
            raise err.named(p.name) from None
        keep(p.name, current)
        log.info(f"[{step}/{total}] {p.name} pass done in {time.perf_counter() - started:.1f}s")
    return [m.mask if m is not None else None for m in masks]


def _harmonize(plan: Plan, p: Pass, engine: Engine, image: Image.Image, keep: ImageCallback) -> None:
    """One low-denoise img2img of the whole composite (upscaled first when `hires_scale` > 1)
    that blends the subjects' light and edges into the scene."""
    width, height = scaled(image.size, plan.options.hires_scale)  # the host's base may be larger than planned
    p = replace(p, width=width, height=height)
    log.info(f"[{len(plan.passes)}/{len(plan.passes)}] harmonize pass: {_describe(p)}")
    started = time.perf_counter()
    request = GenerateRequest.from_pass(p)
    try:
        keep(p.name, engine.img2img(request, image, p.denoise, plan.options.hires_upscaler or LANCZOS))
    except PassInterrupted as err:
        raise err.named(p.name) from None
    log.info(f"[{len(plan.passes)}/{len(plan.passes)}] harmonize pass done in {time.perf_counter() - started:.1f}s")


class Hints:
    """ControlNet hint images by source, each made once: from the input image, a ready hint
    file, or the base image (known after the base pass)."""

    def __init__(self, engine: Engine, input_image: Image.Image | None, hint_file: Image.Image | None):
        self.engine = engine
        self.input_image = input_image
        self.hint_file = hint_file.convert("RGB") if hint_file is not None else None
        self.base_image: Image.Image | None = None
        self._made: dict[tuple[str, str], tuple[Image.Image, bool]] = {}

    def control(self, spec: ControlSpec | None, size: tuple[int, int]) -> ControlInput | None:
        """The unit of `spec` with its hint at `size` (the image it guides)."""
        if spec is None:
            return None
        key = (spec.source, spec.kind)
        if key not in self._made:
            source = {"hint": self.hint_file, "input": self.input_image}.get(spec.source, self.base_image)
            if source is None:
                raise MultipassError(f"the ControlNet {spec.kind} unit has no {spec.source} image to guide it")
            self._made[key] = (source, True) if spec.source == "hint" else self.engine.hint(spec.kind, source)
        hint, ready = self._made[key]
        if hint.size != size:
            hint = hint.resize(size, Image.Resampling.BILINEAR)
        return ControlInput(hint, spec.kind, spec.model, spec.scale, spec.start, spec.end, ready)


def _stopped(result: RunResult, stop: PassInterrupted) -> None:
    """Interrupt / Skip during a pass: its half-made image is not part of the result."""
    result.interrupted = True
    result.interrupted_pass = stop.name
    result.partial = stop.partial if isinstance(stop.partial, Image.Image) else None
    kept = "the last complete image is the final" if result.images else "nothing was finished"
    result.warnings.append(f"interrupted during {stop.name}: that pass is discarded; {kept}")


def mask_of(p: Pass) -> MaskSpec:
    """The mask settings of a person pass (the plan gives every person pass one)."""
    if p.mask is None:
        raise MultipassError(f"{p.name} has no mask settings")
    return p.mask


def _person_masks(
    plan: Plan, engine: Engine, image: Image.Image, warnings: list[str], user_mask: np.ndarray | None
) -> list[masking.PassMask | None]:
    """One mask per person pass, from the base image; None (with a warning) for a skipped pass."""
    spec = mask_of(plan.persons[0])
    if user_mask is not None:
        subjects = user_mask
        instances = masking.split_instances(subjects) if len(plan.persons) > 1 else None
        described = f"mask image {spec.image!r}"
    else:
        found = masking.find_subjects(engine.segment, image, spec, engine.detect_faces, engine.refine_masks,
                                      engine.body_finder(), engine.subject_detector(), plan.options.mask_person_check)
        subjects, instances = found.mask, found.instances
        described = f"mask prompt {' | '.join(spec.prompt)!r}"
        warnings.extend(f"mask: {note}" for note in found.notes)
    if instances is not None and len(plan.persons) > 1 and len(instances) > len(plan.persons):
        warnings.append(f"{described} found {len(instances)} subjects ({where(instances)}) for "
                        f"{len(plan.persons)} person prompts: they go to the first {len(plan.persons)} from the left; "
                        "the others stay as the base pass made them")
    out: list[masking.PassMask | None] = []
    for p in plan.persons:
        own = mask_of(p)
        mask = masking.pass_mask(subjects, own, instances)
        if mask is None:
            warnings.append(
                f"{p.name} skipped: {described} found {len(instances or ())} subject(s)"
                f"{f' ({where(instances)})' if instances else ''} for {len(plan.persons)} person prompts; "
                "person prompts take the subjects from the left"
            )
        elif masking.area(mask) < own.min_area:
            warnings.append(
                f"{p.name} skipped: {described} covers {masking.area(mask):.2%} of the image, less than "
                f"the minimum {own.min_area:.2%}; try another mask prompt, a lower mask threshold or a mask image"
            )
            mask = None
        out.append(None if mask is None else masking.finish(mask, own))
    return out


def where(instances: list[np.ndarray]) -> str:
    """Where each subject is, for a warning: 'x 10-200, x 250-400'."""
    boxes = [mask_box(instance) for instance in instances]
    return ", ".join(f"x {box[0]}-{box[2]}" for box in boxes if box is not None)


def _describe(p: Pass) -> str:
    loras = ", ".join(f"{lora.name}:{lora.weight:g}" for lora in p.loras) or "no LoRA"
    strength = "" if p.kind == "base" else f", denoise {p.denoise:g}"
    return f"{p.width}x{p.height}, {p.steps} steps, {p.sampler}, seed {p.seed}{strength}, {loras}"
