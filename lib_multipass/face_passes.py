"""Inpaint faces: after the person passes, each face gets one more low-denoise pass with its
person's prompt and LoRA, cropped with context and pasted back with a face-shaped mask."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from .engines.base import Engine, GenerateRequest, InpaintRequest
from .errors import MultipassError, PassInterrupted
from .faces.detect import Face, assign_faces, face_mask, select_faces
from .faces.swap import RECOGNIZER_FILE, SWAPPER_FILE, FaceSwapper, find_model, load_references
from .masks import masking
from .masks.colour import seam_width
from .plan import FaceSpec, Pass, Plan


def face_request(p: Pass, image: Image.Image, face: Face, number: int, color_match: bool = True) -> InpaintRequest:
    """The in-paint of one face: face-shaped mask, feather and context scaled to the face."""
    spec = faces_of(p)
    mask = masking.dilate(face_mask(image, face), max(1, face.size // 20))
    blur = max(2, face.size // 16)
    padding = int((spec.crop_factor - 1.0) * face.size / 2)
    seed = (p.seed + 1000 * number) % 2**32
    generate = GenerateRequest.from_pass(replace(p, seed=seed))
    return InpaintRequest(generate, image, mask, masking.feather(mask, blur), spec.denoise, padding, blur,
                          seam_width(color_match, blur))


def faces_of(p: Pass) -> FaceSpec:
    """The face settings of a pass that has face passes (the plan made it so)."""
    if p.faces is None:
        raise MultipassError(f"{p.name} has no face settings")
    return p.faces


MODEL_DIRS = (Path("models/insightface"), Path.home() / ".insightface" / "models")


def load_swapper(p: Pass, spec: FaceSpec, engine: Engine, warnings: list[str],
                 dirs: tuple[Path, ...]) -> FaceSwapper | None:
    """The swapper of pass `p`, or None with a warning that names the missing model and where it
    goes (said before any face is looked for, so it is never hidden by "no face found")."""
    try:
        return FaceSwapper(find_model(SWAPPER_FILE, spec.swap_model, dirs),
                           find_model(RECOGNIZER_FILE, spec.recognition_model, dirs), EngineDetector(engine),
                           spec.swap_upscale, engine.models)
    except MultipassError as err:
        warnings.append(f"face swap for {p.name} skipped: {err}")
        return None


def _swap(p: Pass, spec: FaceSpec, swapper: FaceSwapper, image: Image.Image, faces: list[Face],
          warnings: list[str]) -> Image.Image:
    try:
        identity = swapper.identity(load_references(spec.swap_images, swapper.models))
        for face in faces:
            image = swapper.swap(image, face, identity, face_mask(image, face))
    except MultipassError as err:
        warnings.append(f"face swap for {p.name}: {err}; the rest of the job goes on")
    return image


class EngineDetector:
    """The engine's face detector as a FaceDetector."""

    name = "the engine's face detector"

    def __init__(self, engine: Engine):
        self.engine = engine

    def detect(self, image: Image.Image) -> list[Face]:
        return self.engine.detect_faces(image)


def run_faces(plan: Plan, engine: Engine, image: Image.Image, person_masks: list[np.ndarray | None],
              keep: Callable[[str, Image.Image, np.ndarray | None], None], warnings: list[str],
              dirs: tuple[Path, ...] = MODEL_DIRS) -> Image.Image:
    """Face swap and inpaint faces for every pass with faces (order per `swap_first`); faces
    outside every person mask are left alone. A failed swap is a warning: the rest goes on."""
    passes = [(p, p.faces) for p in plan.passes[1:] if p.faces is not None]
    if not passes:
        return image
    swappers = {p.name: load_swapper(p, spec, engine, warnings, dirs) for p, spec in passes if spec.swap_images}
    first = passes[0][1]
    faces = select_faces(engine.detect_faces(image), first.min_size, first.max_faces)
    groups = assign_faces(faces, person_masks) if plan.persons else [faces]
    if not any(groups):
        warnings.append(f"faces: no face of at least {first.min_size} px found on a person")
    for (p, spec), group in zip(passes, groups):
        steps = ["swap", "inpaint"] if spec.swap_first else ["inpaint", "swap"]
        for step in steps:
            if not group or engine.interrupted():
                break
            swapper = swappers.get(p.name)
            if step == "swap" and swapper is not None:
                image = _swap(p, spec, swapper, image, group, warnings)
                keep(f"{p.name}_swap", image, None)
            elif step == "inpaint" and spec.inpaint:
                for number, face in enumerate(group, start=1):
                    request = face_request(p, image, face, number, plan.options.color_match)
                    try:
                        image = engine.inpaint(request)
                    except PassInterrupted as err:
                        raise err.named(f"{p.name}_face_{number}") from None
                    keep(f"{p.name}_face_{number}", image, request.alpha)
    if engine.interrupted():
        warnings.append("interrupted during the face passes; the images made so far are kept")
    return image
