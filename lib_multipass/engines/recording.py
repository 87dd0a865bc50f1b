"""A test engine that records every request and paints predictable images.

Runs the whole runner without a model: txt2img paints a colour from the seed; inpaint
pastes a colour from the seed through the request's alpha, like a real engine would.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from ..errors import ModelNotFoundError, PassInterrupted
from ..faces.detect import Face
from ..masks.crop import Box, paste
from ..model_cache import ModelCache
from ..options import LANCZOS
from .base import GenerateRequest, InpaintRequest


def seed_colour(seed: int) -> tuple[int, int, int]:
    return (seed * 67 % 256, seed * 131 % 256, seed * 197 % 256)


@dataclass
class RecordingEngine:
    """`segments` maps a term to a probability map (or a function of the image)."""

    segments: dict[str, np.ndarray | Callable[[Image.Image], np.ndarray]] = field(default_factory=dict)
    loras: Sequence[str] = ()
    stop_after: int | None = None  # report an interrupt once this many passes have run
    stop_during: int | None = None  # the user stops in-paint number N (1-based) midway
    faces: list[Face] = field(default_factory=list)  # what detect_faces finds
    refine: Callable[[np.ndarray], np.ndarray] | None = None  # what refine_masks does to each mask
    bodies: list[Face] | None = None  # the heads the body finder finds (None: the engine has none)
    boxes: list[Box] | None = None  # what the subject detector finds (None: the engine has none)
    requests: list[object] = field(default_factory=list)
    models: ModelCache = field(default_factory=ModelCache)

    def check_loras(self, names: Sequence[str]) -> None:
        missing = [name for name in names if name not in self.loras]
        if missing:
            raise ModelNotFoundError(f"LoRA {missing} not found; LoRAs found: {', '.join(self.loras) or 'none'}")

    def txt2img(self, request: GenerateRequest) -> Image.Image:
        self.requests.append(request)
        return Image.new("RGB", (request.width, request.height), seed_colour(request.seed))

    def img2img(self, request: GenerateRequest, image: Image.Image, denoise: float,
                upscaler: str = LANCZOS) -> Image.Image:
        self.requests.append(("img2img", request, denoise, upscaler))
        return Image.blend(image.convert("RGB").resize((request.width, request.height)),
                           self.txt2img(request), denoise)

    def upscale(self, image: Image.Image, size: tuple[int, int], upscaler: str = LANCZOS) -> Image.Image:
        self.requests.append(("upscale", size, upscaler))
        return image.resize(size, Image.Resampling.LANCZOS)

    def inpaint(self, request: InpaintRequest) -> Image.Image:
        self.requests.append(request)
        if self.stop_during is not None and sum(isinstance(r, InpaintRequest) for r in self.requests) == self.stop_during:
            raise PassInterrupted()
        base = np.asarray(request.image.convert("RGB"))
        patch = np.empty_like(base)
        patch[:] = seed_colour(request.generate.seed)
        height, width = request.alpha.shape
        return Image.fromarray(paste(base, patch, (0, 0, width, height), request.alpha))

    def hint(self, kind: str, image: Image.Image) -> tuple[Image.Image, bool]:
        from ..control.hints import make_hint

        return make_hint(kind, image), True

    def segment(self, image: Image.Image, terms: Sequence[str], box: Box | None = None) -> np.ndarray:
        """The recorded map of each term (an array, or a function of the whole image), cut
        to `box`; the most likely of them per pixel."""
        self.requests.append(("segment", tuple(terms)) if box is None else ("segment", tuple(terms), box))
        x0, y0, x1, y1 = box or (0, 0, image.width, image.height)
        maps = []
        for term in terms:
            found = self.segments.get(term)
            if found is None:
                maps.append(np.zeros((y1 - y0, x1 - x0), np.float32))
            else:
                maps.append(np.asarray(found(image) if callable(found) else found)[y0:y1, x0:x1])
        return np.max(maps, axis=0)

    def detect_faces(self, image: Image.Image, box: Box | None = None) -> list[Face]:
        """The recorded faces (in the base image's coordinates) whose centre is in `box`."""
        self.requests.append(("faces",) if box is None else ("faces", box))
        x0, y0, x1, y1 = box or (0, 0, image.width, image.height)
        return [f for f in self.faces if x0 <= (f.box[0] + f.box[2]) / 2 < x1 and y0 <= (f.box[1] + f.box[3]) / 2 < y1]

    def body_finder(self) -> Callable[[Image.Image, Box], Face | None] | None:
        """The recorded heads (whose centre is in the crop), when the test gives a list."""
        if self.bodies is None:
            return None
        bodies = self.bodies

        def head(image: Image.Image, box: Box) -> Face | None:
            self.requests.append(("body", box))
            x0, y0, x1, y1 = box
            return next((f for f in bodies if x0 <= (f.box[0] + f.box[2]) / 2 < x1
                         and y0 <= (f.box[1] + f.box[3]) / 2 < y1), None)

        return head

    def subject_detector(self) -> Callable[[Image.Image, Sequence[str]], list[Box]] | None:
        """The recorded boxes, when the test gives a list."""
        if self.boxes is None:
            return None
        boxes = self.boxes

        def detect(image: Image.Image, terms: Sequence[str]) -> list[Box]:
            self.requests.append(("detect", tuple(terms)))
            return list(boxes)

        return detect

    def refine_masks(self, image: Image.Image, masks: Sequence[np.ndarray]) -> list[np.ndarray]:
        """As they are, or through `refine` (a function of one mask) when the test gives one."""
        self.requests.append(("refine", len(masks)))
        return [self.refine(mask) for mask in masks] if self.refine else list(masks)

    def interrupted(self) -> bool:
        passes = [r for r in self.requests if not isinstance(r, tuple)]
        return self.stop_after is not None and len(passes) >= self.stop_after
