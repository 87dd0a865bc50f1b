"""Crisp person edges: SAM, prompted with each person's box, redraws the rough masks.

The segmenters that find people (CLIPSeg at 352 px, mediapipe at 256 px) give soft,
blobby outlines; the LoRA pass then repaints a halo of background or clips hair and
fingers. SAM (Segment Anything, Apache-2.0) draws an object's edge at 1024 px from a box.
It does not know what a person is, so it only redraws: of its three candidates per box the
one closest to the rough mask is taken, and only when it agrees with it (IoU >= 0.5).

Weights: a folder or hub id; the default is downloaded on first use into the models folder
given (the WebUI's `models/sam`), with a log line saying what and how large.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .crop import mask_box
from .hub import HubModel

DEFAULT_SAM = "facebook/sam-vit-base"
KNOWN_SIZES = {"facebook/sam-vit-base": "375 MB", "facebook/sam-vit-large": "1.25 GB", "facebook/sam-vit-huge": "2.56 GB"}
AGREE = 0.5  # least IoU between SAM's mask and the rough one for SAM's to be taken


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return float(np.count_nonzero(a & b) / union) if union else 0.0


def closest(candidates: Sequence[np.ndarray], rough: np.ndarray) -> np.ndarray:
    """The candidate most like `rough` when it agrees with it, else `rough`."""
    scores = [iou(c, rough) for c in candidates]
    best = int(np.argmax(scores)) if scores else -1
    return candidates[best] if best >= 0 and scores[best] >= AGREE else rough


REFINER_HELP = ("SAM weights for crisp person mask edges: a folder or hub id (a hub id is downloaded once into "
                f"models/sam; {DEFAULT_SAM} is {KNOWN_SIZES[DEFAULT_SAM]}); default: the segmenter's own edges")


def make_refiner(source: str | None, device: str = "cpu", models_dir: Path = Path("models/sam")) -> SamRefiner | None:
    return SamRefiner(source, device, models_dir) if source else None


class SamRefiner(HubModel):
    """Box-prompted SAM through transformers, loaded once on first use."""

    what = kind = "SAM"
    example = DEFAULT_SAM
    sizes = KNOWN_SIZES
    off = "turn mask refining off"
    without = "person masks keep the segmenter's edges"

    def __init__(self, source: str = DEFAULT_SAM, device: str = "cpu", models_dir: Path | None = None):
        super().__init__(source, device, models_dir)

    @property
    def name(self) -> str:
        return f"SAM ({self.source})"

    def classes(self) -> tuple[Any, Any]:
        from transformers import SamModel, SamProcessor

        return SamProcessor, SamModel

    def refine(self, image: Image.Image, masks: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Each rough mask redrawn by SAM from its box (one image embedding for all)."""
        import torch

        boxes = {i: box for i, box in enumerate(map(mask_box, masks)) if box is not None}
        if not boxes:
            return list(masks)
        self.load()
        asked = list(boxes)
        inputs = self._processor(images=image.convert("RGB"), input_boxes=[[list(boxes[i]) for i in asked]],
                                 return_tensors="pt").to(self.device)
        with torch.no_grad():
            out = self._model(**inputs, multimask_output=True)
        drawn = self._processor.image_processor.post_process_masks(
            out.pred_masks.cpu(), inputs["original_sizes"].cpu(), inputs["reshaped_input_sizes"].cpu())[0]
        refined = list(masks)
        for row, i in enumerate(asked):
            refined[i] = closest([np.asarray(c, bool) for c in drawn[row]], masks[i])
        return refined
