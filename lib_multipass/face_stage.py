"""Inpaint faces: after the person passes, each face gets one more low-denoise pass with its
person's prompt and LoRA, cropped with context and pasted back with a face-shaped mask."""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

import numpy as np
from PIL import Image

from . import masking
from .engines.base import Engine, GenerateRequest, InpaintRequest
from .faces import Face, assign_faces, face_mask, select_faces
from .plan import Pass, Plan


def face_request(p: Pass, image: Image.Image, face: Face, number: int) -> InpaintRequest:
    """The in-paint of one face: face-shaped mask, feather and context scaled to the face."""
    assert p.faces is not None
    mask = masking.dilate(face_mask(image, face), max(1, face.size // 20))
    blur = max(2, face.size // 16)
    padding = int((p.faces.crop_factor - 1.0) * face.size / 2)
    seed = (p.seed + 1000 * number) % 2**32
    generate = GenerateRequest.from_pass(replace(p, seed=seed))
    return InpaintRequest(generate, image, mask, masking.feather(mask, blur), p.faces.denoise, padding, blur)


def run_faces(plan: Plan, engine: Engine, image: Image.Image, person_masks: list[np.ndarray | None],
              keep: Callable[[str, Image.Image, np.ndarray], None], warnings: list[str]) -> Image.Image:
    """Every face pass of `plan` on `image`; faces outside every person mask are left alone."""
    passes = [p for p in plan.passes[1:] if p.faces is not None]
    if not passes:
        return image
    spec = passes[0].faces
    faces = select_faces(engine.detect_faces(image), spec.min_size, spec.max_faces)
    groups = assign_faces(faces, person_masks) if plan.persons else [faces]
    if not any(groups):
        warnings.append(f"inpaint faces: no face of at least {spec.min_size} px found on a person")
    for p, group in zip(passes, groups):
        for number, face in enumerate(group, start=1):
            if engine.interrupted():
                warnings.append("interrupted before a face pass; the images made so far are kept")
                return image
            request = face_request(p, image, face, number)
            image = engine.inpaint(request)
            keep(f"{p.name}_face_{number}", image, request.alpha)
    return image
