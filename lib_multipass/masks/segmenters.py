"""Segmenters: from an image and text terms to a per-pixel probability map.

CLIPSeg (transformers) reads any text; mediapipe's selfie segmentation finds people
with weights that ship in its wheel, so it works offline. Both take images of any size
and aspect: the image is one view, or overlapping square tiles when it is long, and the
maps are put back exactly where the views came from. Nothing is padded: edge pixels
repeated into a letter-box smear a person at the border into streaks.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any, Protocol

import cv2
import numpy as np
from PIL import Image

from ..errors import ModelNotFoundError, MultipassError
from ..images import Box

log = logging.getLogger(__name__)

DEFAULT_CLIPSEG = "CIDAS/clipseg-rd64-refined"
PERSON_TERMS = frozenset({"person", "people", "persons", "human", "humans", "man", "woman", "men", "women",
                          "boy", "girl", "child", "foreground", "subject", "body"})
MAX_VIEW_ASPECT = 1.5  # longer images are cut into square tiles


class Segmenter(Protocol):
    def prepare(self, terms: Sequence[str]) -> None:
        """Load the model and refuse `terms` it cannot find, before any pass."""

    def probabilities(self, image: Image.Image, terms: Sequence[str]) -> np.ndarray:
        """(H, W) float32 in 0..1: the probability that any of `terms` is at each pixel."""

    def unload(self) -> None:
        """Free the model; it loads again when next needed."""


def probabilities_in(segmenter: Segmenter, image: Image.Image, terms: Sequence[str],
                     box: Box | None = None) -> np.ndarray:
    """The segmenter's map of the crop `box` of the image (all of it when None): people are
    segmented one by one, each in a crop of their own (masks/people.py)."""
    return segmenter.probabilities(image if box is None else image.crop(box), terms)


# -- views ------------------------------------------------------------------------------

View = tuple[int, int, int, int]  # x, y, w, h


def views_of(width: int, height: int) -> list[View]:
    """Rectangles covering the image, never past its edge: the whole image up to
    MAX_VIEW_ASPECT (the model's own resize stretches it a little), else overlapping squares
    along the long side (a panorama squeezed into a square view loses its people)."""
    short, long = min(width, height), max(width, height)
    if long <= short * MAX_VIEW_ASPECT:
        return [(0, 0, width, height)]
    count = math.ceil(long / short) + 1  # overlapping, so no subject is cut at a tile edge only
    starts = [round(i * (long - short) / (count - 1)) for i in range(count)]
    return [(s, 0, short, short) if width >= height else (0, s, short, short) for s in starts]


def view_pixels(pixels: np.ndarray, view: View) -> np.ndarray:
    x, y, w, h = view
    return np.ascontiguousarray(pixels[y : y + h, x : x + w])


def merge_views(maps: Sequence[np.ndarray], views: Sequence[View], size: tuple[int, int]) -> np.ndarray:
    """Blend the views' maps (each any size) back onto a (H, W) image.

    Each view counts most at its centre (a pyramid weight): near a tile's edge a subject is
    cut, and the neighbouring tile that sees it whole knows better.
    """
    width, height = size
    total = np.zeros((height, width), np.float32)
    weight = np.zeros((height, width), np.float32)
    for prob, (x, y, w, h) in zip(maps, views):
        scaled = cv2.resize(prob.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        ramp_x = np.minimum(np.arange(w) + 1, w - np.arange(w)).astype(np.float32)
        ramp_y = np.minimum(np.arange(h) + 1, h - np.arange(h)).astype(np.float32)
        pyramid = np.minimum(ramp_y[:, None], ramp_x[None, :])
        total[y : y + h, x : x + w] += scaled * pyramid
        weight[y : y + h, x : x + w] += pyramid
    return total / np.maximum(weight, 1e-6)


# -- CLIPSeg ------------------------------------------------------------------------------


class ClipSegSegmenter:
    """Text-prompted segmentation with CLIPSeg through transformers, loaded once on first use."""

    def __init__(self, source: str = DEFAULT_CLIPSEG, device: str = "cpu", missing_hint: str | None = None):
        self.source = source
        self.device = device
        self.missing_hint = missing_hint or (f"download {DEFAULT_CLIPSEG} into a folder and pass it as the "
                                             "segmenter, or give a mask image")
        self._model: Any = None
        self._processor: Any = None

    @property
    def name(self) -> str:
        return f"CLIPSeg ({self.source})"

    def prepare(self, terms: Sequence[str]) -> None:
        """Load now: missing weights fail before any pass, not after the base."""
        self.load()

    def load(self) -> None:
        if self._model is not None:
            return
        from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor

        try:
            self._processor = CLIPSegProcessor.from_pretrained(self.source)
            model: Any = CLIPSegForImageSegmentation.from_pretrained(self.source)
        except (OSError, ValueError) as err:
            raise ModelNotFoundError(
                f"CLIPSeg weights not found at {self.source!r} ({err.__class__.__name__}): {self.missing_hint}"
            ) from None
        self._model = model.to(self.device).eval()

    def unload(self) -> None:
        """Free the model (it loads again on the next call)."""
        self._model = self._processor = None
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()

    def probabilities(self, image: Image.Image, terms: Sequence[str]) -> np.ndarray:
        import torch

        self.load()
        pixels = np.asarray(image.convert("RGB"))
        views = views_of(image.width, image.height)
        crops = [Image.fromarray(view_pixels(pixels, v)) for v in views]
        texts = [term for term in terms for _ in views]
        inputs = self._processor(
            text=texts, images=crops * len(terms), padding="max_length", return_tensors="pt"
        ).to(self.device)
        with torch.no_grad():
            logits = self._model(**inputs).logits
        probs = torch.sigmoid(logits.reshape(len(texts), *logits.shape[-2:])).float().cpu().numpy()
        per_term = [merge_views(list(probs[i * len(views) : (i + 1) * len(views)]), views, image.size)
                    for i in range(len(terms))]
        return np.max(per_term, axis=0).astype(np.float32)


# -- mediapipe selfie segmentation ---------------------------------------------------------


class SelfieSegmenter:
    """People only, offline: mediapipe's selfie segmentation, its square (general) and
    landscape models averaged (`both_models`). Each alone misses parts the other finds (a
    dark suit, a camera held to the face); the mean of the two is right more often than
    either (see bench/bench_masks.py)."""

    name = "mediapipe selfie segmentation"

    def __init__(self) -> None:
        self._models: list[Any] = []

    def load(self) -> None:
        if self._models:
            return
        try:
            from mediapipe.python.solutions import selfie_segmentation
        except ImportError:
            raise ModelNotFoundError(
                "mediapipe is not installed: `pip install mediapipe==0.10.14` for the offline person segmenter"
            ) from None
        self._models = [selfie_segmentation.SelfieSegmentation(model_selection=m) for m in (0, 1)]

    def unload(self) -> None:
        for model in self._models:
            model.close()
        self._models = []

    def prepare(self, terms: Sequence[str]) -> None:
        """Refuse, before any pass, mask prompts this segmenter cannot answer."""
        other = [term for term in terms if term.lower() not in PERSON_TERMS]
        if other:
            raise MultipassError(
                f"the offline person segmenter finds people only, not {', '.join(map(repr, other))}; "
                f"give CLIPSeg weights (--segmenter) for other mask prompts"
            )
        self.load()

    def probabilities(self, image: Image.Image, terms: Sequence[str]) -> np.ndarray:
        self.prepare(terms)
        pixels = np.ascontiguousarray(np.asarray(image.convert("RGB")))
        views = views_of(image.width, image.height)
        maps = [both_models([m.process(view_pixels(pixels, v)).segmentation_mask for m in self._models], v)
                for v in views]
        return np.clip(merge_views(maps, views, image.size), 0.0, 1.0)


#: views smaller than this (px, the longer side; the general model's input is 256x256) are
#: upscaled for the models, and there the general one marks whole crops as person
SMALL_VIEW = 256


def both_models(maps: Sequence[np.ndarray], view: View) -> np.ndarray:
    """The two selfie models' maps as one: their mean; in a small view, where they disagree
    completely (one sure, the other sure of the opposite), the lower."""
    general, landscape = (np.asarray(m, np.float32) for m in maps)
    mean = (general + landscape) / 2
    if max(view[2], view[3]) >= SMALL_VIEW:
        return mean
    return np.where(np.abs(general - landscape) > 0.8, np.minimum(general, landscape), mean)


class FallbackSegmenter:
    """CLIPSeg when its weights are there; otherwise, for person terms, the offline segmenter."""

    def __init__(self, primary: ClipSegSegmenter, fallback: Segmenter | None = None):
        self.primary = primary
        self.fallback = fallback or SelfieSegmenter()
        self._use_fallback = False

    @property
    def name(self) -> str:
        """The segmenter that answered last (the fallback, once the primary's weights were missing)."""
        if self._use_fallback:
            return f"{getattr(self.fallback, 'name', 'fallback')} (no weights at {self.primary.source!r})"
        return self.primary.name

    def prepare(self, terms: Sequence[str]) -> None:
        """Decide now between CLIPSeg and the fallback, so that a mask prompt neither can do
        fails before any pass."""
        if not self._use_fallback:
            try:
                self.primary.prepare(terms)
                return
            except ModelNotFoundError as err:
                if not all(term.lower() in PERSON_TERMS for term in terms):
                    raise
                log.warning("%s; using mediapipe's offline person segmenter instead", err)
                self._use_fallback = True
        self.fallback.prepare(terms)

    def probabilities(self, image: Image.Image, terms: Sequence[str]) -> np.ndarray:
        self.prepare(terms)
        return (self.fallback if self._use_fallback else self.primary).probabilities(image, terms)

    def unload(self) -> None:
        self.primary.unload()
        self.fallback.unload()


def make_segmenter(name: str | None, device: str = "cpu") -> Segmenter:
    """`selfie`/`mediapipe`: the offline person segmenter; else CLIPSeg from a folder or hub id
    (default weights), falling back to the offline one for person terms."""
    if name in ("selfie", "mediapipe"):
        return SelfieSegmenter()
    return FallbackSegmenter(ClipSegSegmenter(name or DEFAULT_CLIPSEG, device))
