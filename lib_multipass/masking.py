"""The mask stage: segmentation, then small pure operations on numpy masks (DESIGN.md §4).

Order: probability map -> minus mask_negative -> threshold -> split into instances ->
dilate/erode -> invert -> feather. A user mask image replaces segmentation.
Masks are `bool` arrays (H, W); the paste-back alpha is `float32` in 0..1.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import MultipassError, ModelNotFoundError
from .plan import MaskSpec

DEFAULT_SEGMENTER = "CIDAS/clipseg-rd64-refined"


# -- pure operations ----------------------------------------------------------------------


def threshold(prob: np.ndarray, cut: float) -> np.ndarray:
    """Pixels whose probability reaches `cut`."""
    return np.asarray(prob) >= cut


def subtract(prob: np.ndarray, negative: np.ndarray | None) -> np.ndarray:
    """The probability map minus the negative one, clipped to 0..1."""
    if negative is None:
        return prob
    return np.clip(prob - negative, 0.0, 1.0).astype(np.float32)


def dilate(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Grow the mask by `pixels` (a disc), or shrink it when negative."""
    if pixels == 0 or not mask.any():
        return mask.copy()
    radius = abs(pixels)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    op = cv2.dilate if pixels > 0 else cv2.erode
    # erode treats the border as foreground by default; use background so edges shrink too
    out = op(mask.astype(np.uint8), kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return out.astype(bool)


def invert(mask: np.ndarray) -> np.ndarray:
    return ~mask


def feather(mask: np.ndarray, blur: int) -> np.ndarray:
    """Paste-back alpha: a Gaussian of `blur` px whose reach stays within `blur` px of the mask."""
    alpha = mask.astype(np.float32)
    if blur <= 0 or not mask.any():
        return alpha
    size = 2 * blur + 1
    blurred = cv2.GaussianBlur(alpha, (size, size), sigmaX=blur / 2.0, borderType=cv2.BORDER_REPLICATE)
    return np.clip(blurred, 0.0, 1.0)


def area(mask: np.ndarray) -> float:
    """Fraction of the image the mask covers."""
    return float(np.count_nonzero(mask)) / mask.size if mask.size else 0.0


def split_instances(mask: np.ndarray) -> list[np.ndarray]:
    """Connected subjects of the mask, ordered left to right by their bounding box."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    order = sorted(range(1, count), key=lambda label: (stats[label, cv2.CC_STAT_LEFT], label))
    return [labels == label for label in order]


def load_mask_image(path: str | Path, size: tuple[int, int]) -> tuple[np.ndarray, list[str]]:
    """A user mask from a PNG/JPEG (alpha if it has one, else luminance), at `size` (w, h)."""
    notes: list[str] = []
    try:
        with Image.open(path) as img:
            img.load()
            gray = img.getchannel("A") if "A" in img.getbands() else img.convert("L")
    except FileNotFoundError:
        raise MultipassError(f"mask image {str(path)!r} does not exist; give a PNG or JPEG file") from None
    except (UnidentifiedImageError, OSError) as err:
        raise MultipassError(f"mask image {str(path)!r} cannot be read as an image ({err}); give a PNG or JPEG") from None
    if gray.size != size:
        notes.append(f"mask image {gray.size[0]}x{gray.size[1]} resized to the image size {size[0]}x{size[1]}")
        gray = gray.resize(size, Image.Resampling.BILINEAR)
    return np.asarray(gray) >= 128, notes


# -- from a probability map to the masks of the passes ------------------------------------


@dataclass(frozen=True)
class PassMask:
    """The mask of one person pass: `mask` is what is regenerated, `alpha` what is pasted."""

    mask: np.ndarray
    alpha: np.ndarray


def subject_mask(prob: np.ndarray, negative: np.ndarray | None, spec: MaskSpec) -> np.ndarray:
    """Threshold the probability map after subtracting the negative map."""
    return threshold(subtract(prob, negative), spec.threshold)


def pass_mask(subjects: np.ndarray, spec: MaskSpec) -> np.ndarray | None:
    """Pick the pass's instance, then dilate and invert; None when that subject is absent."""
    mask = subjects
    if spec.instance is not None:
        instances = split_instances(subjects)
        if spec.instance >= len(instances):
            return None
        mask = instances[spec.instance]
    mask = dilate(mask, spec.dilate.pixels(min(mask.shape)))
    return invert(mask) if spec.invert else mask


def finish(mask: np.ndarray, spec: MaskSpec) -> PassMask:
    return PassMask(mask, feather(mask, spec.blur))


# -- segmentation -------------------------------------------------------------------------


class ClipSegSegmenter:
    """Text-prompted segmentation with CLIPSeg through transformers, loaded once on first use."""

    def __init__(self, source: str = DEFAULT_SEGMENTER, device: str = "cpu"):
        self.source = source
        self.device = device
        self._model = None
        self._processor = None

    def _load(self) -> None:
        if self._model is not None:
            return
        from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor

        try:
            self._processor = CLIPSegProcessor.from_pretrained(self.source)
            model = CLIPSegForImageSegmentation.from_pretrained(self.source)
        except (OSError, ValueError) as err:
            raise ModelNotFoundError(
                f"CLIPSeg weights not found at {self.source!r} ({err.__class__.__name__}). Download "
                f"{DEFAULT_SEGMENTER} into a folder and pass it as the segmenter, or give a mask image"
            ) from None
        self._model = model.to(self.device).eval()

    def probabilities(self, image: Image.Image, terms: Sequence[str]) -> np.ndarray:
        """Per-pixel probability (H, W) that any of `terms` is there, at the image's size."""
        import torch

        self._load()
        assert self._model is not None and self._processor is not None
        terms = list(terms)
        inputs = self._processor(
            text=terms, images=[image.convert("RGB")] * len(terms), padding="max_length", return_tensors="pt"
        ).to(self.device)
        with torch.no_grad():
            logits = self._model(**inputs).logits
        probs = torch.sigmoid(logits.reshape(len(terms), *logits.shape[-2:])).float().cpu().numpy()
        width, height = image.size
        maps = [cv2.resize(p, (width, height), interpolation=cv2.INTER_LINEAR) for p in probs]
        return np.max(maps, axis=0).astype(np.float32)
