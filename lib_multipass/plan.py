"""Plan a job: the ordered passes with their prompts, LoRAs, seeds, sizes and masks.

`make_plan` is pure: the same prompt, options and generation settings give the same
plan, so a dry run (`parse --json`, the UI preview) shows exactly what will run.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from .errors import OptionsError
from .options import Length, MultipassOptions, to_json
from .prompt import Job, LoraTag, Segment, join_prompt

PassKind = Literal["base", "img2img", "input", "person", "faces", "harmonize"]
HintSource = Literal["input", "hint", "base"]
MIN_SIDE, MAX_SIDE = 64, 4096  # px: beyond 4096 a pass needs tens of GB and hours, in any host


#: aspect ratios by name, as Astria's `ar` takes them; any "W:H" of whole numbers works too
ASPECT_NAMES = {"square": (1, 1), "portrait": (2, 3), "landscape": (3, 2)}


def size_for(ar: str, native: int = 512) -> tuple[int, int]:
    """(width, height) of the aspect ratio `ar` at the model's native area (`native` squared),
    in multiples of 8, or of 64 for models of 1024 px (SDXL's buckets)."""
    text = ar.strip().lower()
    match = re.fullmatch(r"(\d{1,3})\s*[:x/]\s*(\d{1,3})", text)
    ratio = ASPECT_NAMES.get(text) or ((int(match.group(1)), int(match.group(2))) if match else None)
    if ratio is None or 0 in ratio or not 1 / 4 <= ratio[0] / ratio[1] <= 4:
        raise OptionsError(f"`ar` {ar!r}: give W:H like 16:9, 9:16, 21:9, 3:2, 4:5 (from 1:4 to 4:1) or "
                           f"{', '.join(ASPECT_NAMES)}", "ar")
    step = 64 if native >= 1024 else 8
    width = math.sqrt(native * native * ratio[0] / ratio[1])
    return (max(MIN_SIDE, int(round(width / step)) * step),
            max(MIN_SIDE, int(round(native * native / width / step)) * step))


@dataclass(frozen=True)
class Generation:
    """The host's main settings for one image (the WebUI's `p`, or CLI arguments)."""

    seed: int = 0
    steps: int = 20
    cfg_scale: float = 7.0
    width: int = 512
    height: int = 512
    sampler: str = "dpm++2m_karras"  # a host's own name: engines check that they know it

    def __post_init__(self) -> None:
        for name in ("width", "height"):
            value = getattr(self, name)
            if not isinstance(value, int) or not MIN_SIDE <= value <= MAX_SIDE or value % 8:
                raise OptionsError(f"`{name}` must be a multiple of 8 from {MIN_SIDE} to {MAX_SIDE}, got {value!r}"
                                   " (larger images: generate smaller, then upscale)", name)
        if not 1 <= self.steps <= 1000:
            raise OptionsError(f"`steps` must be from 1 to 1000, got {self.steps!r}", "steps")
        if not 0 <= self.cfg_scale <= 100:
            raise OptionsError(f"`cfg_scale` must be from 0 to 100, got {self.cfg_scale!r}", "cfg_scale")
        if not 0 <= self.seed < 2**32:
            raise OptionsError(f"`seed` must be from 0 to 4294967295, got {self.seed!r}", "seed")
        if not self.sampler:
            raise OptionsError("`sampler` needs a name", "sampler")


@dataclass(frozen=True)
class MaskSpec:
    """How to find the mask of one person pass (DESIGN.md §4)."""

    prompt: tuple[str, ...]
    negative: tuple[str, ...]
    threshold: float
    dilate: Length
    blur: int
    invert: bool
    speck: float
    min_area: float
    instance: int | None  # 0-based subject, left to right; None: all subjects together
    image: str | None  # a user mask file instead of segmentation


@dataclass(frozen=True)
class ControlSpec:
    """A ControlNet unit of a pass; its hint comes from the input image, a ready hint file,
    or the base image (made after the base pass)."""

    kind: str
    model: str | None
    scale: float
    start: float
    end: float
    source: HintSource


@dataclass(frozen=True)
class FaceSpec:
    """Inpaint faces after a pass: the faces of its subject get one more low-denoise pass."""

    denoise: float
    crop_factor: float
    min_size: int
    max_faces: int
    inpaint: bool = True
    swap_images: tuple[str, ...] = ()  # this person's reference photos; () = no swap
    swap_model: str | None = None
    recognition_model: str | None = None
    swap_upscale: bool = False
    swap_first: bool = True


@dataclass(frozen=True)
class Pass:
    """One diffusion pass. `denoise` is 1.0 for the base (txt2img) pass."""

    kind: PassKind  # base (txt2img) | img2img (of the input image) | input (the user's image as is) | person | faces
    #                 | harmonize (img2img of the whole composite, upscaled first when larger)
    index: int  # 0 for the base pass, i for person pass i
    prompt: str
    negative: str
    loras: tuple[LoraTag, ...]
    seed: int
    width: int
    height: int
    steps: int
    cfg_scale: float
    sampler: str
    denoise: float = 1.0
    padding: int = 0
    mask: MaskSpec | None = None
    control: ControlSpec | None = None
    faces: FaceSpec | None = None

    @property
    def name(self) -> str:
        return {"person": f"person_{self.index}", "faces": "faces", "harmonize": "harmonize"}.get(self.kind, "base")


@dataclass(frozen=True)
class Plan:
    job: Job
    options: MultipassOptions
    generation: Generation
    passes: tuple[Pass, ...]

    @property
    def base(self) -> Pass:
        return self.passes[0]

    @property
    def persons(self) -> tuple[Pass, ...]:
        """The masked person passes (a faces-only pass is not one)."""
        return tuple(p for p in self.passes[1:] if p.kind == "person")

    @property
    def harmonize(self) -> Pass | None:
        """The harmonizing pass (always the last), if the job has one."""
        return self.passes[-1] if self.passes[-1].kind == "harmonize" else None

    def to_json(self) -> dict[str, Any]:
        """The plan as plain JSON data (`plan.json`, `parse --json`)."""
        return {
            "options": self.options.to_dict(),
            "generation": asdict(self.generation),
            "passes": [pass_json(p) for p in self.passes],
        }


def lora_json(lora: LoraTag, segment: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": lora.name, "weight": lora.weight}
    if segment is not None:
        out["segment"] = segment
    return out


def pass_json(p: Pass) -> dict[str, Any]:
    out = {k: to_json(v) for k, v in asdict(p).items() if k not in ("loras", "mask")}
    out["loras"] = [lora_json(lora) for lora in p.loras]
    for name in ("mask", "control", "faces"):
        part = getattr(p, name)
        out[name] = None if part is None else {k: to_json(v) for k, v in asdict(part).items()}
    return out


def masked_segments(job: Job, options: MultipassOptions) -> tuple[Segment, ...]:
    """The segments in-painted after the base: the persons; with one segment, that segment
    itself when an input image or a mask flag asks for prompt masking (DESIGN.md §5)."""
    if len(job.segments) > 1:
        return job.persons
    if (options.input_image and options.controlnet is None) or any(name.startswith("mask_") for name in job.flags):
        return (job.base,)
    return ()


def make_plan(job: Job, options: MultipassOptions, generation: Generation) -> Plan:
    """The passes of `job`: prompt flags override `options`."""
    options = options.with_flags(job.flags)
    persons = masked_segments(job, options) if options.enabled else ()
    # a one-segment prompt that nothing masks is a plain pass: it keeps its LoRAs, as the host would
    single = len(job.segments) == 1 and not persons
    base_loras = job.base.loras + job.common.loras if options.base_loras or single else ()
    kind = base_kind(options)
    passes = [
        Pass(
            kind=kind,
            index=0,
            prompt=join_prompt(job.base.text, job.common.text),
            negative=job.negative_for("base"),
            loras=base_loras,
            seed=generation.seed,
            width=generation.width,
            height=generation.height,
            steps=generation.steps,
            cfg_scale=generation.cfg_scale,
            sampler=generation.sampler,
            denoise=options.base_denoising_strength if kind == "img2img" else 1.0,
            control=control_spec(options, for_person=False),
        )
    ]
    if options.enabled:
        for i, person in enumerate(persons, start=1):
            passes.append(_person_pass(job, options, generation, person.text, person.loras, i, len(persons)))
        # faces of a one-segment prompt: its own prompt and LoRAs
        if not persons and (options.inpaint_faces or options.face_swap):
            face_pass = _person_pass(job, options, generation, job.base.text, job.base.loras, 1, 1)
            passes.append(replace(face_pass, kind="faces", mask=None))
        if options.hires_denoising_strength is not None:
            passes.append(harmonize_pass(job, options, generation, passes))
    if options.controlnet is not None and options.enabled and not any(p.control for p in passes):
        raise OptionsError(
            "`controlnet` has nothing to guide it: give controlnet_image (a ready hint), input_image (a photo "
            "to take it from) or controlnet_pose_from_base (the base image)", "controlnet")
    return Plan(job, options, generation, tuple(passes))


def scaled(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """`size` times `scale`, in multiples of 8 (what every host's latent space needs)."""
    return (max(MIN_SIDE, int(round(size[0] * scale / 8)) * 8), max(MIN_SIDE, int(round(size[1] * scale / 8)) * 8))


def harmonize_pass(job: Job, options: MultipassOptions, generation: Generation, passes: list[Pass]) -> Pass:
    """The harmonizing pass over the whole composite (DESIGN.md §6).

    With one person it runs with that person's prompt and LoRAs added to the scene, so the
    low denoise keeps their likeness; with several it cannot give each their own LoRA, so it
    runs with the base pass's prompt and LoRAs (keep its denoise low: 0.2-0.3)."""
    base, persons = passes[0], [p for p in passes if p.kind == "person"]
    prompt, loras = base.prompt, base.loras
    if len(persons) == 1:
        person = masked_segments(job, options)[0]  # the base segment itself when a one-segment prompt is masked
        texts = (job.base.text,) if person is job.base else (job.base.text, person.text)
        prompt = join_prompt(*texts, job.common.text)
        loras = base.loras + tuple(lora for lora in persons[0].loras if lora not in base.loras)
    width, height = scaled((generation.width, generation.height), options.hires_scale)
    if max(width, height) > MAX_SIDE:
        raise OptionsError(f"`hires_scale` {options.hires_scale:g} makes the image {width}x{height}; the largest "
                           f"side is {MAX_SIDE}: lower it (or upscale after, with super_resolution)", "hires_scale")
    return Pass(
        kind="harmonize", index=len(passes), prompt=prompt, negative=job.negative_for("base"), loras=loras,
        seed=(generation.seed + len(passes)) % 2**32, width=width, height=height, steps=generation.steps,
        cfg_scale=generation.cfg_scale, sampler=generation.sampler, denoise=options.hires_denoising_strength or 0.0,
    )


def base_kind(options: MultipassOptions) -> PassKind:
    """How the base image comes about (DESIGN.md §5).

    An input image without ControlNet is the base itself (prompt masking). With ControlNet
    it guides a generated base: txt2img from its hint (`controlnet_txt2img`), or img2img
    of the input image (looks kept).
    """
    if not options.input_image:
        return "base"
    if options.controlnet is None:
        return "input"
    return "base" if options.controlnet_txt2img else "img2img"


def control_spec(options: MultipassOptions, for_person: bool) -> ControlSpec | None:
    """The ControlNet unit of the base pass, or of a person pass (which may use the base image)."""
    if options.controlnet is None:
        return None
    source: HintSource
    if options.controlnet_image:
        source = "hint"
    elif options.input_image:
        source = "input"
    elif for_person and options.controlnet_pose_from_base:
        source = "base"
    else:
        return None
    return ControlSpec(options.controlnet, options.controlnet_model, options.controlnet_conditioning_scale,
                       options.controlnet_start, options.controlnet_end, source)


def face_spec(options: MultipassOptions, person: int = 1, persons: int = 1) -> FaceSpec | None:
    """The face passes after person pass `person` (1-based) of `persons`."""
    if not (options.inpaint_faces or options.face_swap):
        return None
    images = options.face_swap_images if options.face_swap else ()
    if len(images) == persons > 1:  # one reference folder per person prompt
        images = (images[person - 1],)
    return FaceSpec(options.face_denoising_strength, options.face_crop_factor, options.face_min_size,
                    options.face_max_faces, options.inpaint_faces, images, options.face_swap_model,
                    options.face_recognition_model, options.face_swap_upscale, options.face_swap_first)


def mask_spec(options: MultipassOptions, instance: int | None) -> MaskSpec:
    """The mask of a pass from the options: subject `instance` (left to right) or all (None)."""
    return MaskSpec(
        prompt=options.mask_prompt,
        negative=options.mask_negative,
        threshold=options.mask_threshold,
        dilate=options.mask_dilate,
        blur=options.mask_blur,
        invert=options.mask_invert,
        speck=options.mask_speck,
        min_area=options.mask_min_area,
        instance=instance,
        image=options.mask_image,
    )


def _person_pass(
    job: Job,
    options: MultipassOptions,
    generation: Generation,
    text: str,
    loras: tuple[LoraTag, ...],
    i: int,
    count: int,
) -> Pass:
    seed = generation.seed + i if options.person_seed < 0 else options.person_seed + i - 1
    mask = mask_spec(options, None if count == 1 else i - 1)
    return Pass(
        kind="person",
        index=i,
        prompt=join_prompt(text, job.common.text),
        negative=job.negative_for(f"person_{i}"),
        loras=job.common.loras + loras,
        seed=seed % 2**32,
        width=generation.width,
        height=generation.height,
        steps=options.person_steps or generation.steps,
        cfg_scale=generation.cfg_scale if options.person_cfg is None else options.person_cfg,
        sampler=options.person_sampler or generation.sampler,
        denoise=options.denoising_strength,
        padding=options.inpaint_padding,
        mask=mask,
        control=control_spec(options, for_person=True),
        faces=face_spec(options, i, count),
    )


def dry_run_view(job: Job, plan: Plan) -> dict[str, Any]:
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
