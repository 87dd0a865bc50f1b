"""The Engine protocol: what the runner asks of a host (the WebUI or diffusers).

Requests are plain data so a plan can be executed, recorded and tested anywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from PIL import Image

from ..faces.detect import Face
from ..masks.crop import Box
from ..model_cache import ModelCache
from ..options import LANCZOS
from ..plan import Pass
from ..prompt import LoraTag


@dataclass(frozen=True, eq=False)
class ControlInput:
    """A ControlNet unit with its hint image (the size of the image being generated or in-painted)."""

    hint: Image.Image
    kind: str
    model: str | None
    scale: float
    start: float
    end: float
    ready: bool = True  # False: `hint` is a photo the host's ControlNet still has to preprocess


@dataclass(frozen=True)
class GenerateRequest:
    prompt: str
    negative: str
    loras: tuple[LoraTag, ...]
    seed: int
    steps: int
    cfg_scale: float
    sampler: str
    width: int
    height: int
    control: ControlInput | None = None

    @classmethod
    def from_pass(cls, p: Pass, control: ControlInput | None = None) -> GenerateRequest:
        return cls(p.prompt, p.negative, p.loras, p.seed, p.steps, p.cfg_scale, p.sampler, p.width, p.height, control)


@dataclass(frozen=True, eq=False)
class InpaintRequest:
    """In-paint `mask` of `image` ("only masked", `padding` px of context), paste with `alpha`."""

    generate: GenerateRequest
    image: Image.Image
    mask: np.ndarray  # bool (H, W): the region to regenerate, before feathering
    alpha: np.ndarray  # float32 (H, W) in 0..1: the exact paste-back alpha
    denoise: float
    padding: int
    blur: int  # the feather that made `alpha`, for hosts that feather themselves
    seam: int = 0  # px inside the mask's edge where the patch's colour cast is taken out (masks/colour.py); 0: off


class Engine(Protocol):
    #: models kept between this engine's jobs (face swap sessions, reference photos)
    models: ModelCache

    def check_loras(self, names: Sequence[str]) -> None:
        """Raise `ModelNotFoundError` (listing what exists) for a LoRA that cannot be found."""

    def txt2img(self, request: GenerateRequest) -> Image.Image:
        """The base image."""

    def img2img(self, request: GenerateRequest, image: Image.Image, denoise: float,
                upscaler: str = LANCZOS) -> Image.Image:
        """`image` redone at `denoise` (its looks kept) at the request's size: the base from an
        input image, or the harmonizing pass. A larger size is reached by the host's `upscaler`
        first ("Latent": in latent space, where the host can)."""

    def hint(self, kind: str, image: Image.Image) -> tuple[Image.Image, bool]:
        """(hint, ready) for a ControlNet of `kind` from a photo; not ready: the host preprocesses it."""

    def inpaint(self, request: InpaintRequest) -> Image.Image:
        """The whole image with the masked region regenerated and pasted back."""

    def upscale(self, image: Image.Image, size: tuple[int, int], upscaler: str = LANCZOS) -> Image.Image:
        """`image` at exactly `size`, upscaled by the host's `upscaler` (a name it lists, or a
        weights file standalone; Lanczos everywhere)."""

    def segment(self, image: Image.Image, terms: Sequence[str], box: Box | None = None) -> np.ndarray:
        """Probability (H, W) float32 in 0..1 that any of `terms` is at each pixel of the crop
        `box` of the image (the whole image when None): people are segmented one by one."""

    def detect_faces(self, image: Image.Image, box: Box | None = None) -> list[Face]:
        """The faces in the crop `box` of the image (all of it when None), any order, in the
        image's coordinates."""

    def body_finder(self) -> Callable[[Image.Image, Box], Face | None] | None:
        """What finds a person's body in a crop where no face is seen (masks/bodies.py), as
        the head's box; None where the host has none (then a person mask without any face
        is the segmenter's whole-image map)."""

    def subject_detector(self) -> Callable[[Image.Image, Sequence[str]], list[Box]] | None:
        """What boxes each subject of a mask prompt, best first (masks/detector.py); None where
        the host has none or its weights cannot be loaded (then the segmenter alone finds them)."""

    def refine_masks(self, image: Image.Image, masks: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Each person's mask with crisper edges (masks/refine.py), or as it is without a refiner."""

    def interrupted(self) -> bool:
        """True when the user asked to stop; checked before every pass."""
